"""`recsys nightly --canary PERCENT` (batch/canary.py, stages.publish): a real Redis, a local
store; the whole job on the tiny data in the slow test."""

import json

import numpy as np
import pytest

from batch import canary, stages
from batch.carry_over import ListPlan
from batch.nightly import run
from batch.options import NightlyConfig
from infra.redis.event_stream import EventStream
from infra.redis.experiments import Experiments
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models.experiments.assignment import experiment


def _config(tmp_path, redis_url, **flags) -> NightlyConfig:
    return NightlyConfig(input=str(tmp_path / "in"), redis_url=redis_url,
                         store=str(tmp_path / "store"), **flags)


def _write(lists, version, n_users=12, fill=1):
    users = [f"u{n}" for n in range(n_users)]
    lists.write_shard(version, "0", users, np.full((n_users, 3), fill, np.int64),
                      np.ones((n_users, 3)))


def _plan(n_users=12) -> ListPlan:
    return ListPlan(np.arange(n_users), np.arange(0), np.zeros(n_users, np.uint32),
                    np.zeros(n_users, np.uint64), n_users, 0)


@pytest.mark.parametrize("percent", [-1, 51, 100])
def test_canary_share_is_a_whole_percentage_from_1_to_50(tmp_path, percent):
    with pytest.raises(ValueError, match=f"--canary={percent}: use a whole percentage"):
        _config(tmp_path, "redis://x", canary=percent)
    assert _config(tmp_path, "redis://x", canary=50).canary == 50
    assert _config(tmp_path, "redis://x").canary == 0


def test_canary_publishes_without_moving_current_and_starts_the_experiment(
        tmp_path, redis_url, redis_client):
    cfg = _config(tmp_path, redis_url, canary=10, keep_versions=1)
    targets = stages.open_targets(cfg)
    lists = targets.lists
    _write(lists, "v1")
    lists.flip("v1", 12)
    _write(lists, "v2", fill=2)
    summary = stages.publish(cfg, targets, "v2", _plan(), 12, {"version": "v2"})
    assert summary["canary"] == {"percent": 10, "experiment": "canary-v2", "control": "v1",
                                 "canary": "v2"}
    # Published as the flip publishes (listed, out of the started record), not served...
    assert lists.current() == "v1" and lists.versions() == ["v1", "v2"]
    assert redis_client.smembers("recsys:started") == set()
    # ... and kept although --keep-versions 1: both arms serve their versions.
    assert summary["expired_versions"] == []
    running = Experiments(redis_client).running()
    exp = running["canary-v2"]
    assert list(running) == ["canary-v2"] and exp.salt == "canary-v2"
    assert [(a.name, a.version, a.allocation) for a in exp.arms] == [
        ("control", "v1", 9000), ("canary", "v2", 1000)]
    assert json.loads(LocalStore(cfg.store).get_bytes("runs/v2/summary.json")) == summary
    assert targets.builds.summary("v2")["canary"]["experiment"] == "canary-v2"


def test_with_nothing_served_a_canary_run_publishes_to_everyone(tmp_path, redis_url,
                                                                redis_client, caplog):
    cfg = _config(tmp_path, redis_url, canary=10)
    targets = stages.open_targets(cfg)
    _write(targets.lists, "v1")
    with caplog.at_level("INFO", "batch.nightly"):
        summary = stages.publish(cfg, targets, "v1", _plan(), 12, {"version": "v1"})
    assert targets.lists.current() == "v1"
    assert summary["canary"]["experiment"] is None and "published to everyone" in (
        summary["canary"]["skipped"])
    assert "nothing to canary against" in caplog.text
    assert Experiments(redis_client).list() == []


def test_without_canary_the_summary_says_none_and_current_moves(tmp_path, redis_url,
                                                               redis_client):
    cfg = _config(tmp_path, redis_url)
    targets = stages.open_targets(cfg)
    for n, v in enumerate(("v1", "v2"), 1):
        _write(targets.lists, v, fill=n)
        summary = stages.publish(cfg, targets, v, _plan(), 12, {"version": v})
    assert summary["canary"] is None and targets.lists.current() == "v2"


def test_an_experiment_started_meanwhile_leaves_the_version_published_serving_nobody(
        tmp_path, redis_url, redis_client):
    cfg = _config(tmp_path, redis_url, canary=10)
    targets = stages.open_targets(cfg)
    _write(targets.lists, "v1")
    targets.lists.flip("v1", 12)
    store = Experiments(redis_client)
    store.create(experiment("other", [{"name": "a", "version": "current", "allocation": 5000},
                                      {"name": "b", "version": "v1", "allocation": 5000}], "s"))
    store.start("other")
    _write(targets.lists, "v2", fill=2)
    with pytest.raises(RuntimeError, match=r"version v2 is published but serves nobody.*"
                                           r"'other' is running.*recsys rollback v2"):
        stages.publish(cfg, targets, "v2", _plan(), 12, {"version": "v2"})
    assert targets.lists.current() == "v1" and list(store.running()) == ["other"]


def test_a_canary_run_is_refused_before_any_work_while_an_experiment_runs(
        tmp_path, redis_url, redis_client):
    _write(ServedLists(redis_client), "v1")
    ServedLists(redis_client).flip("v1", 12)
    store = Experiments(redis_client)
    store.create(experiment("ab", [{"name": "a", "version": "current", "allocation": 5000},
                                   {"name": "b", "version": "v1", "allocation": 5000}], "s"))
    store.start("ab")
    EventStream(redis_client).append([{"user_id": "u1", "item_id": "i1", "event_type": "click",
                                       "timestamp": 1_700_000_000, "event_id": "e1"}])
    (tmp_path / "in.csv").write_text("user_id,item_id,timestamp\nu1,i1,1700000000\n")
    with pytest.raises(ValueError, match=r"^--canary 10: experiment 'ab' is running and one "
                                         r"experiment runs at a time; nothing was trained"):
        run([f"--input={tmp_path / 'in.csv'}", f"--store={tmp_path / 'store'}",
             f"--redis_url={redis_url}", "--canary=10", "--model=mf"])
    # Nothing drained, written or published.
    assert redis_client.xlen("recsys:events") == 1 and not (tmp_path / "store").exists()
    assert ServedLists(redis_client).versions() == ["v1"]


# Slow: two whole nightly runs. Fast loop: the stage tests above (publish with --canary).
@pytest.mark.slow
def test_nightly_canary_on_the_tiny_data_then_promote(tmp_path, redis_url, redis_client,
                                                      tiny_dataset):
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}", f"--redis_url={redis_url}",
            "--model=mf", "--epochs=1", "--dim=4", "--k=5", "--skip_gate", "--canary=20",
            "--runner=FnApiRunner", "--direct_running_mode=in_memory"]
    lists, store = ServedLists(redis_client), Experiments(redis_client)
    first = run(argv)  # nothing served yet: to everyone
    assert lists.current() == first["version"] and first["canary"]["experiment"] is None

    second = run(argv)
    version, name = second["version"], f"canary-{second['version']}"
    assert second["canary"] == {"percent": 20, "experiment": name,
                                "control": first["version"], "canary": version}
    assert lists.current() == first["version"] and version in lists.versions()
    exp = store.running()[name]
    assert [(a.version, a.allocation) for a in exp.arms] == [(first["version"], 8000),
                                                             (version, 2000)]
    users = [f"{u}" for u in tiny_dataset.interactions["user_id"].unique()]
    arms = {u: exp.arm_for(u).version for u in users}
    assert all(lists.get_list(v, u) is not None for u, v in arms.items())  # no one without
    assert 0.05 < sum(v == version for v in arms.values()) / len(users) < 0.4

    # The next night, the canary still undecided: its canary supersedes this one.
    third = run(argv)
    newer = f"canary-{third['version']}"
    assert list(store.running()) == [newer] and third["canary"]["control"] == first["version"]
    assert store.get(name)["decisions"][-1]["action"] == "superseded"
    assert lists.current() == first["version"]

    store.promote(newer, "canary")
    assert lists.current() == third["version"] and store.running() == {}


def test_a_plain_run_warns_that_a_running_canary_keeps_its_versions(redis_client, caplog):
    from batch import canary

    lists = ServedLists(redis_client)
    _write(lists, "v1")
    lists.flip("v1", 12)
    _write(lists, "v2", fill=2)
    lists.flip("v2", 12, move_current=False)
    canary.start(lists, canary.plan(10, "v1", "v2"))
    with caplog.at_level("WARNING", "batch.nightly"):
        canary.refuse_while_running(0, lists)  # no --canary: not refused
    assert "experiment canary-v2 is running: its arms keep serving their versions" in caplog.text


def test_an_undecided_canary_is_superseded_by_the_next_nights(tmp_path, redis_url, redis_client):
    cfg = _config(tmp_path, redis_url, canary=10)
    targets = stages.open_targets(cfg)
    _write(targets.lists, "v1")
    targets.lists.flip("v1", 12)
    _write(targets.lists, "v2", fill=2)
    stages.publish(cfg, targets, "v2", _plan(), 12, {"version": "v2"})
    store = Experiments(redis_client)
    assert list(store.running()) == ["canary-v2"]
    canary.refuse_while_running(10, targets.lists)  # a canary does not block the night
    _write(targets.lists, "v3", fill=3)
    summary = stages.publish(cfg, targets, "v3", _plan(), 12, {"version": "v3"})
    assert list(store.running()) == ["canary-v3"] and targets.lists.current() == "v1"
    assert summary["canary"]["control"] == "v1"
    old = store.get("canary-v2")
    assert old["state"] == "stopped" and old["decisions"][-1]["action"] == "superseded"
