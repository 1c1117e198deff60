"""The nightly's metrics (--pushgateway): a real run on tiny data pushes its summary to a real
Pushgateway (tests/conftest.py's `pushgateway`) as the recsys_nightly_* gauges, a refused run
pushes success 0 and keeps the publish time of the run before, and a push that fails never
fails the run."""

from __future__ import annotations

import logging
import time

import pandas as pd
import pytest
import requests

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from batch.gate import GateResult, QualityGateError  # noqa: E402
from batch.nightly import push_metrics, run  # noqa: E402
from batch.options import NightlyConfig  # noqa: E402
from batch.stages import refuse_unless_forced  # noqa: E402
from infra.redis_server import free_port  # noqa: E402


def pushed(address: str) -> dict[str, dict[tuple, float]]:
    """The Pushgateway's recsys_nightly_* samples: name -> {sorted labels (no job/instance):
    value}."""
    text = requests.get(f"http://{address}/metrics", timeout=5).text
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("recsys_nightly"):
                assert s.labels["job"] == "recsys_nightly"
                labels = tuple(sorted((k, v) for k, v in s.labels.items()
                                      if k not in ("job", "instance")))
                out.setdefault(s.name, {})[labels] = s.value
    return out


def one(samples: dict[str, dict[tuple, float]], name: str, **labels) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


# Slow: two nightly runs (~5 s). Fast loop: tests/infra/test_monitoring_exporters.py (the
# summary's metrics, PUT after a publish, POST after a failure) and the tests below.
@pytest.mark.slow
def test_a_published_run_pushes_its_summary_and_a_refused_one_keeps_its_publish_time(
        tmp_path, redis_client, tiny_dataset, pushgateway):
    url = redis_client.connection_pool.connection_kwargs
    common = [f"--store={tmp_path / 'store'}",
              f"--redis_url=redis://{url['host']}:{url['port']}/0", "--model=mf",
              "--epochs=1", "--dim=4", "--k=5", "--shard_size=60", "--skip_gate",
              "--direct_running_mode=in_memory", f"--pushgateway={pushgateway}"]
    data = tiny_dataset.interactions
    data.to_parquet(tmp_path / "all.parquet")
    before = time.time()

    summary = run([f"--input={tmp_path / 'all.parquet'}", *common])

    got = pushed(pushgateway)
    assert one(got, "recsys_nightly_success") == 1
    published_at = one(got, "recsys_nightly_last_publish_timestamp_seconds")
    assert before <= published_at <= time.time()
    assert one(got, "recsys_nightly_last_success_timestamp_seconds") == published_at
    assert one(got, "recsys_nightly_users", kind="published") == summary["users_published"]
    assert one(got, "recsys_nightly_users", kind="refreshed") == summary["users_refreshed"]
    assert one(got, "recsys_nightly_users", kind="carried") == summary["users_carried_over"]
    assert {dict(k)["stage"]: v for k, v in got["recsys_nightly_stage_seconds"].items()
            } == summary["seconds"]
    assert one(got, "recsys_nightly_index_recall") == summary["index"]["recall@k"] == 1.0
    assert "recsys_nightly_gate_ndcg" not in got  # --skip_gate: no figure, no series

    # A fifth of the users and one row of an unknown type: the shrink check refuses the run.
    small = data[data["user_id"].isin(data["user_id"].unique()[:24])]
    bad = small.iloc[:1].assign(event_type="teleport")
    pd.concat([small, bad]).to_parquet(tmp_path / "small.parquet")
    with pytest.raises(QualityGateError, match="nothing was published"):
        run([f"--input={tmp_path / 'small.parquet'}", *common])

    got = pushed(pushgateway)
    assert one(got, "recsys_nightly_success") == 0
    assert one(got, "recsys_nightly_last_publish_timestamp_seconds") == published_at
    assert one(got, "recsys_nightly_last_success_timestamp_seconds") == published_at
    assert set(dict(k)["stage"] for k in got["recsys_nightly_stage_seconds"]) == {
        "drain_events", "validate"}  # the stages the refused run got through
    assert got["recsys_nightly_dead_letters"] == {(("reason", "unknown event_type"),): 1}
    # What the refused run did not reach stays the last publish's: its users, its index.
    assert one(got, "recsys_nightly_users", kind="published") == summary["users_published"]
    assert one(got, "recsys_nightly_index_recall") == 1.0


def test_a_push_that_fails_is_logged_and_the_run_goes_on(caplog):
    unreachable = f"127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, "batch.nightly"):
        push_metrics(unreachable, {"seconds": {"train": 1.0}}, succeeded=True)
        push_metrics("http://[::1", {}, succeeded=False)  # urllib: ValueError
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert f"not pushed to the Pushgateway {unreachable}" in warnings[0]


def test_no_pushgateway_no_push(monkeypatch):
    import infra.monitoring.exporters as exporters

    monkeypatch.setattr(exporters, "push_nightly", lambda *a, **k: pytest.fail("pushed"))
    push_metrics(None, {"seconds": {}}, succeeded=True)
    push_metrics("", {"seconds": {}}, succeeded=True)


def test_a_refused_gate_carries_its_figures_for_the_failed_run_s_push():
    gate = GateResult(0.05, 0.115, None, 80, False, "NDCG@10 0.0500 is below popularity's",
                      0.1)
    with pytest.raises(QualityGateError) as refused:
        refuse_unless_forced(gate, force=False)
    assert refused.value.gate["ndcg@10"] == 0.05
    assert refused.value.gate["popularity_ndcg@10"] == 0.115


@pytest.mark.parametrize("value", ["localhost:9091", "http://pgw.internal:9091",
                                   "https://pgw.example.com/prefix", "10.0.0.7:9091"])
def test_pushgateway_takes_an_address_or_an_http_url(value):
    assert NightlyConfig(input="x", redis_url="redis://r", pushgateway=value).pushgateway == value


@pytest.mark.parametrize("value", ["ftp://host:21", "host:port", "http://", "host name:9091",
                                   "http://[::1"])
def test_a_bad_pushgateway_is_refused_naming_the_flag(value):
    with pytest.raises(ValueError, match="--pushgateway=.*HOST:PORT"):
        NightlyConfig(input="x", redis_url="redis://r", pushgateway=value)
