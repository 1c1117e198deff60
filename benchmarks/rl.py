"""The DQN re-ranking stage against served's greedy order on the ground-truth simulator.

    python -m benchmarks.rl --json rl.json          # default: ~6 min on 2 busy cores
    python -m benchmarks.rl --users 600 --rounds 10 --seeds 2   # a quick look (~2 min)
    python -m benchmarks.rl --users 4000 --items 1000 --rounds 80 --seeds 8   # larger

Synthetic data (models.synthetic.generate) trains `served` as production does; its latent
world (same seed) is the simulator's truth (models.simulator). Every user gets served's real
top N (served's own user embedding and history, served's order), so "greedy" below is
served's order, not a stand-in; "oracle" is the best one-shot ranking of the same pool by
the true click probability, reported beside it. The users are split in two halves: the DQN
trains on sessions of the first half in SETTINGS[0] only; every policy is then scored on the
second half in both settings over the same users and seeds (`--seeds` sessions per user),
with 95% bootstrap intervals of the mean return per session (scipy.stats.bootstrap).
The off-policy check: sessions of the second half logged under a uniformly random strategy
(propensity 1/4 per step) give IPS and SNIPS estimates (models.ope) of the DQN's clicks per
step, beside the simulator's exact figure at the same logged states.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from benchmarks.output import emit

log = logging.getLogger(__name__)


def served_world(n_users: int, n_items: int, seed: int, **world):
    """Served fitted on synthetic data, and what the simulator needs of every user.

    Returns:
        (world (models.synthetic.World), pools (models.rl_sessions.Pools, world item
        indices), emb [n_items, d] served's unit item embeddings by world item index,
        fit_seconds, the synthetic dataset).
    """
    from models.dqn_served import item_embeddings, served_pools
    from models.rl_sessions import Pools
    from models.served_fit import fit_served
    from models.synthetic import generate, latent_world

    ds = generate(n_users, n_items, seed, **world)
    world = latent_world(n_users, n_items, seed, **world)
    t = time.perf_counter()
    model = fit_served(ds.interactions, ds.users, ds.items)
    fit_seconds = time.perf_counter() - t
    ev = ds.interactions.sort_values("timestamp", kind="stable")
    by_user = ev.groupby("user_id")["item_id"].agg(list)
    ids = sorted(by_user.index, key=int)
    hists = model.history_indices([list(dict.fromkeys(by_user[u])) for u in ids])
    p = served_pools(model, ids, hists)
    world_of = np.array([int(x) - 1 for x in model.tower.data.items.ids])  # served -> world
    emb = np.zeros((n_items, p.query.shape[1]))
    emb[world_of] = item_embeddings(model)
    items = np.where(p.items >= 0, world_of[np.maximum(p.items, 0)], -1)
    pools = Pools(np.array([int(u) - 1 for u in ids]), items, p.query, p.recent)
    return world, pools, emb, fit_seconds, ds


def interval(x: np.ndarray, seed: int = 0) -> list[float]:
    """95% BCa bootstrap interval of the mean of x."""
    from scipy.stats import bootstrap

    ci = bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=2000,
                   random_state=seed).confidence_interval
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def score(sim, pools, emb, policy, seeds: int) -> np.ndarray:
    """Returns of one session per user and seed, [seeds * B]."""
    from models.rl_sessions import run_sessions

    return np.concatenate([run_sessions(sim, pools, emb, policy, 1000 + s)[0]
                           for s in range(seeds)])


# The synthetic world's taste settings (models.synthetic.SyntheticConfig). On the generator's
# defaults (taste 4, 16 proposals, zipf 0.9) events follow popularity far more than taste:
# served's top 10 had a mean true affinity of 0.20 against 0.17 for its places 50-100, and its
# order and the truth hardly agree (Spearman 0.10), so there is little for any ranker or
# policy to order. With these, 0.53 against 0.31 (Spearman 0.43).
WORLD = {"taste": 8.0, "proposals": 64, "zipf": 0.6}


def run(n_users: int, n_items: int, rounds: int, seeds: int, seed: int = 0,
        guard: bool = True) -> dict:
    from dataclasses import replace

    from models.dqn import STRATEGIES
    from models.dqn_fit import DQNConfig, fit_dqn
    from models.simulator import SETTINGS, Simulator

    world, pools, emb, fit_seconds, ds = served_world(n_users, n_items, seed, **WORLD)
    order = np.random.default_rng(seed).permutation(len(pools.users))
    train, test = pools.take(order[::2]), pools.take(order[1::2])
    sims = [Simulator(world.user_vec, world.item_vec, c) for c in SETTINGS]
    config = DQNConfig(rounds=rounds, seed=seed)
    policy, info = fit_dqn(sims[0], train, emb, config)
    policies = [("dqn", policy.act), ("greedy", "served"), ("random", "random"),
                ("oracle", "oracle")]
    margins, guard_report = None, None
    if guard:  # the margins the deployment guard picks on this data's train-side window
        from models.dqn_guard import guard_margins
        from models.served import ServedConfig

        margins, guard_report = guard_margins(ds.interactions, ds.users, ds.items,
                                              ServedConfig(), config)
        guarded = replace(policy, margins=margins)
        policies.append(("dqn_guarded", lambda x: guarded.act(x, False)))  # warm users
    settings = []
    for sim in sims:
        R = {name: score(sim, test, emb, p, seeds) for name, p in policies}
        fixed = {s: float(score(sim, test, emb, lambda x, a=a: np.full(len(x), a), seeds).mean())
                 for a, s in enumerate(STRATEGIES) if a}
        row = {"name": sim.config.name, "sessions": len(R["dqn"])}
        for name, x in R.items():
            row[f"{name}_return"] = round(float(x.mean()), 4)
            row[f"{name}_return_ci"] = interval(x)
        row["dqn_over_greedy"] = round(row["dqn_return"] / row["greedy_return"], 4)
        if guard:
            row["dqn_guarded_over_greedy"] = round(row["dqn_guarded_return"]
                                                   / row["greedy_return"], 4)
        row["fixed_strategy_return"] = {k: round(v, 4) for k, v in fixed.items()}
        row["ci_overlap"] = row["dqn_return_ci"][0] <= row["greedy_return_ci"][1]
        row["off_policy"] = off_policy(sim, test, emb, policy)
        settings.append(row)
        log.info("%s", row)
    return {"users": n_users, "items": n_items, "world": WORLD, "rounds": rounds, "seeds": seeds,
            "served_fit_seconds": round(fit_seconds, 1), "train_seconds": info["train_seconds"],
            "dqn": {k: v for k, v in info.items() if k != "train_seconds"},
            "guard": guard_report, "settings": settings}


def off_policy(sim, pools, emb, policy) -> dict:
    """IPS / SNIPS (models.ope) of the DQN's clicks per step from sessions logged under
    uniformly random strategies (known propensity 1/A): over every logged step, and over the
    first steps alone, whose states do not depend on the logging policy, beside the exact
    figure there (the simulator's click probabilities of the DQN's first slates)."""
    from models.dqn import STRATEGIES, rerank, states
    from models.ope import ips, snips
    from models.rl_sessions import run_sessions

    A, c = len(STRATEGIES), sim.config
    rng = np.random.default_rng(7)
    _, steps = run_sessions(sim, pools, emb, lambda s: rng.integers(0, A, len(s)), 77,
                            record=True, propensity=lambda s, a: np.full(len(a), 1.0 / A))
    target = (policy.act(steps.state) == steps.action).astype(float)
    first = steps.state[:, 2 * pools.query.shape[1]] == 0  # the step feature is 0
    s0 = sim.reset(pools.users, 0)
    avail = pools.items >= 0
    x = states(pools.query, pools.recent, pools.items, avail, emb, 0.0, np.zeros(len(avail)),
               c.slate)
    slates = rerank(pools.items, avail, emb, pools.recent, policy.act(x), c.slate)
    return {"logged_steps": len(steps),
            "logged_clicks_per_step": round(float(steps.reward.mean()), 4),
            "all_steps": {"ips": ips(steps.reward, target, steps.propensity),
                          "snips": snips(steps.reward, target, steps.propensity)},
            "first_step": {"ips": ips(steps.reward[first], target[first],
                                      steps.propensity[first]),
                           "snips": snips(steps.reward[first], target[first],
                                          steps.propensity[first]),
                           "exact": round(float(sim.click_probs(s0, slates).sum(1).mean()), 4)}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=2000, help="synthetic users (half train)")
    p.add_argument("--items", type=int, default=500, help="synthetic items")
    p.add_argument("--rounds", type=int, default=40, help="DQN rounds of 1000 sessions")
    p.add_argument("--seeds", type=int, default=4, help="scored sessions per test user")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-guard", action="store_true",
                   help="skip the deployment guard's margins (models.dqn_guard; ~2 min)")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t = time.perf_counter()
    out = run(a.users, a.items, a.rounds, a.seeds, a.seed, not a.no_guard)
    out["seconds"] = round(time.perf_counter() - t, 1)
    emit(out, a.json)
    for s in out["settings"]:
        print(f"{s['name']}: dqn {s['dqn_return']} {s['dqn_return_ci']} greedy(served) "  # noqa: T201
              f"{s['greedy_return']} {s['greedy_return_ci']} random {s['random_return']} "
              f"oracle {s['oracle_return']} dqn_over_greedy {s['dqn_over_greedy']} "
              f"overlap {s['ci_overlap']}")
        if "dqn_guarded_return" in s:
            print(f"{s['name']}: dqn with the guard's warm margin "  # noqa: T201
                  f"{s['dqn_guarded_return']} {s['dqn_guarded_return_ci']} "
                  f"over greedy {s['dqn_guarded_over_greedy']}")
    print(f"train_seconds {out['train_seconds']}")  # noqa: T201


if __name__ == "__main__":
    main()
