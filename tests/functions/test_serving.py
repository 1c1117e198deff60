"""Serving and its parts together (functions/serving.py, swap.py, loaded.py) on hand-made MF
bundles with known item orders: real redis-server, a local store, no tower."""

import numpy as np
import pytest

from functions.loaded import NoBundleError
from functions.serving import Serving
from functions.settings import Settings
from infra.bundle import BundleWriter
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models.kinds import mf, write_bundle


def publish(store, lists, version: str, item_ids: list[str], bundle: bool = True) -> None:
    """A bundle of `item_ids` (no users, no tower) and one user's list, pointer flipped."""
    if bundle:
        vectors = np.eye(len(item_ids), dtype=np.float32)
        fit = mf.fit_from_factors([], item_ids, np.zeros((0, len(item_ids) - 1)),
                                  vectors[:, :-1], vectors[:, -1], popular=item_ids)
        write_bundle(mf.KIND, fit, BundleWriter(store, version), k=2)
    lists.write_shard(version, "0", ["u"], np.array([[0, 1]]), np.array([[2.0, 1.0]]))
    lists.flip(version, 1)


@pytest.fixture
def parts(redis_client, redis_url, tmp_path):
    store, lists = LocalStore(str(tmp_path)), ServedLists(redis_client, "srv")

    def serving(**settings):
        return Serving(Settings(redis_url=redis_url, store=str(tmp_path), namespace="srv",
                                **settings))
    return store, lists, ItemFilters(redis_client, "srv"), serving


def test_nothing_published_is_a_no_bundle_error_saying_what_to_run(parts):
    _, _, _, serving = parts
    with pytest.raises(NoBundleError, match="recsys nightly"):
        serving(pointer_ttl=0).state()


def test_the_version_is_swapped_whole_when_the_pointer_moves(parts):
    store, lists, _, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    s = serving(pointer_ttl=0)
    first = s.state()
    publish(store, lists, "v2", ["c", "b", "a", "d"])
    second = s.state()
    assert (first.version, second.version) == ("v1", "v2")
    # A request that took v1 finishes on it, whole.
    assert first.item_names == ["a", "b", "c"] and second.item_names == ["c", "b", "a", "d"]
    assert second.item_index["a"] == 2 and second.bundle.popular == ["c", "b", "a", "d"]


def test_an_unreadable_bundle_keeps_the_version_served(parts):
    store, lists, _, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    s = serving(pointer_ttl=0)
    assert s.state().version == "v1"
    publish(store, lists, "v2", [], bundle=False)  # flipped, but no bundle in the store
    assert s.state().version == "v1"
    with pytest.raises(NoBundleError, match="v2 cannot be read"):
        serving(pointer_ttl=0).state()  # a new instance has nothing to keep


def test_the_pointer_is_read_again_only_after_its_ttl(parts):
    store, lists, _, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    s = serving(pointer_ttl=3600)
    assert s.state().version == "v1"
    publish(store, lists, "v2", ["a", "b", "c"])
    assert s.state().version == "v1"  # cached
    s.pointer.ttl = 0
    assert s.state().version == "v2"


def test_filters_reload_when_their_revision_moves_and_follow_a_swap(parts):
    store, lists, items, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    s = serving(pointer_ttl=0)
    assert s.state().filters.unavailable_idx == frozenset()
    items.update(unavailable=["b"], categories={"a": "x", "c": "y"})
    loaded = s.state()
    assert loaded.filters.unavailable_idx == {1}
    assert loaded.filters.inside([0, 1, 2], ["x"]).tolist() == [True, False, False]
    publish(store, lists, "v2", ["c", "b", "a", "d"])  # same revision, other item order
    moved = s.state().filters
    assert moved.unavailable_idx == {1} and moved.inside([0, 1, 2, 3], ["x"]).tolist() == [
        False, False, True, False]


def test_rank_is_empty_without_an_on_demand_scorer(parts):
    store, lists, _, serving = parts
    publish(store, lists, "v1", ["a", "b", "c"])
    loaded = serving(pointer_ttl=0).state()
    assert not loaded.on_demand  # no tower exported
    assert loaded.rank(np.array([0]), np.zeros(0, np.int64), 2) == []
