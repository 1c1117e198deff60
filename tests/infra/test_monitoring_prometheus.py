"""Every dashboard query and every alert expression, run by a real Prometheus server.

A Prometheus (Debian's `prometheus` package; .ci/run installs it) scrapes a small exporter
built with prometheus_client that serves every metric of infra/monitoring/catalogue.py with
made-up values, the metrics that will come from the functions and from the nightly's
Pushgateway alike. Each query goes through the server's HTTP API (/api/v1/query), so a PromQL
typo or a metric name the catalogue does not export fails here. Skipped without the
`prometheus` binary, except under CI=true.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from infra.monitoring import __main__ as generate
from infra.monitoring import alerts, catalogue, cloud_monitoring, grafana
from infra.monitoring.exporters import make
from infra.monitoring.plots import PrometheusError, legend, query_range, render
from tests.conftest import in_ci

prometheus_client = pytest.importorskip("prometheus_client")

SCRAPE_SECONDS = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_registry():
    """Every catalogue metric (made by infra/monitoring/exporters.py, as the functions and the
    nightly will) with one series per closed label value (open labels: `v1`)."""
    registry = prometheus_client.CollectorRegistry()
    children = []
    for m in catalogue.METRICS:
        family = make(m, registry)
        combos = [()]
        for label in m.labels:
            combos = [(*c, v) for c in combos for v in m.label_values(label) or ("v1",)]
        children += [(m, family.labels(*combo) if m.labels else family) for combo in combos]
    return registry, children


def move_on(children) -> None:
    now = time.time()
    for m, child in children:
        if m.kind == "counter":
            child.inc(3)
        elif m.kind == "histogram":
            child.observe(0.004)
            child.observe(0.3)
        elif m.name.endswith("_timestamp_seconds"):
            child.set(now - 3600)
        else:
            child.set(1)


@dataclass
class Server:
    url: str
    children: list
    process: subprocess.Popen
    log: Path


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        message = "prometheus not found: apt-get install prometheus (.ci/run does)"
        if in_ci():
            pytest.fail(f"{message} (CI=true: a missing Prometheus fails instead of skipping)")
        pytest.skip(message)
    registry, children = fake_registry()
    move_on(children)
    exporter_port, port = _free_port(), _free_port()
    exporter, thread = prometheus_client.start_http_server(exporter_port, "127.0.0.1",
                                                         registry=registry)
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "prometheus.yml").write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": f"{int(SCRAPE_SECONDS * 1000)}ms"},
        "scrape_configs": [{"job_name": "recsys",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }))
    process = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "log").open("w"))
    server = Server(f"http://127.0.0.1:{port}", children, process, folder / "log")
    try:
        _wait_until_ready(server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        exporter.shutdown()
        thread.join(timeout=5)


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {server.log.read_text()[-2000:]}")
        try:
            if requests.get(f"{server.url}/-/ready", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise RuntimeError("prometheus was not ready within 30 s")


def _wait_for_samples(server: Server) -> None:
    """Until two scrapes of moving counters are stored (rates need two samples). Prometheus
    hands static targets to its scraper after about 5 s, hence the slow mark of the test."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        move_on(server.children)
        got = query(server.url, "count_over_time(recsys_requests_total[1m])")
        if got and min(float(r["value"][1]) for r in got) >= 2:
            return
        time.sleep(SCRAPE_SECONDS / 2)
    raise RuntimeError("prometheus stored no two scrapes within 60 s")


def query(url: str, expr: str) -> list:
    """The result of an instant query; fails with Prometheus' own error on a bad query."""
    answer = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}\n{answer.get('error')}"
    return answer["data"]["result"]


def _grafana_queries():
    return grafana.queries(json.loads((generate.HERE / "recsys.dashboard.json").read_text()))


def _cloud_queries():
    return cloud_monitoring.queries(
        json.loads((generate.TERRAFORM / "dashboard.json").read_text()))


def test_every_grafana_panel_query_runs(prometheus):
    # Before any scrape: the server parses and evaluates each query (a typo fails), no data yet.
    for _, expr in _grafana_queries():
        query(prometheus.url, expr)


def test_every_cloud_monitoring_chart_query_runs(prometheus):
    for _, expr in _cloud_queries():
        query(prometheus.url, expr)


def test_every_alert_expression_runs(prometheus):
    for a in alerts.ALERTS:
        query(prometheus.url, a.expr)


def test_a_typo_in_promql_fails(prometheus):
    with pytest.raises(AssertionError, match="parse error"):
        query(prometheus.url, "sum by (path (rate(recsys_requests_total[5m]))")


def test_a_range_query_error_carries_prometheus_message(prometheus):
    now = time.time()
    with pytest.raises(PrometheusError, match="parse error"):
        query_range(prometheus.url, "rate(recsys_requests_total[5m]", now - 60, now, 15)


def test_legends_follow_grafana_templates():
    labels = {"__name__": "x", "version": "v7", "arm": "canary"}
    assert legend("{{version}} {{ arm }}", labels) == "v7 canary"
    assert legend("__auto", labels) == "arm=canary,version=v7"
    assert legend("", {}) == "value"


@pytest.mark.slow
def test_every_panel_has_data_once_the_catalogue_s_metrics_are_scraped(prometheus, tmp_path):
    _wait_for_samples(prometheus)
    got = query(prometheus.url, 'count by (__name__) ({__name__=~"recsys_.*"})')
    expected = {s for m in catalogue.METRICS for s in catalogue.exported_series(m)}
    assert expected <= {r["metric"]["__name__"] for r in got}

    empty = [(title, expr) for title, expr in _grafana_queries()
             if not query(prometheus.url, expr)]

    assert not empty, f"queries without data although every metric is exported: {empty}"
    # The same panels as PNG plots (what docs/OPERATIONS.md shows from a real run).
    end = time.time()
    no_data = render(prometheus.url, tmp_path, end - 60, end, step=1)
    assert {name: titles for name, titles in no_data.items() if titles} == {}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(no_data)
    assert len(no_data) == 6 and all((tmp_path / n).stat().st_size > 10_000 for n in no_data)
