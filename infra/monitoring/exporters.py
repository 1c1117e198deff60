"""prometheus_client objects made from the catalogue, for the code that exports the metrics.

    from infra.monitoring.exporters import register
    METRICS = register("functions")                 # the default registry (multiprocess-ready)
    METRICS["recsys_requests_total"].labels("recommend", "200").inc()

    registry = nightly_registry(summary, succeeded=True, finished_at=time.time())
    push_nightly("localhost:9091", registry, succeeded=True)

`register` gives each metric the catalogue's name, help, labels, buckets and (gauges of the
functions) multiprocess mode, so names cannot drift from the dashboard and the rules. The
nightly's summary (docs/ARCHITECTURE.md, *Summary*) maps onto the `recsys_nightly_*` gauges in
`nightly_registry`; `push_nightly` replaces the Pushgateway's group after a publish and only adds
to it after a failure, so the last success and publish timestamps survive a failed night.
"""

from __future__ import annotations

import math

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.metrics import MetricWrapperBase

from infra.monitoring.catalogue import METRICS, NIGHTLY_JOB, Metric

_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def make(m: Metric, registry: CollectorRegistry | None):
    """The prometheus_client metric of one catalogue entry, registered in `registry`."""
    options: dict = {}
    if m.buckets:
        options["buckets"] = m.buckets
    if m.kind == "gauge" and m.multiprocess_mode:
        options["multiprocess_mode"] = m.multiprocess_mode
    if registry is not None:
        options["registry"] = registry
    return _KINDS[m.kind](m.name, m.help, m.labels, **options)


def register(exporter: str, registry: CollectorRegistry | None = None
             ) -> dict[str, MetricWrapperBase]:
    """Every catalogue metric of one exporter (`functions` or `nightly`), by name.

    Args:
        exporter: whose metrics to make.
        registry: where to register them; None: prometheus_client's default registry.

    Raises:
        ValueError: no metric of the catalogue has that exporter.
    """
    chosen = [m for m in METRICS if m.exporter == exporter]
    if not chosen:
        raise ValueError(f"exporter {exporter!r}: use one of "
                         f"{sorted({m.exporter for m in METRICS})}")
    return {m.name: make(m, registry) for m in chosen}


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def nightly_registry(summary: dict | None, *, succeeded: bool,
                     finished_at: float) -> CollectorRegistry:
    """A registry holding one nightly run's metrics, read from its summary.

    Args:
        summary: the run's summary (what it got to; a failed run's may lack any key):
            `seconds` {stage: s}, `users_published`, `users_carried_over`,
            `users_refreshed`, `dead_letters` {reason: rows}, `gate` {"ndcg@10",
            "popularity_ndcg@10"}, `index` {"recall@k"}.
        succeeded: whether the run published.
        finished_at: Unix time the run ended (the timestamps of a successful run).
    """
    summary = summary or {}
    registry = CollectorRegistry()
    metrics = register("nightly", registry)
    stage = metrics["recsys_nightly_stage_seconds"]
    for name, seconds in (summary.get("seconds") or {}).items():
        if _number(seconds) is not None:
            stage.labels(str(name)).set(seconds)
    users = metrics["recsys_nightly_users"]
    for kind, key in (("published", "users_published"), ("carried", "users_carried_over"),
                      ("refreshed", "users_refreshed")):
        if _number(summary.get(key)) is not None:
            users.labels(kind).set(summary[key])
    dead = metrics["recsys_nightly_dead_letters"]
    for reason, rows in (summary.get("dead_letters") or {}).items():
        if _number(rows) is not None:
            dead.labels(str(reason)).set(rows)
    gate = summary.get("gate") or {}
    for model, key in (("candidate", "ndcg@10"), ("popularity", "popularity_ndcg@10")):
        if _number(gate.get(key)) is not None:
            metrics["recsys_nightly_gate_ndcg"].labels(model).set(gate[key])
    recall = _number((summary.get("index") or {}).get("recall@k"))
    if recall is not None:
        metrics["recsys_nightly_index_recall"].set(recall)
    else:  # an unlabelled gauge would push 0, a recall the run never measured
        registry.unregister(metrics["recsys_nightly_index_recall"])
    metrics["recsys_nightly_success"].set(1 if succeeded else 0)
    if succeeded:
        metrics["recsys_nightly_last_success_timestamp_seconds"].set(finished_at)
        metrics["recsys_nightly_last_publish_timestamp_seconds"].set(finished_at)
    else:  # absent, not 0: pushadd keeps the previous run's values
        registry.unregister(metrics["recsys_nightly_last_success_timestamp_seconds"])
        registry.unregister(metrics["recsys_nightly_last_publish_timestamp_seconds"])
    return registry


def push_nightly(gateway: str, registry: CollectorRegistry, *, succeeded: bool,
                 timeout: float = 10) -> None:
    """Pushes a run's registry under job="recsys_nightly".

    A run that published replaces the group (PUT): no stale stage or reason of an older run
    stays. A failed run adds to it (POST): its own figures replace those of the same names,
    the last success and publish timestamps of the run before stay.

    Raises:
        OSError: the Pushgateway did not accept the push (urllib's URLError is one).
    """
    push = push_to_gateway if succeeded else pushadd_to_gateway
    push(gateway, job=NIGHTLY_JOB, registry=registry, timeout=timeout)
