"""Every metric the system exports: name, type, labels, help text and who exports it.

The one source of metric names: the Grafana dashboard (infra/monitoring/grafana.py), the alert
rules (infra/monitoring/alerts.py), the Cloud Monitoring dashboard and policies
(terraform/modules/monitoring) and the code that exports them (the functions with
`prometheus_client` in multiprocess mode, the nightly with a push to a Pushgateway) all take them
from here, so a renamed metric breaks a test instead of a panel.

    from infra.monitoring.catalogue import METRICS, metric
    metric("recsys_requests_total").labels      # ("path", "code")

Exporters:

- `functions`: every instance's `/metrics` (all gunicorn workers summed by prometheus_client's
  multiprocess collector). `path` is the handler's name (recommend, events, health,
  admin_items, similar, trending), as functions/main.py's `_observed` records it.
- `nightly`: one push per run to a Pushgateway under `job="recsys_nightly"` (NIGHTLY_JOB). A run
  that publishes replaces the group (`push_to_gateway`); a failed run adds to it
  (`pushadd_to_gateway` with `recsys_nightly_success` 0 and what it measured), so the last
  success and publish timestamps of the run before survive a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

NIGHTLY_JOB = "recsys_nightly"
# Handler latency buckets in seconds (functions/metrics.py's, so old and new figures agree).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
KINDS = ("counter", "gauge", "histogram")


@dataclass(frozen=True)
class Metric:
    """One exported metric family.

    Attributes:
        name: the exposed name; counters end in `_total` (prometheus_client's Counter accepts
            it and exposes the same name).
        kind: counter, gauge or histogram.
        help: the HELP text.
        labels: label names, in the order the code passes them.
        exporter: `functions` (scraped from /metrics) or `nightly` (pushed per run).
        values: the values a label takes where they form a closed set (label -> values); the
            fake exporter of the tests and the docs use them.
        multiprocess_mode: for gauges of the functions, prometheus_client's way of joining the
            workers' values (`mostrecent`, `max`, ...); None for the rest.
        buckets: histogram buckets in seconds.
    """

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    exporter: str = "functions"
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    multiprocess_mode: str | None = None
    buckets: tuple[float, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only they, end in _total")
        unknown = {label for label, _ in self.values} - set(self.labels)
        if unknown:
            raise ValueError(f"{self.name}: values for undeclared labels {sorted(unknown)}")

    def label_values(self, label: str) -> tuple[str, ...]:
        """The closed set of values of one label, or () when it is open (versions, ids)."""
        return dict(self.values).get(label, ())


PATHS = ("recommend", "events", "health", "admin_items", "similar", "trending")
SOURCES = ("cache", "on_demand", "popular", "fallback")

METRICS: tuple[Metric, ...] = (
    # --- traffic and latency (functions) ---------------------------------------------------
    Metric("recsys_requests_total", "counter", "Requests answered, by handler and HTTP status.",
           ("path", "code"), values=(("path", PATHS),)),
    Metric("recsys_request_seconds", "histogram", "Handler latency in seconds.",
           ("path", "source"), values=(("path", PATHS), ("source", (*SOURCES, "trending", "-"))),
           buckets=LATENCY_BUCKETS),
    # --- sources and fallbacks ---------------------------------------------------------------
    Metric("recsys_recommendations_total", "counter", "Answers of /recommend by source.",
           ("source",), values=(("source", SOURCES),)),
    Metric("recsys_cache_lookups_total", "counter", "Nightly-list lookups by result.",
           ("result",), values=(("result", ("hit", "miss")),)),
    Metric("recsys_fallbacks_total", "counter", "Degraded answers by reason.", ("reason",),
           values=(("reason", ("redis_down",)),)),
    # --- events ------------------------------------------------------------------------------
    Metric("recsys_events_total", "counter", "Posted events by result.", ("result",),
           values=(("result", ("stored", "duplicate", "rejected", "unavailable")),)),
    Metric("recsys_ingestion_lag_seconds", "gauge",
           "Age in seconds of the oldest event not yet drained to the event log (0: none).",
           multiprocess_mode="max"),
    # --- versions and experiments ------------------------------------------------------------
    Metric("recsys_served_version_info", "gauge",
           "1 for the version an instance serves (its `current` pointer), 0 for the ones before.",
           ("version",), multiprocess_mode="mostrecent"),
    Metric("recsys_served_version_age_seconds", "gauge",
           "Seconds since the served version was published.", multiprocess_mode="max"),
    Metric("recsys_experiment_requests_total", "counter",
           "Answers of /recommend inside a running experiment, by experiment and arm.",
           ("experiment", "arm")),
    # --- quality online ----------------------------------------------------------------------
    Metric("recsys_impressions_total", "counter",
           "Recommendation lists served with a recommendation_id, by version and arm "
           "(arm `current` outside experiments).", ("version", "arm")),
    Metric("recsys_attributed_events_total", "counter",
           "Events that carry the recommendation_id of a served list, by the version that "
           "served it and event type (clicks / impressions: online CTR).",
           ("version", "event_type"),
           values=(("event_type", ("view", "click", "purchase", "rating")),)),
    Metric("recsys_impressions_dropped_total", "counter",
           "Impressions not recorded (the impression stream refused or failed them)."),
    # --- the nightly (pushed) ----------------------------------------------------------------
    Metric("recsys_nightly_stage_seconds", "gauge", "Seconds each stage of the last run took.",
           ("stage",), exporter="nightly"),
    Metric("recsys_nightly_users", "gauge", "Users of the last run by what happened to their list.",
           ("kind",), exporter="nightly",
           values=(("kind", ("published", "carried", "refreshed")),)),
    Metric("recsys_nightly_dead_letters", "gauge", "Input rows the last run refused, by reason.",
           ("reason",), exporter="nightly"),
    Metric("recsys_nightly_gate_ndcg", "gauge",
           "NDCG@10 on the gate's validation window: the candidate model and popularity.",
           ("model",), exporter="nightly", values=(("model", ("candidate", "popularity")),)),
    Metric("recsys_nightly_index_recall", "gauge",
           "Recall of the item index against exact search in the last run.", exporter="nightly"),
    Metric("recsys_nightly_success", "gauge", "1 if the last run published, 0 if it failed.",
           exporter="nightly"),
    Metric("recsys_nightly_last_success_timestamp_seconds", "gauge",
           "Unix time the last successful run finished.", exporter="nightly"),
    Metric("recsys_nightly_last_publish_timestamp_seconds", "gauge",
           "Unix time the last run flipped the `current` pointer (published a version).",
           exporter="nightly"),
)

_BY_NAME = {m.name: m for m in METRICS}
if len(_BY_NAME) != len(METRICS):
    raise RuntimeError("infra/monitoring/catalogue.py: a metric name appears twice")


def metric(name: str) -> Metric:
    """The catalogue's entry for one metric name.

    Raises:
        KeyError: the name is not in the catalogue (the message lists the ones that are).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in infra/monitoring/catalogue.py "
                       f"(metrics: {', '.join(sorted(_BY_NAME))})") from None


def exported_series(m: Metric) -> tuple[str, ...]:
    """The series names a metric family exposes (a histogram's _bucket, _sum and _count)."""
    if m.kind == "histogram":
        return (f"{m.name}_bucket", f"{m.name}_sum", f"{m.name}_count")
    return (m.name,)
