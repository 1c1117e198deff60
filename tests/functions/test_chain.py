"""The fallback chain on a hand-made bundle with known answers (real redis-server, no tower)."""

import numpy as np
import pytest

from functions.body import BadRequest
from functions.chain import Query, recommend
from functions.cursor import decode_cursor
from functions.serving import Serving
from functions.settings import Settings
from infra.bundle import BundleWriter
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models.kinds import mf, write_bundle

IDS = ["a", "b", "c", "d", "e", "f"]
KEY = b"test-cursor-secret-0123456789"


@pytest.fixture
def serving(redis_client, redis_url, tmp_path):
    store = LocalStore(str(tmp_path))
    vectors = np.eye(6, dtype=np.float32)  # MF's [q_i, b_i]; no user, no tower
    fit = mf.fit_from_factors([], IDS, np.zeros((0, 5)), vectors[:, :5], vectors[:, 5],
                              popular=["f", "d", "a", "b"])
    write_bundle(mf.KIND, fit, BundleWriter(store, "v1"), k=4)
    lists = ServedLists(redis_client, "chain")
    # u1's nightly list: c, a, e, b with scores 4, 3, 2, 1.
    lists.write_shard("v1", "0", ["u1"], np.array([[2, 0, 4, 1]]), np.array([[4, 3, 2, 1.0]]))
    lists.flip("v1", 1)
    s = Serving(Settings(redis_url=redis_url, store=str(tmp_path), namespace="chain",
                         pointer_ttl=0))
    return s


def _ids(answer):
    return [i for i, _ in answer.items]


def test_cache_then_popular_under_every_filter(serving):
    s = serving
    answer = recommend(s, Query("u1", 3))
    assert (answer.source, answer.items) == ("cache", [("c", 4.0), ("a", 3.0), ("e", 2.0)])
    s.events.append([{"user_id": "u1", "item_id": "a", "timestamp": 1}])  # touched
    s.items.update(unavailable=["e"])
    answer = recommend(s, Query("u1", 4, exclude=["f"]))
    # c and b are left of the list; popular fills with d (f excluded, a touched).
    assert _ids(answer) == ["c", "b", "d"] and answer.filled_by == ["popular"]
    assert answer.next_cursor is None  # fewer than k: nothing more to page through


def test_pages_follow_the_chain_without_repeats(serving):
    s = serving
    first = recommend(s, Query("u1", 2), KEY)
    second = recommend(s, Query("u1", 2, served=decode_cursor(KEY, "u1", first.next_cursor)),
                       KEY)
    third = recommend(s, Query("u1", 2, served=decode_cursor(KEY, "u1", second.next_cursor)),
                      KEY)
    assert [_ids(a) for a in (first, second, third)] == [["c", "a"], ["e", "b"], ["f", "d"]]
    assert (second.source, third.source) == ("cache", "popular")
    assert recommend(s, Query("u1", 2)).next_cursor is None  # no key known: no next page


def test_categories_filter_the_list_and_the_fill(serving):
    s = serving
    s.items.update(categories={"a": "x", "b": "x", "c": "y", "d": "x", "e": "y", "f": "y"})
    assert _ids(recommend(s, Query("u1", 3, categories=["x"]))) == ["a", "b", "d"]
    assert _ids(recommend(s, Query("nobody", 5, categories=["y"]))) == ["f"]


def test_an_item_of_several_categories_passes_each_of_its_filters(serving):
    s = serving
    s.items.update(categories={"a": "x|y", "b": "x", "c": "y", "d": "x|z", "e": "z", "f": "y|x"})
    # u1's list is c, a, e, b; popular f, d, a, b fills.
    assert _ids(recommend(s, Query("u1", 4, categories=["y"]))) == ["c", "a", "f"]
    assert _ids(recommend(s, Query("u1", 4, categories=["x"]))) == ["a", "b", "f", "d"]
    assert _ids(recommend(s, Query("u1", 4, categories=["z"]))) == ["e", "d"]
    assert _ids(recommend(s, Query("nobody", 4, categories=["z", "y"]))) == ["f", "d", "a"]


def test_a_category_no_item_has_is_refused_not_answered_empty(serving):
    s = serving
    s.items.update(categories={"a": "x|y"})
    with pytest.raises(BadRequest, match=r"^category: no served item has category 'w'; known "
                                         r"categories \(2\): 'x', 'y'$"):
        recommend(s, Query("u1", 4, categories=["x", "w"]))


@pytest.mark.parametrize("size,catalog,unavailable_max", [(30, 40, 8), (120, 200, 150)],
                         ids=["short", "long_with_many_unavailable"])
def test_the_unfiltered_walk_of_a_list_matches_the_reference_on_random_lists(
        size, catalog, unavailable_max):
    """_from_cache without a category walks the list until k items pass: the same items and
    scores as the brute-force reference (models.rules.fill over every exclusion, each item's
    first score), lists with repeats, blocked and unavailable items included; long lists
    whose head is mostly unavailable make it decode past the head it starts with."""
    from functions.chain import _from_cache
    from functions.filters import Filters
    from infra.redis.codec import encode_list
    from models.rules import fill

    rng = np.random.default_rng(0)
    names = [f"i{n}" for n in range(catalog)]
    for _ in range(200):
        n = int(rng.integers(0, size))
        items, scores = rng.integers(0, catalog, n), np.round(rng.random(n), 3)
        blocked = set(rng.integers(0, catalog, int(rng.integers(0, 8))).tolist())
        unavailable = frozenset(
            rng.integers(0, catalog, int(rng.integers(0, unavailable_max))).tolist())
        k = int(rng.integers(1, 12))
        raw = encode_list(items.astype(np.int32), scores.astype(np.float32))
        flt = Filters(0, frozenset(), unavailable, {}, {})
        got = _from_cache(raw, Query(user_id="u", k=k), blocked, flt, names)
        ids, vals = items.tolist(), np.float16(scores).astype(float).tolist()
        first = {}
        for i, v in zip(ids, vals, strict=True):
            first.setdefault(i, v)
        want = [(names[i], first[i]) for i in fill(ids, [], k, blocked | unavailable)]
        assert got == want
