"""The canary decision: promote the new version, roll it back, or wait for more traffic.

`recsys canary check` (app/canary_cli.py) builds the running canary experiment's report
(models/experiments/report.py, `experiment_report`) and asks `decide` what to do. The rules,
in this order, the first that applies wins:

0. `current` (when given) is no longer the control arm's version: someone published or rolled
   back since the canary started, so promoting would replace a newer choice with the canary →
   **rollback** (the experiment stops; everyone gets `current`);
1. a guardrail of the canary arm breached (latency p99, error or fallback rate; the report's
   `guardrails`), once the arm has `min_impressions` impressions → **rollback**: the new
   version hurts people now, whatever its clicks say;
2. sample-ratio mismatch flagged (the report's `srm`, chi-square below p = 0.001) →
   **rollback**: users do not reach the arms in the allocated shares, so the assignment or the
   logging is broken and no figure of the run can be trusted; the safe side is the version
   everyone had (the control still has its lists: ServedLists.expire_old keeps them);
3. the primary metric (CTR) significantly worse: the difference canary − control is below 0
   and significant by the report's always-valid p-value (the mSPRT's, which stays valid
   however often the check looks: an hourly check does not inflate false rollbacks) →
   **rollback**. The report's interval (Newcombe's) holds for one look only, so it is shown
   in the reasons but does not decide;
4. every arm has `min_users` users, the guardrails hold and CTR is not significantly worse →
   **promote** (NS:current flips to the canary's version);
5. otherwise → **wait** for the next check.

"Not significantly worse" is the promise: a canary is promoted when the data rule out neither
equality nor a small gain, not only when it is proven better. Plain Python over the report
dict; no Redis, no I/O.

    python -c "from models.experiments.canary import decide; print(decide({'control': 'control',
    'arms': {'control': {'users': 10}, 'canary': {'users': 2}}}).action)"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PROMOTE, ROLLBACK, WAIT = "promote", "rollback", "wait"
MIN_USERS = 1000  # per arm, before a promotion
MIN_IMPRESSIONS = 100  # of the canary arm, before its guardrails count
PRIMARY = "ctr"


@dataclass(frozen=True)
class Decision:
    """What to do with a canary, why (one sentence per reason) and the figures it used."""

    action: str  # PROMOTE, ROLLBACK or WAIT
    reasons: list[str]
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON-ready form (what Experiments.record_decision keeps)."""
        return {"action": self.action, "reasons": list(self.reasons), "figures": self.figures}


def decide(report: Mapping, *, canary_arm: str = "canary", min_users: int = MIN_USERS,
           min_impressions: int = MIN_IMPRESSIONS, metric: str = PRIMARY,
           current: str | None = None) -> Decision:
    """The canary's fate from an experiment report (the module docstring gives the rules).

    Args:
        report: `experiment_report`'s dict: "control" (arm name), "arms" (arm -> "users",
            "impressions", "ctr", …), "differences" (arm -> metric -> "difference", "ci_low",
            "ci_high", "p_value" (always-valid), "significant" (that p-value < alpha)),
            "guardrails" (arm -> "ok", "breaches"), "srm" ("p_value", "flagged").
        canary_arm: the arm serving the new version.
        min_users: users every arm needs before a promotion.
        min_impressions: impressions the canary needs before its guardrails decide.
        metric: the primary metric, a rate whose interval is in "differences".
        current: the version NS:current names now (None: not checked); compared with the
            control arm's "version".

    Raises:
        ValueError: the report names no control arm (or names the canary), or a threshold is
            not a positive integer. An arm missing from "arms" has no traffic yet: wait.
    """
    for name, value in (("min_users", min_users), ("min_impressions", min_impressions)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
    control = report.get("control")
    arms = report.get("arms") or {}
    if not control or control == canary_arm:
        raise ValueError(f"report: control arm {control!r} is missing or is the canary arm")
    canary = arms.get(canary_arm) or {}
    difference = ((report.get("differences") or {}).get(canary_arm) or {}).get(metric) or {}
    guardrail = (report.get("guardrails") or {}).get(canary_arm) or {}
    srm = report.get("srm") or {}
    users = {arm: int((arms.get(arm) or {}).get("users") or 0) for arm in (control, canary_arm)}
    impressions = int(canary.get("impressions") or 0)
    figures = {
        "users": users,
        "impressions": {arm: int((arms.get(arm) or {}).get("impressions") or 0)
                        for arm in (control, canary_arm)},
        metric: {arm: (arms.get(arm) or {}).get(metric) for arm in (control, canary_arm)},
        f"{metric}_difference": {k: difference.get(k) for k in
                                 ("difference", "ci_low", "ci_high", "p_value", "significant")},
        "guardrails": {"ok": guardrail.get("ok", True),
                       "breaches": list(guardrail.get("breaches") or [])},
        "srm": {"p_value": srm.get("p_value"), "flagged": bool(srm.get("flagged"))},
        "thresholds": {"min_users": min_users, "min_impressions": min_impressions},
    }

    def decision(action: str, *reasons: str) -> Decision:
        return Decision(action, list(reasons), figures)

    control_version = (arms.get(control) or {}).get("version")
    if current is not None and control_version is not None and current != control_version:
        figures["current"] = current
        return decision(ROLLBACK, f"current moved to {current} since the canary started "
                                  f"(its control serves {control_version}): promoting would "
                                  f"replace {current}, so the canary stops and everyone gets it")
    breaches = figures["guardrails"]["breaches"]
    if (breaches or not figures["guardrails"]["ok"]) and impressions >= min_impressions:
        return decision(ROLLBACK, *[f"guardrail breached on arm {canary_arm!r}: {b}"
                                    for b in breaches or ["(no detail in the report)"]])
    if figures["srm"]["flagged"]:
        return decision(ROLLBACK, f"sample-ratio mismatch (p = {_g(srm.get('p_value'))}): "
                                  "users do not reach the arms in their shares, so the "
                                  "assignment or the logging is broken")
    diff, high = difference.get("difference"), difference.get("ci_high")
    if diff is not None and diff < 0 and difference.get("significant"):
        return decision(ROLLBACK, f"{metric} significantly worse: {canary_arm} − {control} = "
                                  f"{_g(diff)} (always-valid p = "
                                  f"{_g(difference.get('p_value'))}; interval "
                                  f"[{_g(difference.get('ci_low'))}, {_g(high)}])")
    short = {arm: n for arm, n in users.items() if n < min_users}
    waits = [f"fewer than {min_users} users per arm yet ("
             + ", ".join(f"{arm} has {n}" for arm, n in short.items()) + ")"] if short else []
    if impressions < min_impressions:
        waits.append(f"{canary_arm} has {impressions} impressions, fewer than the "
                     f"{min_impressions} its guardrails need"
                     + (f" (pending breaches: {'; '.join(breaches)})" if breaches else ""))
    if diff is None:
        waits.append(f"no {metric} difference in the report yet")
    if waits:
        return decision(WAIT, *waits)
    return decision(PROMOTE, f"{min_users}+ users per arm, guardrails hold, {metric} not "
                             f"significantly worse ({canary_arm} − {control} = {_g(diff)}, "
                             f"always-valid p = {_g(difference.get('p_value'))}; interval "
                             f"[{_g(difference.get('ci_low'))}, {_g(high)}])")


def _g(value) -> str:
    """A figure for a sentence: 4 significant digits, or `n/a`."""
    return "n/a" if value is None else f"{value:.4g}"
