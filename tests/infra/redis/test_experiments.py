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
