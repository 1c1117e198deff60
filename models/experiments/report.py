"""An experiment's report: per-arm figures, differences with intervals, SRM, guardrails, verdict.

    recsys experiment report NAME --store ./artifacts [--json r.json] [--plot ctr.png]

Pure pandas/statsmodels over the impressions and events logs (infra/experiment_data.py reads
them); attribution and the per-arm figures are models/experiments/attribution.py's.

- Primary metric: CTR (impressions with an attributed click or purchase / impressions). The
  others: conversion rate (users with an attributed purchase / users), value per user (sum of
  attributed purchases' `value` / users; AOV = value / purchases) and 7-day retention.
- Intervals: differences of proportions (CTR, conversion, retention) with Newcombe's interval
  (stats.proportion_differences, statsmodels); value per user with Welch's interval
  (statsmodels CompareMeans, unequal variances). They hold for one look. CTR treats impressions
  as independent, which repeat visits of a user make slightly optimistic.
- Significance: the mSPRT's always-valid p-value (stats.msprt_p_values, Johari et al. 2022) over
  the cumulative figures at the end of every day since the start and at `now`: people may look
  at the report every day, and stop at the first p < alpha, without inflating the false-positive
  rate (benchmarks/experiments.py checks it by simulation). tau, the mixing scale, is the
  smallest lift worth detecting (`min_lift`, 5% of the control's figure), as sample sizes use.
- Sample-ratio mismatch: stats.sample_ratio, chi-square of the users per arm against the
  allocations; flagged below p = 0.001. A flagged experiment has no winner.
- Guardrails (`Guardrails`, from the impressions): an arm breaches when its latency p99 is
  above the control's × 1.5 + 5 ms, its error rate (status ≥ 500) above the control's + 0.01,
  or its fallback rate (source popular or fallback) above the control's + 0.05.
- Winner: the arm significantly better than the control on CTR (always-valid p < alpha, the
  difference > 0) with no guardrail breach (the best such arm); the control when every other
  arm is significantly worse; otherwise none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from models.experiments.assignment import Experiment
from models.experiments.attribution import (
    DAY_MS,
    ArmFigures,
    activity_times,
    arm_figures,
    attribute,
)
from models.experiments.stats import (
    plug_in_p_values,
    proportion_differences,
    sample_ratio,
    sequential_sample_size,
)

PRIMARY = "ctr"
MIN_LIFT = 0.05
RATES = {"ctr": ("clicks", "impressions"), "conversion_rate": ("buyers", "users"),
         "retention_7d": ("retained", "retention_eligible")}
TEST = ("mSPRT always-valid p-values over daily looks (Johari et al. 2022; valid however often "
        "the report is read); intervals: Newcombe (rates), Welch (value per user), one look")


@dataclass(frozen=True)
class Guardrails:
    """When an arm breaches against the control (the defaults; docs/EXPERIMENTS.md)."""

    latency_factor: float = 1.5  # p99 above control p99 × factor + slack
    latency_slack_ms: float = 5.0
    error_margin: float = 0.01  # error rate above the control's + margin
    fallback_margin: float = 0.05  # fallback rate above the control's + margin

    def breaches(self, arm: ArmFigures, control: ArmFigures) -> list[str]:
        """What `arm` breaches, as sentences (empty: its guardrails hold)."""
        if not arm.impressions:
            return ["no impressions: nothing shows its guardrails hold"]
        if not control.impressions:
            return ["the control has no impressions to compare with"]
        out = []
        limit = control.latency_p99_ms * self.latency_factor + self.latency_slack_ms
        if arm.latency_p99_ms > limit:
            out.append(f"latency p99 {arm.latency_p99_ms:.1f} ms > {limit:.1f} ms (control "
                       f"{control.latency_p99_ms:.1f} ms × {self.latency_factor:g} + "
                       f"{self.latency_slack_ms:g})")
        for name, margin in (("error_rate", self.error_margin),
                             ("fallback_rate", self.fallback_margin)):
            mine, theirs = getattr(arm, name), getattr(control, name)
            if mine > theirs + margin:
                out.append(f"{name.replace('_', ' ')} {mine:.2%} > control {theirs:.2%} + "
                           f"{margin:.0%}")
        return out


def experiment_report(exp: Experiment, impressions: pd.DataFrame, events: pd.DataFrame, *,
                      started_ms: int | None, now_ms: int, alpha: float = 0.05,
                      guardrails: Guardrails = Guardrails(), min_lift: float = MIN_LIFT) -> dict:
    """The report of `exp` over the logs (the keys are the module docstring's; reading it:
    docs/EXPERIMENTS.md, *Impressions, attribution and the report*).

    Args:
        exp: the experiment; its first arm is the control.
        impressions: IMPRESSIONS_SCHEMA rows (infra/events_log.py); only this experiment's,
            from `started_ms` to `now_ms`, of its arms, count, and not those answered 4xx
            (a bad request says nothing of an arm; 5xx answers count, as errors).
        events: EVENTS_SCHEMA rows (timestamp in epoch seconds).
        started_ms: the experiment's start (None: its first impression).
        now_ms: the report's time: nothing later counts.
        alpha: the tests' level; intervals cover 1 - alpha.
        guardrails: the breach thresholds.
        min_lift: the smallest relative change worth detecting (the mSPRT's tau, the sample
            size).
    """
    arms = [a.name for a in exp.arms]
    control = arms[0]
    imp = impressions[(impressions["experiment"] == exp.name) & impressions["arm"].isin(arms)
                      & (impressions["ts_ms"] <= now_ms)
                      & ~impressions["status"].between(400, 499)]  # the client's errors
    if started_ms is not None:
        imp = imp[imp["ts_ms"] >= started_ms]
    start = int(started_ms if started_ms is not None else
                (imp["ts_ms"].min() if len(imp) else now_ms))
    attributed = attribute(imp, events, now_ms=now_ms)
    activity = activity_times(impressions, events)
    users = pd.Index(activity["user_id"].unique())  # ids as integer codes: fast isin, groupby
    imp, attributed, activity = (df.assign(user_id=users.get_indexer(df["user_id"]))
                                 for df in (imp, attributed, activity))
    looks = list(range(start + DAY_MS, now_ms, DAY_MS)) + [now_ms]
    figures = [arm_figures(imp, attributed, activity, arms, until_ms=t) for t in looks]
    final = figures[-1]
    differences = {arm: _differences(figures, arm, control, alpha, min_lift)
                   for arm in arms[1:]}
    srm = sample_ratio([final[a].users for a in arms], [a.allocation for a in exp.arms])
    rails = {}
    for arm in arms:
        breaches = [] if arm == control else guardrails.breaches(final[arm], final[control])
        rails[arm] = {"ok": not breaches, "breaches": breaches}
    winner = _winner(arms, differences, rails, srm.mismatch)
    report = {
        "experiment": exp.name, "control": control, "primary_metric": PRIMARY,
        "started_ms": start, "now_ms": now_ms, "alpha": alpha, "min_lift": min_lift,
        "test": TEST,
        "arms": {a.name: _arm_dict(a.version, a.allocation, final[a.name]) for a in exp.arms},
        "differences": differences,
        "srm": {"p_value": srm.p_value, "flagged": srm.mismatch,
                "counts": {a: final[a].users for a in arms}},
        "guardrails": rails, "winner": winner,
        "sample_size_per_arm": _sample_size(final[control], alpha, min_lift),
        "daily": _daily(looks, figures, arms, alpha)}
    report["verdict"] = verdict(report)
    return _plain(report)


def _arm_dict(version: str, allocation: int, f: ArmFigures) -> dict:
    def ratio(a, b):
        return a / b if b else None

    return {"version": version, "allocation": allocation, "users": f.users,
            "impressions": f.impressions, "clicks": f.clicks, "ctr": ratio(f.clicks, f.impressions),
            "purchases": f.purchases, "buyers": f.buyers,
            "conversion_rate": ratio(f.buyers, f.users), "value": f.value,
            "value_per_user": ratio(f.value, f.users), "aov": ratio(f.value, f.purchases),
            "retention_7d": ratio(f.retained, f.retention_eligible),
            "retention_eligible": f.retention_eligible, "latency_p99_ms": f.latency_p99_ms,
            "error_rate": f.error_rate, "fallback_rate": f.fallback_rate}


def _differences(figures: list[dict], arm: str, control: str, alpha: float,
                 min_lift: float) -> dict:
    out = {}
    f, c = figures[-1][arm], figures[-1][control]
    for metric, (succ, trials) in RATES.items():
        n, nc = getattr(f, trials), getattr(c, trials)
        if not (n and nc):
            out[metric] = _empty()
            continue
        (d,) = proportion_differences({arm: getattr(f, succ), control: getattr(c, succ)},
                                      {arm: n, control: nc}, control, alpha)
        series = [[getattr(x[who], k) for x in figures]
                  for who, k in ((control, succ), (control, trials), (arm, succ), (arm, trials))]
        p = float(plug_in_p_values(*series, min_lift=min_lift))
        out[metric] = _difference(d.difference, d.ci_low, d.ci_high, p, d.p_value, alpha)
    out["value_per_user"] = _value_difference(figures, arm, control, alpha, min_lift)
    return out


def _value_difference(figures, arm, control, alpha, min_lift) -> dict:
    """Welch's interval of the difference of mean value per user; mSPRT over the looks."""
    a, b = figures[-1][control].user_values, figures[-1][arm].user_values
    if len(a) < 2 or len(b) < 2:
        return _empty()
    tau = max(abs(a.mean()) * min_lift, 1e-9)
    log_lr = [_msprt_log_lr(x[control].user_values, x[arm].user_values, tau) for x in figures]
    p = min(1.0, math.exp(-max(log_lr)))
    if a.var() == 0 and b.var() == 0:  # all equal (e.g. no purchase anywhere): no spread
        diff = float(b.mean() - a.mean())
        return _difference(diff, diff, diff, p, 1.0 if diff == 0 else 0.0, alpha)
    cm = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    low, high = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    fixed_p = cm.ttest_ind(usevar="unequal")[1]
    return _difference(float(b.mean() - a.mean()), low, high, p, fixed_p, alpha)


def _msprt_log_lr(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """log Λ of the normal-mixture mSPRT for mean(b) - mean(a) (stats.py's formula, for means:
    V = var_a / n_a + var_b / n_b); 0 while there is no spread to measure."""
    if len(a) < 2 or len(b) < 2:
        return 0.0
    v = a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)
    if not (v > 0 and math.isfinite(v)):
        return 0.0
    t2 = tau * tau
    return 0.5 * math.log(v / (v + t2)) + (b.mean() - a.mean()) ** 2 * t2 / (2 * v * (v + t2))


def _difference(diff, low, high, p, fixed_p, alpha) -> dict:
    return {"difference": float(diff), "ci_low": float(low), "ci_high": float(high),
            "p_value": float(p), "fixed_horizon_p_value": float(fixed_p),
            "significant": bool(p < alpha)}


def _empty() -> dict:
    return {"difference": None, "ci_low": None, "ci_high": None, "p_value": None,
            "fixed_horizon_p_value": None, "significant": False}


def _winner(arms: list[str], differences: dict, rails: dict, srm_flagged: bool) -> str | None:
    if srm_flagged:
        return None
    primary = {arm: differences[arm][PRIMARY] for arm in arms[1:]}
    better = [a for a, d in primary.items() if d["significant"] and d["difference"] > 0
              and rails[a]["ok"]]
    if better:
        return max(better, key=lambda a: primary[a]["difference"])
    if all(d["significant"] and d["difference"] < 0 for d in primary.values()):
        return arms[0]
    return None


def _sample_size(control: ArmFigures, alpha: float, min_lift: float) -> int | None:
    """Users per arm for the mSPRT to detect `min_lift` on CTR with 80% power, from the
    control's CTR and impressions per user so far (None before any click)."""
    if not control.users or not 0 < control.clicks < control.impressions:
        return None
    ctr = control.clicks / control.impressions
    try:
        n = sequential_sample_size(ctr, min_lift, alpha)
    except ValueError:
        return None
    return int(math.ceil(n / (control.impressions / control.users)))


def _daily(looks: list[int], figures: list[dict], arms: list[str], alpha: float) -> list[dict]:
    """Each arm's cumulative CTR, conversion rate and value per user at each look, with its
    own (1 - alpha) interval (Wilson for rates, t for the mean)."""
    rows = []
    for day, (t, figs) in enumerate(zip(looks, figures, strict=True), start=1):
        date = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        for arm in arms:
            f = figs[arm]
            for metric, (succ, trials) in (("ctr", RATES["ctr"]),
                                           ("conversion_rate", RATES["conversion_rate"])):
                s, n = getattr(f, succ), getattr(f, trials)
                low, high = proportion_confint(s, n, alpha, method="wilson") if n else (None,) * 2
                rows.append(_day(day, date, arm, metric, s / n if n else None, low, high))
            v = f.user_values
            low, high = (DescrStatsW(v).tconfint_mean(alpha) if len(v) > 1 and v.var() > 0
                         else (v.mean(),) * 2 if len(v) else (None,) * 2)
            rows.append(_day(day, date, arm, "value_per_user", v.mean() if len(v) else None,
                             low, high))
    return rows


def _day(day, date, arm, metric, value, low, high) -> dict:
    return {"day": day, "date": date, "arm": arm, "metric": metric, "value": value,
            "ci_low": low, "ci_high": high}


def verdict(report: dict) -> str:
    """One sentence: which arm is better, or why none is (yet)."""
    srm, winner, control = report["srm"], report["winner"], report["control"]
    if srm["flagged"]:
        return (f"Sample ratio mismatch (p = {srm['p_value']:.2g}, users {srm['counts']}): the "
                "assignment or the logging is broken, so no figure can be trusted and no arm "
                "is named.")
    if winner and winner != control:
        d = report["differences"][winner][PRIMARY]
        return (f"{winner} is better than {control} on CTR ({100 * d['difference']:+.2f} "
                f"points, CI [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}], "
                "always-valid p = "
                f"{d['p_value']:.2g}) with its guardrails holding: "
                f"`recsys experiment promote {report['experiment']} {winner}` ships it.")
    if winner == control:
        return (f"{control} (the control) is better: every other arm's CTR is significantly "
                "lower; keep the control.")
    held = [a for a, r in report["guardrails"].items() if not r["ok"]]
    up = [a for a, d in report["differences"].items()
          if d[PRIMARY]["significant"] and d[PRIMARY]["difference"] > 0]
    if up:
        return (f"{', '.join(up)} is better on CTR but breaches its guardrails "
                f"({'; '.join(report['guardrails'][up[0]]['breaches'])}): no winner.")
    need = report["sample_size_per_arm"]
    have = min(a["users"] for a in report["arms"].values())
    extra = f" ({' '.join(held)} breaching guardrails)" if held else ""
    return (f"No significant difference on CTR yet{extra}: {have} users in the smallest arm"
            + (f" of the {need} recommended per arm" if need else "") + "; keep it running.")


def _plain(value):
    """JSON-ready: NumPy scalars to Python, NaN and inf to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
