"""Experiments simulator: A/A, A/B and skewed-assignment runs over the synthetic world's truth.

    python -m benchmarks.experiments --json experiments.json [--aa-runs 1000 --ab-runs 1000
        --srm-runs 1000 --days 14 --lift 0.05 --ctr 0.1]

The world is models/synthetic.py's latent tastes (`latent_world`). Arm A shows every user the
ten most popular items; a user clicks with p_u = sigmoid(b + 3 · max affinity of the user to
those items), b set so that the mean of p_u is `--ctr`. Arm B is a model that makes every user
exactly `--lift` more likely to click (p_u · (1 + lift)): the better arm and its lift are known.
Each day brings fresh visitors whose tastes are drawn from the world's users; each visitor is
assigned by a fair coin of the allocation (benchmarks only the statistics: the hash's shares
are tested in tests/models/experiments/test_assignment.py), sees one list and clicks or not.
Each run lasts `--days` days with the same number of visitors per day, in total the users per
arm that models/experiments/stats.sequential_sample_size recommends for the lift (or
`--users-per-arm`), and is looked at after every day as `recsys experiment report` looks:
stats.plug_in_p_values, the mSPRT with tau = the lift times arm A's CTR observed so far (the
report's own function); the first look with p < alpha stops it with a "difference". The same
runs with tau from the true CTR (stats.msprt_p_values) are in the JSON beside it.

- A/A (both arms = A): the share of runs that ever stop is the false-positive rate under daily
  peeking (target ≤ alpha); a plain z-test looked at daily is shown beside it for contrast.
- A/B (B lifted): the share that stop is the power (target ≥ `--power`).
- SRM: a 50/50 experiment whose visitors really split 52/48; the share of runs whose final
  counts stats.sample_ratio flags (p < 0.001) is the detection rate (target ≥ 95%).
Writes the JSON (aa_runs, aa_false_positive_rate, ab_runs, ab_power, srm_runs,
srm_detection_rate, and the settings and side figures) and prints one summary line per part.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from benchmarks.output import write_json
from models.experiments.stats import (
    fixed_sample_size,
    msprt_p_values,
    plug_in_p_values,
    sample_ratio,
    sequential_sample_size,
)
from models.synthetic import latent_world

log = logging.getLogger("benchmarks.experiments")
CHUNK = 4_000_000  # visitor draws per NumPy step (memory: ~100 MB)


def click_probabilities(n_users: int, n_items: int, ctr: float, seed: int) -> np.ndarray:
    """[n_users] each user's click probability on the popular list, mean `ctr`."""
    world = latent_world(n_users, n_items, seed=seed)
    top = np.argsort(-world.popularity)[:10]
    affinity = (world.user_vec @ world.item_vec[top].T).max(axis=1)
    low, high = -20.0, 20.0
    for _ in range(60):  # bisect the intercept: the mean is increasing in it
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(mid + 3 * affinity).mean() < ctr else (low, mid)
    return _sigmoid(low + 3 * affinity)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def simulate(rng, p_a: np.ndarray, p_b: np.ndarray, runs: int, days: int, per_day: int,
             share_a: float, progress: tqdm) -> tuple[np.ndarray, ...]:
    """Daily visitors of `runs` experiments: cumulative [runs, days] clicks and users per arm.

    Args:
        p_a, p_b: [n_users] click probability of a user in arm A, in arm B.
        per_day: visitors per day, both arms together.
        share_a: the probability that a visitor lands in arm A.
    """
    clicks = np.zeros((2, runs, days), np.int64)
    users = np.zeros((2, runs, days), np.int64)
    step = max(1, CHUNK // per_day)
    for day in range(days):
        n_a = rng.binomial(per_day, share_a, runs)
        for lo in range(0, runs, step):
            hi = min(runs, lo + step)
            who = rng.integers(0, len(p_a), (hi - lo, per_day))
            in_a = np.arange(per_day)[None, :] < n_a[lo:hi, None]  # visitors are i.i.d.
            click = rng.random((hi - lo, per_day)) < np.where(in_a, p_a[who], p_b[who])
            clicks[0, lo:hi, day] = (click & in_a).sum(axis=1)
            clicks[1, lo:hi, day] = (click & ~in_a).sum(axis=1)
        users[0, :, day], users[1, :, day] = n_a, per_day - n_a
        progress.update(runs)
    return clicks.cumsum(axis=2), users.cumsum(axis=2)


def naive_daily_z(clicks: np.ndarray, users: np.ndarray, alpha_z: float = 1.959964) -> np.ndarray:
    """[runs] whether a two-proportion z-test, looked at every day, ever crossed 1.96."""
    p = clicks / np.maximum(users, 1)
    se = np.sqrt(p[0] * (1 - p[0]) / users[0] + p[1] * (1 - p[1]) / users[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p[1] - p[0]) / se, 0.0)
    return (np.abs(z) > alpha_z).any(axis=1)


def daily_report_p(clicks: np.ndarray, users: np.ndarray, lift: float) -> np.ndarray:
    """[runs, days] the p-value the report would print at the end of each day (its tau
    re-estimated from arm A's CTR that day), from [2, runs, days] cumulative counts."""
    return np.stack([plug_in_p_values(clicks[0, :, :d], users[0, :, :d], clicks[1, :, :d],
                                      users[1, :, :d], lift)
                     for d in range(1, clicks.shape[-1] + 1)], axis=1)


def run(args: argparse.Namespace) -> dict:
    """The three parts; returns the report."""
    rng = np.random.default_rng(args.seed)
    p_a = click_probabilities(args.world_users, args.world_items, args.ctr, args.seed)
    baseline = float(p_a.mean())
    p_b = np.minimum(1.0, p_a * (1 + args.lift))
    n_arm = args.users_per_arm or sequential_sample_size(baseline, args.lift, args.alpha,
                                                         args.power)
    per_day = -(-2 * n_arm // args.days)
    tau = baseline * args.lift
    total = (args.aa_runs + args.ab_runs + args.srm_runs) * args.days
    report = {"baseline_ctr": round(baseline, 5), "lift": args.lift, "alpha": args.alpha,
              "days": args.days, "users_per_arm": per_day * args.days // 2,
              "recommended_users_per_arm": sequential_sample_size(baseline, args.lift,
                                                                  args.alpha, args.power),
              "fixed_horizon_users_per_arm": fixed_sample_size(baseline, args.lift,
                                                               args.alpha, args.power),
              "test": "mSPRT always-valid p-value, looked at daily", "tau": round(tau, 6)}
    with tqdm(total=total, desc="run-days", unit="run-day", disable=args.quiet) as progress:
        clicks, users = simulate(rng, p_a, p_a, args.aa_runs, args.days, per_day, 0.5,
                                 progress)
        p = msprt_p_values(clicks[0], users[0], clicks[1], users[1], tau)
        report.update(aa_runs=args.aa_runs,
                      aa_false_positive_rate=float(
                          (daily_report_p(clicks, users, args.lift) < args.alpha).any(axis=1)
                          .mean()),
                      aa_false_positive_rate_true_tau=float((p[:, -1] < args.alpha).mean()),
                      aa_naive_daily_z_false_positive_rate=float(
                          naive_daily_z(clicks, users).mean()),
                      aa_srm_false_alarm_rate=float(np.mean(
                          [sample_ratio(users[:, r, -1], [1, 1]).mismatch
                           for r in range(args.aa_runs)])))
        clicks, users = simulate(rng, p_a, p_b, args.ab_runs, args.days, per_day, 0.5,
                                 progress)
        p = msprt_p_values(clicks[0], users[0], clicks[1], users[1], tau)
        stopped = np.logical_or.accumulate(daily_report_p(clicks, users, args.lift) < args.alpha,
                                           axis=1)
        stop_day = np.where(stopped.any(axis=1), stopped.argmax(axis=1) + 1, 0)
        b_lower = clicks[1, :, -1] / users[1, :, -1] < clicks[0, :, -1] / users[0, :, -1]
        report.update(ab_runs=args.ab_runs, ab_power=float(stopped[:, -1].mean()),
                      ab_power_true_tau=float((p[:, -1] < args.alpha).mean()),
                      ab_median_stop_day=float(np.median(stop_day[stop_day > 0]))
                      if (stop_day > 0).any() else None,
                      ab_stopped_for_the_worse_arm=int((stopped[:, -1] & b_lower).sum()))
        _, users = simulate(rng, p_a, p_a, args.srm_runs, args.days, per_day, 0.52, progress)
        flagged = [[sample_ratio(users[:, r, day], [5000, 5000]).mismatch
                    for r in range(args.srm_runs)] for day in (0, -1)]
        report.update(srm_runs=args.srm_runs, srm_detection_rate=float(np.mean(flagged[1])),
                      srm_detection_rate_after_day_1=float(np.mean(flagged[0])))
    return report


def summary(r: dict) -> list[str]:
    """The lines printed after the run."""
    return [
        f"A/A: {r['aa_runs']} runs x {r['days']} daily looks, {r['users_per_arm']:,} users per "
        f"arm: false-positive rate {r['aa_false_positive_rate']:.1%} with the report's mSPRT "
        f"(alpha {r['alpha']}; {r['aa_false_positive_rate_true_tau']:.1%} with tau from the "
        f"true CTR); a daily z-test would say {r['aa_naive_daily_z_false_positive_rate']:.1%}",
        f"A/B: CTR {r['baseline_ctr']:.4f} +{r['lift']:.0%}, {r['users_per_arm']:,} users per arm "
        f"(recommended {r['recommended_users_per_arm']:,}; one fixed look would need "
        f"{r['fixed_horizon_users_per_arm']:,}): power {r['ab_power']:.1%} "
        f"({r['ab_power_true_tau']:.1%} with tau from the true CTR), median stop on day "
        f"{r['ab_median_stop_day']}",
        f"SRM: visitors split 52/48 in a 50/50 experiment: flagged in {r['srm_detection_rate']:.1%}"
        f" of {r['srm_runs']} runs (chi-square p < 0.001; after day 1 alone: "
        f"{r['srm_detection_rate_after_day_1']:.1%}); false alarms in A/A "
        f"{r['aa_srm_false_alarm_rate']:.1%}",
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa-runs", type=int, default=1000)
    parser.add_argument("--ab-runs", type=int, default=1000)
    parser.add_argument("--srm-runs", type=int, default=1000)
    parser.add_argument("--days", type=int, default=14, help="daily looks per run")
    parser.add_argument("--lift", type=float, default=0.05, help="B's relative CTR lift")
    parser.add_argument("--ctr", type=float, default=0.1, help="mean CTR of arm A")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--power", type=float, default=0.8, help="for the recommended size")
    parser.add_argument("--users-per-arm", type=int, default=None,
                        help="default: stats.sequential_sample_size for the lift")
    parser.add_argument("--world-users", type=int, default=5000)
    parser.add_argument("--world-items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if min(args.aa_runs, args.ab_runs, args.srm_runs, args.days, args.world_users) < 1:
        parser.error("--*-runs, --days and --world-users must be at least 1")
    if not (0 < args.ctr < 1 and 0 < args.alpha < 1 and 0 < args.power < 1 and args.lift > 0
            and args.ctr * (1 + args.lift) < 1):
        parser.error("need 0 < --ctr, --alpha, --power < 1, --lift > 0 and ctr * (1 + lift) < 1")
    if args.users_per_arm is not None and args.users_per_arm < args.days:
        parser.error("--users-per-arm must be at least --days")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run(args)
    write_json(report, args.json)
    for line in summary(report):
        print(line)  # noqa: T201 - the benchmark's output
    return report


if __name__ == "__main__":
    main()
