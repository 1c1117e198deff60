"""Issue 19's acceptance, end to end (slow): a real Prometheus scrapes a real `recsys serve`
with two gunicorn workers under load and the Pushgateway that two real nightly runs pushed to
(benchmarks/monitoring.py builds that system; `python -m benchmarks.monitoring` draws the
docs' plots from it). Every worker's answers add up to exactly what the clients received, and
every query of every dashboard panel returns data from the real system, not from made-up
series (tests/infra/test_monitoring_prometheus.py checks the queries on those)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import monitoring_binary

pytest.importorskip("prometheus_client")

from benchmarks import monitoring  # noqa: E402
from infra.monitoring.catalogue import SOURCES  # noqa: E402


def _by(prometheus: str, expr: str, label: str) -> dict[str, int]:
    return {r["metric"][label]: int(float(r["value"][1]))
            for r in monitoring.query(prometheus, expr)}


def _one(prometheus: str, expr: str) -> float:
    (result,) = monitoring.query(prometheus, expr)
    return float(result["value"][1])


@pytest.mark.slow
def test_two_workers_add_up_and_every_panel_has_data_from_the_real_system(tmp_path):
    for name in ("prometheus", "prometheus-pushgateway", "redis-server"):
        monitoring_binary(name)
    tally = monitoring.Tally()
    with monitoring.monitored_system(tmp_path, tally) as system:
        started = time.time()
        monitoring.drive(system, tally, seconds=16, outage=3)
        scraped = monitoring.settle(system.prometheus, tally)
        prom = system.prometheus

        # Every answer each client got, counted once, whichever of the two workers gave it.
        assert scraped == dict(tally.requests)
        assert tally.requests["recommend"] > 500 and tally.requests["events"] > 100
        workers = monitoring.worker_pids_with_counters(system.serve.pid)
        assert len(workers) == 2, f"workers that counted: {workers}"
        sources = _by(prom, "sum by (source) (recsys_recommendations_total)", "source")
        assert sources == dict(tally.sources) and set(sources) == set(SOURCES)
        events = _by(prom, "sum by (result) (recsys_events_total)", "result")
        assert events == dict(tally.events)
        assert events["unavailable"] > 0 and events["duplicate"] > 0  # Redis paused; resends
        clicks = _by(prom, 'sum by (version) (recsys_attributed_events_total'
                           '{event_type="click"})', "version")
        versions = {s["version"] for s in system.summaries}
        assert set(clicks) <= versions and sum(clicks.values()) > 0
        arms = _by(prom, "sum by (arm) (recsys_experiment_requests_total)", "arm")
        assert set(arms) == {"control", "canary"}, arms

        # The nightly's push, through the Pushgateway.
        last = system.summaries[-1]
        assert _one(prom, 'recsys_nightly_users{kind="published"}') == last["users_published"]
        assert _one(prom, 'recsys_nightly_dead_letters{reason="unknown event_type"}') == 1
        assert _one(prom, "recsys_nightly_success") == 1
        assert 0 < _one(prom, "time() - recsys_nightly_last_publish_timestamp_seconds") < 600

        assert monitoring.panels_without_data(prom) == []
        from infra.monitoring.plots import render

        no_data = render(prom, tmp_path / "plots", started, time.time(), step=1)
    assert {name: titles for name, titles in no_data.items() if titles} == {}
    assert len(list((tmp_path / "plots").glob("*.png"))) == len(no_data) == 6
