"""The experiment's plan inside Serving (functions/arms.py, swap.py, serving.py) on hand-made
MF bundles with known item orders: real redis-server, a local store."""

import json

import pytest

from functions.arms import Plan, parse_running
from functions.serving import Serving
from functions.settings import Settings
from infra.redis.experiments import Experiments
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models.experiments.assignment import experiment
from tests.functions.test_serving import publish


@pytest.fixture
def parts(redis_client, redis_url, tmp_path):
    """As tests/functions/test_serving.py's: (store, lists, item filters, Serving maker)."""
    store, lists = LocalStore(str(tmp_path)), ServedLists(redis_client, "srv")

    def serving(**settings):
        return Serving(Settings(redis_url=redis_url, store=str(tmp_path), namespace="srv",
                                **settings))
    return store, lists, ItemFilters(redis_client, "srv"), serving


def _exp(b_version: str, name: str = "ab") -> dict:
    return experiment(name, [{"name": "A", "version": "current", "allocation": 5000},
                             {"name": "B", "version": b_version, "allocation": 5000}], "salt")


def _start(redis_client, exp) -> None:
    store = Experiments(redis_client, "srv")
    store.create(exp)
    store.start(exp.name)


def _publish_beside(store, lists, version, item_ids):
    """`version` published without moving `current` (as a canary)."""
    current = lists.current()
    publish(store, lists, version, item_ids)
    lists.r.set(lists.keys.current, current)


def test_serving_state_reads_pointer_revision_experiment_and_versions_at_once(parts,
                                                                           redis_client):
    store, lists, items, _ = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    items.update(unavailable=["b"])
    assert lists.serving_state() == ("v1", 1, {}, {"v1"})
    _start(redis_client, _exp("current"))
    current, rev, running, published = lists.serving_state()
    assert json.loads(running["ab"])["arms"][0]["version"] == "current"


def test_the_experiment_is_read_with_the_pointer_only_after_its_ttl(parts, redis_client):
    store, lists, _, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    _publish_beside(store, lists, "v2", ["c", "b", "a"])
    s = serving(pointer_ttl=3600)
    exp = _exp("v2")
    user = next(str(u) for u in range(100) if exp.arm_for(str(u)).name == "B")
    assert s.route(user).loaded.version == "v1"
    _start(redis_client, exp)
    assert s.route(user).experiment == ""  # cached with the pointer
    s.pointer.ttl = 0
    route = s.route(user)
    assert (route.loaded.version, route.experiment, route.arm) == ("v2", "ab", "B")
    assert route.loaded.item_names == ["c", "b", "a"]
    assert s.route(user).loaded is route.loaded  # loaded once


def test_an_arm_version_gets_the_filters_and_is_reused_when_promoted(parts, redis_client):
    store, lists, items, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    _publish_beside(store, lists, "v2", ["c", "b", "a", "d"])
    s = serving(pointer_ttl=0)
    exp = _exp("v2")
    _start(redis_client, exp)
    user = next(str(u) for u in range(100) if exp.arm_for(str(u)).name == "B")
    arm = s.route(user).loaded
    items.update(unavailable=["a"], categories={"d": "x"})
    s.route(user)
    assert arm.filters.unavailable_idx == {2} and arm.filters.inside([3], ["x"]).tolist() == [
        True]
    lists.r.set(lists.keys.current, "v2")  # promoted
    assert s.state() is arm and s.route(user).arm == "B"
    Experiments(redis_client, "srv").stop("ab")
    assert s.route(user).experiment == "" and s.swap.others == {}  # v1 unloaded: unused


def test_an_unloadable_arm_version_serves_current_and_is_not_retried_at_once(parts,
                                                                             redis_client,
                                                                             caplog):
    store, lists, _, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    publish(store, lists, "v9", [], bundle=False)  # lists and published, no bundle
    lists.r.set(lists.keys.current, "v1")
    s = serving(pointer_ttl=0)
    exp = _exp("v9")
    _start(redis_client, exp)
    user = next(str(u) for u in range(100) if exp.arm_for(str(u)).name == "B")
    for _ in range(3):
        route = s.route(user)
        assert (route.loaded.version, route.arm) == ("v1", "B")
    assert sum("v9" in r.message and r.levelname == "ERROR" for r in caplog.records) == 1


def test_plan_routes_every_user_by_the_assignment_and_bad_ids_outside():
    current, other = object(), object()
    exp = _exp("v2")
    plan = Plan(current, exp, {"A": current, "B": other})
    users = [str(u) for u in range(200)]
    assert all(plan.route(u).loaded is (other if exp.arm_for(u).name == "B" else current)
               for u in users)
    assert plan.route("\x00").experiment == "" and plan.route("\x00").loaded is current
    assert Plan(current).route("1").arm == ""


@pytest.mark.parametrize("raw", [{"x": b"not json"}, {"x": b'{"name": "x"}'}, {}])
def test_a_running_definition_that_does_not_parse_is_no_experiment(raw):
    assert parse_running(raw) is None
