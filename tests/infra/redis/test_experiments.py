"""Experiments (infra/redis/experiments.py) against a real Redis server process."""

import pytest

from infra.redis.experiments import Experiments
from models.experiments.assignment import experiment


def _publish(client, ns, *versions):
    for i, v in enumerate(versions):
        client.zadd(f"{ns}:versions", {v: 1000 + i})


def _exp(name="ab", treatment="v2", split=(5000, 5000), salt="s1"):
    return experiment(name, [{"name": "control", "version": "current", "allocation": split[0]},
                             {"name": "treatment", "version": treatment,
                              "allocation": split[1]}], salt)


def test_create_start_stop_list_and_running(redis_client):
    _publish(redis_client, "t", "v1", "v2")
    store = Experiments(redis_client, "t")
    record = store.create(_exp())
    assert record["state"] == "draft" and record["started_at"] is None
    assert store.running() == {}
    started = store.start("ab")
    assert started["state"] == "running" and started["started_at"]
    running = store.running()
    assert list(running) == ["ab"] and running["ab"] == _exp()
    assert running["ab"].arm_for("u1") == _exp().arm_for("u1")
    stopped = store.stop("ab")
    assert stopped["state"] == "stopped" and stopped["stopped_at"] >= stopped["started_at"]
    assert store.running() == {}
    assert [r["state"] for r in store.list()] == ["stopped"]
    assert store.get("ab") == stopped and store.get("nope") is None
    assert Experiments(redis_client, "other").list() == []


def test_invalid_transitions_are_refused_and_change_nothing(redis_client):
    _publish(redis_client, "t", "v2")
    store = Experiments(redis_client, "t")
    store.create(_exp())
    with pytest.raises(ValueError, match="'ab' is draft; only a running experiment can stop"):
        store.stop("ab")
    store.start("ab")
    with pytest.raises(ValueError, match="'ab' is running; only a draft experiment can start"):
        store.start("ab")  # one run per name
    store.stop("ab")
    with pytest.raises(ValueError, match="is stopped; only a draft"):
        store.start("ab")
    with pytest.raises(ValueError, match="no experiment named 'zz'"):
        store.start("zz")
    assert store.get("ab")["state"] == "stopped" and store.running() == {}


def test_a_taken_name_is_refused_in_any_state(redis_client):
    _publish(redis_client, "t", "v2", "v3")
    store = Experiments(redis_client, "t")
    store.create(_exp())
    with pytest.raises(ValueError, match="'ab' already exists"):
        store.create(_exp(treatment="v3", salt="other"))
    assert store.get("ab")["experiment"]["salt"] == "s1"


def test_an_unpublished_version_is_refused_at_create_and_at_start(redis_client):
    _publish(redis_client, "t", "v1")
    store = Experiments(redis_client, "t")
    with pytest.raises(ValueError, match=r"arms\[1\].version 'v2' .*not a published version"):
        store.create(_exp())
    assert store.list() == []
    _publish(redis_client, "t", "v2")
    store.create(_exp())
    redis_client.zrem("t:versions", "v2")  # expired between create and start
    with pytest.raises(ValueError, match=r"arms\[1\].version 'v2'"):
        store.start("ab")
    assert store.get("ab")["state"] == "draft" and store.running() == {}


def test_bad_definitions_name_their_field():
    with pytest.raises(ValueError, match=r"allocations sum to 9000"):
        _exp(split=(5000, 4000))
    with pytest.raises(ValueError, match=r"arms\[1\].version"):
        _exp(treatment="v2:*")


@pytest.mark.parametrize("name", ["a:b", "*", "x?[y]", "ab:exp:running", "é ü 名前"])
def test_hostile_names_stay_hash_fields(redis_client, name):
    _publish(redis_client, "t", "v2")
    store = Experiments(redis_client, "t")
    store.create(_exp(name=name))
    store.start(name)
    assert list(store.running()) == [name]
    assert sorted(k.decode() for k in redis_client.keys("*")) == [
        "t:exp:defs", "t:exp:running", "t:versions"]


def test_one_experiment_runs_at_a_time(redis_client):
    _publish(redis_client, "t", "v2")
    store = Experiments(redis_client, "t")
    store.create(_exp(name="first"))
    store.create(_exp(name="second"))
    store.start("first")
    with pytest.raises(ValueError, match="'first' is running; one experiment runs at a time"):
        store.start("second")
    assert store.get("second")["state"] == "draft" and list(store.running()) == ["first"]
    store.stop("first")
    store.start("second")
    assert list(store.running()) == ["second"]


# Promotion, decisions and expiry (the canary's side) --------------------------------------
def _lists_with(redis_client, ns, *versions):
    """ServedLists with each version published (one user u0, fill n), the last one current."""
    import numpy as np

    from infra.redis.lists import ServedLists

    lists = ServedLists(redis_client, ns)
    for n, v in enumerate(versions, 1):
        lists.write_shard(v, "0", ["u0"], np.full((1, 3), n, np.int64), np.ones((1, 3)))
        lists.flip(v, 1)
    return lists


def _canary(name="canary-v2", control="v1", canary="v2", share=1000):
    return experiment(name, [{"name": "control", "version": control, "allocation": 10000 - share},
                             {"name": "canary", "version": canary, "allocation": share}], name)


def test_promote_stops_the_experiment_and_flips_current_in_one_step(redis_client):
    lists = _lists_with(redis_client, "t", "v1", "v2")
    lists.rollback("v1")
    store = Experiments(redis_client, "t")
    store.create(_canary())
    store.start("canary-v2")
    record = store.promote("canary-v2", "canary")
    assert record["state"] == "stopped" and record["promoted_arm"] == "canary"
    assert record["promoted_version"] == "v2" and record["stopped_at"]
    assert lists.current() == "v2" and store.running() == {}
    assert store.get("canary-v2") == record


def test_promoting_a_current_arm_flips_nothing(redis_client):
    lists = _lists_with(redis_client, "t", "v1", "v2")
    store = Experiments(redis_client, "t")
    store.create(_exp(treatment="v1"))
    store.start("ab")
    record = store.promote("ab", "control")
    assert record["promoted_version"] == "v2" and lists.current() == "v2"
    assert store.running() == {}


@pytest.mark.parametrize("case, match", [
    ("draft", "'canary-v2' is draft; only a running experiment can be promoted"),
    ("arm", "has no arm 'treatment'; its arms: control, canary"),
    ("expired", "serves version 'v2', which is no longer published"),
    ("missing", "no experiment named 'nope'"),
])
def test_a_refused_promotion_changes_nothing(redis_client, case, match):
    lists = _lists_with(redis_client, "t", "v1", "v2")
    lists.rollback("v1")
    store = Experiments(redis_client, "t")
    store.create(_canary())
    if case != "draft":
        store.start("canary-v2")
    if case == "expired":
        redis_client.zrem("t:versions", "v2")
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    with pytest.raises(ValueError, match=match):
        store.promote("nope" if case == "missing" else "canary-v2",
                      "treatment" if case == "arm" else "canary")
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before


def test_a_stopped_experiment_is_not_promoted(redis_client):
    lists = _lists_with(redis_client, "t", "v1", "v2")
    lists.rollback("v1")
    store = Experiments(redis_client, "t")
    store.create(_canary())
    store.start("canary-v2")
    store.stop("canary-v2")  # e.g. rolled back by an earlier check: current stays
    with pytest.raises(ValueError, match="is stopped"):
        store.promote("canary-v2", "canary")
    assert lists.current() == "v1"


def test_decisions_are_kept_on_the_record_newest_last(redis_client, monkeypatch):
    import infra.redis.experiments as module

    _publish(redis_client, "t", "v2")
    store = Experiments(redis_client, "t")
    store.create(_exp())
    monkeypatch.setattr(module, "MAX_DECISIONS", 3)
    for n in range(5):
        store.record_decision("ab", {"action": "wait", "figures": {"n": n}})
    decisions = store.get("ab")["decisions"]
    assert [d["figures"]["n"] for d in decisions] == [2, 3, 4]
    assert all(d["at"] and d["action"] == "wait" for d in decisions)
    with pytest.raises(ValueError, match="no experiment named 'zz'"):
        store.record_decision("zz", {"action": "wait"})
    with pytest.raises(TypeError):
        store.record_decision("ab", {"action": object()})
    assert len(store.get("ab")["decisions"]) == 3


def test_expiry_keeps_current_and_every_running_arms_version(redis_client):
    lists = _lists_with(redis_client, "t", "v1", "v2", "v3", "v4", "v5")
    lists.rollback("v2")
    store = Experiments(redis_client, "t")
    store.create(_canary("canary-v3", control="v1", canary="v3"))
    store.start("canary-v3")
    # keep=1 would leave v5 only; v2 is current, v1 and v3 are the running canary's arms.
    assert lists.expire_old(keep=1) == ["v4"]
    assert lists.versions() == ["v1", "v2", "v3", "v5"]
    assert all(lists.get_list(v, "u0") is not None for v in ("v1", "v2", "v3", "v5"))
    assert lists.get_list("v4", "u0") is None
    assert redis_client.smembers("t:started") == set()
    # Rolled back (stopped): every user is back on current (v2), which kept its lists; the
    # arms' versions expire once nothing serves them.
    store.stop("canary-v3")
    assert lists.expire_old(keep=1) == ["v1", "v3"]
    assert lists.versions() == ["v2", "v5"] and lists.get_list("v2", "u0") is not None


def test_an_unreadable_running_definition_expires_nothing(redis_client):
    lists = _lists_with(redis_client, "t", "v1", "v2", "v3")
    redis_client.hset("t:exp:running", "broken", "{not json")
    assert lists.expire_old(keep=1) == []
    assert lists.versions() == ["v1", "v2", "v3"]


def test_an_expiry_cut_short_is_finished_by_drop_unpublished(redis_client, monkeypatch):
    lists = _lists_with(redis_client, "t", "v1", "v2")
    monkeypatch.setattr(lists, "_unlink_version", lambda version: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        lists.expire_old(keep=1)
    # Out of NS:versions before its keys went: nothing can start on v1 or roll back to it.
    assert lists.versions() == ["v2"] and redis_client.smembers("t:started") == {b"v1"}
    with pytest.raises(ValueError, match="never published"):
        lists.rollback("v1")
    monkeypatch.undo()
    assert lists.drop_unpublished() == ["v1"]
    assert lists.get_list("v1", "u0") is None and lists.get_list("v2", "u0") is not None


def test_promote_with_an_expected_current_refuses_once_current_moved(redis_client):
    lists = _lists_with(redis_client, "t", "v1", "v2", "v3")  # v3 current: published meanwhile
    store = Experiments(redis_client, "t")
    store.create(_canary())
    store.start("canary-v2")
    with pytest.raises(ValueError, match="current is v3, not v1: it moved while experiment "
                                         "'canary-v2' was being decided"):
        store.promote("canary-v2", "canary", expected_current="v1")
    assert lists.current() == "v3" and list(store.running()) == ["canary-v2"]
    assert store.promote("canary-v2", "canary", expected_current="v3")["promoted_version"] == "v2"
