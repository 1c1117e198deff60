"""infra/monitoring/exporters.py: prometheus_client metrics from the catalogue, the nightly's
summary as metrics, and its pushes to a real Pushgateway (Debian's `prometheus-pushgateway`,
installed by .ci/run; skipped without it, except under CI=true: tests/conftest.py's
`pushgateway`): a failed night keeps the last publish time of the night before, so
RecsysNoPublish measures from the last real publish."""

from __future__ import annotations

import pytest
import requests

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from infra.monitoring import catalogue  # noqa: E402
from infra.monitoring.exporters import nightly_registry, push_nightly, register  # noqa: E402

SUMMARY = {"version": "20261128T040203Z-1666", "users_published": 1000, "users_refreshed": 212,
           "users_carried_over": 788, "dead_letters": {"unknown event_type": 3},
           "index": {"type": "IndexFlatIP", "recall@k": 0.98, "k": 100},
           "gate": {"ndcg@10": 0.1325, "popularity_ndcg@10": 0.115, "passed": True},
           "seconds": {"drain_events": 0.5, "train": 8.9, "precompute_publish": 2.1}}


def test_register_makes_every_metric_of_an_exporter_with_the_catalogue_s_help():
    registry = prometheus_client.CollectorRegistry()
    made = register("functions", registry)
    text = prometheus_client.generate_latest(registry).decode()

    expected = [m for m in catalogue.METRICS if m.exporter == "functions"]
    assert sorted(made) == sorted(m.name for m in expected)
    for m in expected:
        family = m.name.removesuffix("_total")
        assert f"# HELP {m.name} {m.help}" in text or f"# HELP {family}_total {m.help}" in text
        assert f"# TYPE {family} {m.kind}" in text or f"# TYPE {m.name} {m.kind}" in text
    made["recsys_request_seconds"].labels("recommend", "cache").observe(0.3)
    text = prometheus_client.generate_latest(registry).decode()
    assert 'recsys_request_seconds_bucket{le="0.5",path="recommend",source="cache"} 1.0' in text


def test_register_names_the_exporters_it_knows():
    with pytest.raises(ValueError, match="functions.*nightly"):
        register("nightlies", prometheus_client.CollectorRegistry())


def test_a_published_run_s_summary_becomes_its_metrics():
    registry = nightly_registry(SUMMARY, succeeded=True, finished_at=1_764_000_000.0)
    value = registry.get_sample_value

    assert value("recsys_nightly_users", {"kind": "published"}) == 1000
    assert value("recsys_nightly_users", {"kind": "carried"}) == 788
    assert value("recsys_nightly_users", {"kind": "refreshed"}) == 212
    assert value("recsys_nightly_dead_letters", {"reason": "unknown event_type"}) == 3
    assert value("recsys_nightly_gate_ndcg", {"model": "candidate"}) == 0.1325
    assert value("recsys_nightly_gate_ndcg", {"model": "popularity"}) == 0.115
    assert value("recsys_nightly_index_recall") == 0.98
    assert value("recsys_nightly_stage_seconds", {"stage": "train"}) == 8.9
    assert value("recsys_nightly_success") == 1
    assert value("recsys_nightly_last_publish_timestamp_seconds") == 1_764_000_000.0
    assert value("recsys_nightly_last_success_timestamp_seconds") == 1_764_000_000.0


def test_a_failed_run_has_no_timestamps_nor_an_unmeasured_recall():
    partial = {"seconds": {"drain_events": 0.5, "validate": "n/a"}, "gate": {"ndcg@10": None}}
    registry = nightly_registry(partial, succeeded=False, finished_at=1_764_000_000.0)
    value = registry.get_sample_value

    assert value("recsys_nightly_success") == 0
    assert value("recsys_nightly_last_publish_timestamp_seconds") is None
    assert value("recsys_nightly_index_recall") is None
    assert value("recsys_nightly_stage_seconds", {"stage": "validate"}) is None
    assert value("recsys_nightly_stage_seconds", {"stage": "drain_events"}) == 0.5
    assert value("recsys_nightly_gate_ndcg", {"model": "candidate"}) is None


def _pushed(address: str) -> dict[tuple, float]:
    text = requests.get(f"http://{address}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("recsys_nightly")}


def test_a_failed_night_keeps_the_last_publish_time_of_the_night_before(pushgateway):
    job = (("instance", ""), ("job", catalogue.NIGHTLY_JOB))
    push_nightly(pushgateway, nightly_registry(SUMMARY, succeeded=True, finished_at=1000.0),
                 succeeded=True)
    refused = {"gate": {"ndcg@10": 0.05, "popularity_ndcg@10": 0.115},
               "seconds": {"drain_events": 0.4, "quality_gate": 0.1}}
    push_nightly(pushgateway, nightly_registry(refused, succeeded=False, finished_at=2000.0),
                 succeeded=False)

    pushed = _pushed(pushgateway)

    assert pushed[("recsys_nightly_success", job)] == 0
    assert pushed[("recsys_nightly_last_publish_timestamp_seconds", job)] == 1000.0
    assert pushed[("recsys_nightly_last_success_timestamp_seconds", job)] == 1000.0
    assert pushed[("recsys_nightly_gate_ndcg", (*job, ("model", "candidate")))] == 0.05
    # the failed run's stages replace the published run's: no stale `train` stage
    stages = {dict(labels)["stage"] for name, labels in pushed
              if name == "recsys_nightly_stage_seconds"}
    assert stages == {"drain_events", "quality_gate"}

    push_nightly(pushgateway, nightly_registry(SUMMARY, succeeded=True, finished_at=3000.0),
                 succeeded=True)
    pushed = _pushed(pushgateway)
    assert pushed[("recsys_nightly_success", job)] == 1
    assert pushed[("recsys_nightly_last_publish_timestamp_seconds", job)] == 3000.0
