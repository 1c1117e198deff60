"""The operator's dashboard as data: rows of panels, each with its PromQL queries.

The Grafana dashboard (grafana.py) and the Cloud Monitoring one (cloud_monitoring.py) are both
drawn from ROWS, so the two show the same figures; every metric a query names comes from the
catalogue (`m("...")` raises on a name it does not hold). Windows are written out (`[5m]`)
rather than Grafana's `$__rate_interval`, so the same text runs in Grafana, in Google Managed
Prometheus and in the tests' Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.monitoring.catalogue import exported_series, metric

WINDOW = "5m"  # rates and latency quantiles
QUALITY_WINDOW = "1h"  # CTR and conversion: clicks come minutes after the impression


def m(name: str) -> str:
    """A series name checked against the catalogue (histograms: `<name>_bucket` etc.)."""
    family = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
    if name not in exported_series(metric(family)):
        raise KeyError(f"{name!r} is not a series of {family!r}")
    return name


@dataclass(frozen=True)
class Query:
    """One PromQL expression and its legend (Grafana's `{{label}}` syntax)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel: `timeseries` (a graph) or `stat` (one current number)."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"  # Grafana unit ids: short, reqps, s, percentunit, dateTimeAsIso
    kind: str = "timeseries"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def rate(series: str, selector: str = "", window: str = WINDOW) -> str:
    return f"rate({m(series)}{selector}[{window}])"


def ratio_or_zero(numerator: str, denominator: str, by: str = "") -> str:
    """numerator / denominator, 0 (not "no data") while the numerator has no series yet."""
    group = f" by ({by}) " if by else ""
    return (f"(sum{group}({numerator}) or sum{group}({denominator}) * 0)"
            f" / sum{group}({denominator})")


def quantile(q: float, by: str, selector: str = "") -> str:
    return (f"histogram_quantile({q}, sum by (le, {by}) "
            f"({rate('recsys_request_seconds_bucket', selector)}))")


REQUESTS, RECOMMENDATIONS = rate("recsys_requests_total"), rate("recsys_recommendations_total")
EVENTS = rate("recsys_events_total")


def _attributed(event_type: str) -> str:
    return ratio_or_zero(
        rate("recsys_attributed_events_total", f'{{event_type="{event_type}"}}', QUALITY_WINDOW),
        rate("recsys_impressions_total", window=QUALITY_WINDOW), by="version")


ROWS: tuple[Row, ...] = (
    Row("Traffic and latency", (
        Panel("Requests per second", "Answers per second by handler.",
              (Query(f"sum by (path) ({REQUESTS})", "{{path}}"),), unit="reqps"),
        Panel("Server errors", "Share of answers with a 5xx status, by handler.",
              (Query(ratio_or_zero(rate("recsys_requests_total", '{code=~"5.."}'), REQUESTS,
                                   by="path"), "{{path}}"),), unit="percentunit"),
        Panel("/recommend latency by source", "p50 and p99 of /recommend by where the list "
              "came from (cache, on_demand, popular, fallback).",
              (Query(quantile(0.99, "source", '{path="recommend"}'), "p99 {{source}}"),
               Query(quantile(0.5, "source", '{path="recommend"}'), "p50 {{source}}")),
              unit="s"),
        Panel("p99 latency by handler", "99th percentile of handler latency.",
              (Query(quantile(0.99, "path"), "{{path}}"),), unit="s"),
    )),
    Row("Sources and fallbacks", (
        Panel("Answers by source", "Answers of /recommend per second by source.",
              (Query(f"sum by (source) ({RECOMMENDATIONS})", "{{source}}"),), unit="reqps"),
        Panel("Cache hit ratio", "Share of nightly-list lookups that found a list.",
              (Query(ratio_or_zero(rate("recsys_cache_lookups_total", '{result="hit"}'),
                                   rate("recsys_cache_lookups_total")), "hit ratio"),),
              unit="percentunit"),
        Panel("Fallback ratio", "Degraded answers / answers of /recommend (alert: 5%).",
              (Query(ratio_or_zero(rate("recsys_fallbacks_total"), RECOMMENDATIONS),
                     "fallbacks"),), unit="percentunit"),
        Panel("Fallbacks by reason", "Degraded answers per second by reason.",
              (Query(f"sum by (reason) ({rate('recsys_fallbacks_total')})", "{{reason}}"),),
              unit="reqps"),
    )),
    Row("Events", (
        Panel("Events by result", "Posted events per second: stored, duplicate, rejected, "
              "unavailable.", (Query(f"sum by (result) ({EVENTS})", "{{result}}"),),
              unit="reqps"),
        Panel("Rejected events", "Share of posted events rejected (alert: 10%).",
              (Query(ratio_or_zero(rate("recsys_events_total", '{result="rejected"}'), EVENTS),
                     "rejected"),), unit="percentunit"),
        Panel("Ingestion lag", "Age of the oldest event not yet drained to the event log.",
              (Query(f"max({m('recsys_ingestion_lag_seconds')})", "lag"),), unit="s"),
    )),
    Row("The nightly", (
        Panel("Since the last publish", "Time since the nightly last flipped `current`.",
              (Query(f"time() - max({m('recsys_nightly_last_publish_timestamp_seconds')})",
                     "since publish"),), unit="s", kind="stat"),
        Panel("Since the last success", "Time since a nightly run last finished well.",
              (Query(f"time() - max({m('recsys_nightly_last_success_timestamp_seconds')})",
                     "since success"),), unit="s", kind="stat"),
        Panel("Last run succeeded", "1: the last run published; 0: it failed.",
              (Query(f"max({m('recsys_nightly_success')})", "success"),), kind="stat"),
        Panel("Stage seconds", "Seconds each stage of the last run took.",
              (Query(f"max by (stage) ({m('recsys_nightly_stage_seconds')})", "{{stage}}"),),
              unit="s"),
        Panel("Users", "Users of the last run: lists published, carried over, refreshed.",
              (Query(f"max by (kind) ({m('recsys_nightly_users')})", "{{kind}}"),)),
        Panel("Dead letters", "Input rows the last run refused, by reason.",
              (Query(f"max by (reason) ({m('recsys_nightly_dead_letters')})", "{{reason}}"),
               Query(f"sum({m('recsys_nightly_dead_letters')}) or vector(0)", "all"))),
        Panel("Quality gate", "NDCG@10 of the candidate and of popularity on the gate's "
              "window, and the index's recall.",
              (Query(f"max by (model) ({m('recsys_nightly_gate_ndcg')})", "ndcg@10 {{model}}"),
               Query(f"max({m('recsys_nightly_index_recall')})", "index recall"))),
    )),
    Row("Versions and experiments", (
        Panel("Instances per served version", "Instances serving each version (two during "
              "a swap).", (Query(f"count by (version) ({m('recsys_served_version_info')} == 1)",
                                 "{{version}}"),)),
        Panel("Served version age", "Time since the served version was published.",
              (Query(f"max({m('recsys_served_version_age_seconds')})", "age"),), unit="s"),
        Panel("Experiment arms", "Answers per second inside the running experiment, by arm.",
              (Query(f"sum by (experiment, arm) ({rate('recsys_experiment_requests_total')})",
                     "{{experiment}} {{arm}}"),), unit="reqps"),
        Panel("Impressions", "Recorded impressions per second by version and arm, and the "
              "ones dropped.",
              (Query(f"sum by (version, arm) ({rate('recsys_impressions_total')})",
                     "{{version}} {{arm}}"),
               Query(f"sum({rate('recsys_impressions_dropped_total')}) or vector(0)",
                     "dropped")), unit="reqps"),
    )),
    Row("Quality", (
        Panel("CTR by version", f"Clicks attributed by recommendation_id / impressions, over "
              f"{QUALITY_WINDOW}.", (Query(_attributed("click"), "{{version}}"),),
              unit="percentunit"),
        Panel("Conversion by version", f"Purchases attributed by recommendation_id / "
              f"impressions, over {QUALITY_WINDOW}.",
              (Query(_attributed("purchase"), "{{version}}"),), unit="percentunit"),
    )),
)


def all_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every panel."""
    return [(p.title, q.expr) for row in ROWS for p in row.panels for q in p.queries]
