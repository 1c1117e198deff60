"""The alerts, as data: each one's PromQL, how long it must hold, severity and runbook.

Written once here and rendered twice by `python -m infra.monitoring`: the Prometheus rules file
(infra/monitoring/recsys.rules.yml, `rules_document`) and the Cloud Monitoring alert policies of
terraform/modules/monitoring (cloud_monitoring.py), so a threshold changes in one place. Their
unit tests (infra/monitoring/recsys.test.yml) are written by hand: they say, with input series,
when each alert must and must not fire. docs/OPERATIONS.md has one section per alert (its
`runbook_url` anchor): what it means and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.monitoring.panels import EVENTS, RECOMMENDATIONS, WINDOW, m, quantile, rate

RUNBOOK = "docs/OPERATIONS.md"
GROUP = "recsys"
NO_PUBLISH_HOURS = 26  # the nightly runs every 24 h; two hours of slack for a slow run
P99_TARGET_SECONDS = 0.25  # /recommend; a bucket bound of LATENCY_BUCKETS, so p99 is exact there
FALLBACK_RATIO = 0.05
REJECTED_RATIO = 0.10
INGESTION_LAG_HOURS = 26  # events wait for the next night's drain: up to a day is normal


@dataclass(frozen=True)
class Alert:
    """One alerting rule.

    Attributes:
        name: CamelCase alert name; docs/OPERATIONS.md has a `### <name>` section.
        expr: PromQL that returns a series while the problem lasts.
        hold: how long expr must keep returning before the alert fires (Prometheus `for`).
        severity: `page` (someone acts now) or `ticket` (the next working hours).
        summary: one line for the notification.
        description: what it means, for the notification's body.
    """

    name: str
    expr: str
    hold: str
    severity: str
    summary: str
    description: str

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK}#{self.name.lower()}"

    @property
    def hold_seconds(self) -> int:
        value, unit = int(self.hold[:-1]), self.hold[-1]
        return value * {"s": 1, "m": 60, "h": 3600}[unit]


_PUBLISHED = m("recsys_nightly_last_publish_timestamp_seconds")
_RECOMMEND_P99 = quantile(0.99, "path", '{path="recommend"}')
_REJECTED = rate("recsys_events_total", '{result="rejected"}')
_UNAVAILABLE = rate("recsys_events_total", '{result="unavailable"}')

ALERTS: tuple[Alert, ...] = (
    Alert("RecsysNoPublish",
          f"time() - max({_PUBLISHED}) > {NO_PUBLISH_HOURS} * 3600 or absent({_PUBLISHED})",
          "10m", "page", f"No version published for {NO_PUBLISH_HOURS} hours",
          "The nightly has not flipped the current pointer for over a day (or never pushed its "
          "metrics): users get ever older lists."),
    Alert("RecsysNightlyFailed", f"max({m('recsys_nightly_success')}) == 0", "0m", "page",
          "The last nightly run failed",
          "The last run of the nightly job pushed success 0: it published nothing and the "
          "served version stays the one before."),
    Alert("RecsysGateFailed",
          f'max({m("recsys_nightly_gate_ndcg")}{{model="candidate"}}) <= '
          f'max({m("recsys_nightly_gate_ndcg")}{{model="popularity"}})',
          "0m", "ticket", "The last candidate model did not beat popularity",
          "On the quality gate's validation window the trained model's NDCG@10 was not above "
          "popularity's: the run was refused (or forced through with --force-publish)."),
    Alert("RecsysRecommendLatencyHigh",
          f"{_RECOMMEND_P99} > {P99_TARGET_SECONDS}",
          "10m", "page", f"/recommend p99 above {P99_TARGET_SECONDS * 1000:g} ms",
          f"The 99th percentile of /recommend's handler latency over {WINDOW} is above the "
          "target."),
    Alert("RecsysFallbackRatioHigh",
          f"sum({rate('recsys_fallbacks_total')}) / sum({RECOMMENDATIONS}) > {FALLBACK_RATIO}",
          "5m", "page", f"Over {FALLBACK_RATIO:.0%} of /recommend answers are degraded",
          "Fallback answers (popular lists because Redis or the bundle is unavailable) "
          "exceed their share of all answers."),
    Alert("RecsysEventsRejectedHigh",
          f"sum({_REJECTED}) / sum({EVENTS})"
          f" > {REJECTED_RATIO}",
          "10m", "ticket", f"Over {REJECTED_RATIO:.0%} of posted events are rejected",
          "Clients post events the functions refuse (bad ids, unknown event types, bad "
          "timestamps): the next night trains without them."),
    Alert("RecsysEventsUnavailable",
          f"sum({_UNAVAILABLE}) > 0",
          "5m", "page", "Events are refused because Redis is unavailable",
          "/events answers 503 (Redis down or full): clients must retry, or the events are lost."),
    Alert("RecsysIngestionLagHigh",
          f"max({m('recsys_ingestion_lag_seconds')}) > {INGESTION_LAG_HOURS} * 3600",
          "15m", "ticket", f"Events wait over {INGESTION_LAG_HOURS} hours to be drained",
          "The oldest event in the stream is older than a night: the nightly's drain did not "
          "run or failed, and the stream grows in Redis memory."),
    Alert("RecsysImpressionsDropped",
          f"sum({rate('recsys_impressions_dropped_total', window='15m')}) > 0",
          "15m", "ticket", "Impressions are being dropped",
          "Served lists are not recorded: online CTR, conversion and experiment analyses "
          "undercount."),
)


def alert(name: str) -> Alert:
    for a in ALERTS:
        if a.name == name:
            return a
    raise KeyError(f"no alert {name!r} (alerts: {', '.join(a.name for a in ALERTS)})")


def rules_document() -> dict:
    """The Prometheus rules file (one group) as a YAML-ready dict."""
    rules = [{
        "alert": a.name,
        "expr": a.expr,
        "for": a.hold,
        "labels": {"severity": a.severity},
        "annotations": {"summary": a.summary, "description": a.description,
                        "runbook_url": a.runbook_url},
    } for a in ALERTS]
    return {"groups": [{"name": GROUP, "rules": rules}]}

