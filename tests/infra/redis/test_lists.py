"""ServedLists (infra/redis/lists.py) against a real Redis server process: the flip, rollback,
expiry, the carry-over copies, the serving read, and (issue 15, finding 1) hostile ids that
cannot widen a key pattern."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from infra.redis.builds import BuildRecords
from infra.redis.codec import decode_list, remap_lists
from infra.redis.event_stream import EventStream
from infra.redis.lists import ServedLists


def _publish(lists, version, n_users, fill, shard_size=50):
    for lo in range(0, n_users, shard_size):
        users = [f"u{n}" for n in range(lo, min(lo + shard_size, n_users))]
        items = np.full((len(users), 4), fill, np.int64)
        lists.write_shard(version, str(lo), users, items, np.ones((len(users), 4)), batch=7)
    lists.flip(version, n_users)


def test_reader_sees_only_complete_old_or_complete_new(redis_client):
    lists = ServedLists(redis_client, "t")
    _publish(lists, "v1", 400, fill=1)
    observed, stop = [], threading.Event()

    def reader():
        r = ServedLists(redis_client.__class__(connection_pool=redis_client.connection_pool),
                        "t")
        while not stop.is_set():
            version = r.current()
            seen = {int(r.get_list(version, f"u{n}")[0][0]) for n in range(0, 400, 37)}
            observed.append((version, frozenset(seen)))

    t = threading.Thread(target=reader)
    t.start()
    _publish(lists, "v2", 400, fill=2)
    stop.set()
    t.join()
    assert lists.current() == "v2"
    assert observed, "the reader never ran"
    assert set(observed) <= {("v1", frozenset({1})), ("v2", frozenset({2}))}


def test_flip_refuses_when_a_shard_is_missing(redis_client):
    lists = ServedLists(redis_client, "t")
    _publish(lists, "v1", 100, fill=1)
    lists.write_shard("v2", "0", ["u0", "u1"], np.zeros((2, 3), np.int64), np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="wrote 2 users, expected 100"):
        lists.flip("v2", 100)
    assert lists.current() == "v1"
    # Rewriting a shard is idempotent: a rerun that completes the shards can flip.
    lists.write_shard("v2", "0", ["u0", "u1"], np.zeros((2, 3), np.int64), np.zeros((2, 3)))
    lists.write_shard("v2", "1", [f"u{n}" for n in range(2, 100)],
                      np.zeros((98, 3), np.int64), np.zeros((98, 3)))
    lists.flip("v2", 100)
    assert lists.current() == "v2"


def test_rollback_and_expiry(redis_client):
    lists = ServedLists(redis_client, "t")
    for n in range(1, 5):
        _publish(lists, f"v{n}", 10, fill=n)
    lists.rollback("v2")
    assert lists.current() == "v2"
    with pytest.raises(ValueError, match="never published"):
        lists.rollback("v9")
    assert lists.expire_old(keep=2) == ["v1"]  # v2 is current, so it stays
    assert lists.get_list("v1", "u0") is None and lists.get_list("v2", "u0") is not None
    assert lists.versions() == ["v2", "v3", "v4"]


def test_current_and_rev_reads_the_pointer_and_the_filters_revision(redis_client):
    lists = ServedLists(redis_client, "t")
    assert lists.current_and_rev() == (None, 0)
    _publish(lists, "v1", 10, fill=1)
    redis_client.set("t:items:rev", 7)
    assert lists.current_and_rev() == ("v1", 7)


def test_read_user_keeps_a_connection_per_thread_and_replaces_a_broken_one(redis_client):
    import redis

    lists = ServedLists(redis_client, "t")
    _publish(lists, "v1", 10, fill=3)
    EventStream(redis_client, "t").append([{"user_id": "u1", "item_id": "9", "timestamp": 1}])
    raw, hist = lists.read_user("v1", "u1")
    assert decode_list(raw)[0].tolist() == [3, 3, 3, 3] and hist == [b"9"]
    names = []

    def other_thread():
        lists.read_user("v1", "u2")
        names.append(lists._local.conns[None])

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert names[0] is not lists._local.conns[None]
    redis_client.client_kill_filter(_type="normal", skipme=True)  # drops read_user's sockets
    with pytest.raises(redis.ConnectionError):
        lists.read_user("v1", "u1")
    raw, hist = lists.read_user("v1", "u1")  # a new connection, same answer
    assert decode_list(raw)[0].tolist() == [3, 3, 3, 3] and hist == [b"9"]


def test_copy_lists_copies_bytes_remaps_indices_and_counts(redis_client):
    lists = ServedLists(redis_client, "t")
    items = np.array([[2, 0, 1], [1, 2, -1]])
    scores = np.array([[3.0, 2.0, 1.0], [0.5, 0.25, 0.0]])
    lists.write_shard("v1", "0", ["a", "b"], items, scores)
    copied = lists.copy_lists("v1", "v2", "carry", ["a", "gone", "b"], batch=2)
    assert copied.tolist() == [True, False, True]
    for u in ("a", "b"):
        assert redis_client.get(f"t:v:v2:u:{u}") == redis_client.get(f"t:v:v1:u:{u}")
    assert redis_client.get("t:v:v2:u:gone") is None
    # batch 0 = [a, gone]: 1 copied; batch 1 = [b]: 1 copied
    assert redis_client.hgetall("t:v:v2:shards") == {b"carry:0": b"1", b"carry:1": b"1"}

    # Item 0 left the catalog, a new item took index 0: 1 -> 2, 2 -> 1, 0 -> dropped.
    item_map = np.array([-1, 2, 1])
    lists.copy_lists("v1", "v3", "carry", ["a", "b"], item_map)
    got_i, got_s = lists.get_list("v3", "a")
    assert got_i.tolist() == [1, 2] and got_s.tolist() == [3.0, 1.0]
    got_i, got_s = lists.get_list("v3", "b")
    assert got_i.tolist() == [2, 1] and got_s.tolist() == [0.5, 0.25]
    assert remap_lists([b""], item_map) == [b""]


# Issue 15, finding 1: user ids that are glob patterns, key separators or both: each one,
# built into a SCAN pattern, would match keys it does not name.
HOSTILE = ["*[^:shards", "u1:shards", "a*", "[", "\\", "x:shards", "?", "*", ":", "v:*"]
USERS = ["u0", "u1", "u2", "a", "ab", *HOSTILE]


def _write(lists, version, users, fill):
    items = np.full((len(users), 3), fill, np.int64)
    return lists.write_shard(version, "0", users, items, np.ones((len(users), 3)))


def _version_keys(client, ns, version):
    """Every key of `version`, found without a pattern built from data."""
    prefix = f"{ns}:v:{version}:".encode()
    return {k: client.dump(k) for k in client.scan_iter(count=10_000) if k.startswith(prefix)}


def test_hardening_01_user_id_with_glob_cannot_wipe_lists(redis_client):
    lists, builds = ServedLists(redis_client, "t"), BuildRecords(redis_client, "t")
    _write(lists, "v1", USERS, fill=1)
    builds.put_built("v1", np.zeros(len(USERS), np.uint32), np.zeros(len(USERS), np.uint64))
    builds.put_summary("v1", {"users": len(USERS)})
    lists.flip("v1", len(USERS))
    served = _version_keys(redis_client, "t", "v1")
    assert len(served) == len(USERS) + 3  # the lists, meta, shards, built

    # A failed run: lists (hostile ids too), copies and the built record, never flipped.
    _write(lists, "v2", USERS, fill=2)
    lists.copy_lists("v1", "v2", "carry", ["u0", "*[^:shards"])
    lists.copy_lists("v1", "v2", "carry-remapped", ["u1:shards"], np.array([0, 2, 1]))
    builds.put_built("v2", np.zeros(3, np.uint32), np.zeros(3, np.uint64))
    assert _version_keys(redis_client, "t", "v2")

    dropped = lists.drop_unpublished()
    assert _version_keys(redis_client, "t", "v1") == served  # every served key, same bytes
    assert dropped == ["v2"]
    assert _version_keys(redis_client, "t", "v2") == {}
    assert redis_client.smembers("t:started") == set()
    assert lists.drop_unpublished() == []  # nothing left to drop
    assert lists.current() == "v1"
    for user in USERS:
        assert lists.get_list("v1", user)[0].tolist() == [1, 1, 1]


def test_hardening_01_a_run_that_failed_before_any_shard_count_is_dropped_too(redis_client):
    lists, builds = ServedLists(redis_client, "t"), BuildRecords(redis_client, "t")
    _write(lists, "v1", ["x:shards"], fill=1)
    lists.flip("v1", 1)
    # Failed before any shard count: only the built record and the summary of a refused flip.
    builds.put_built("v2", np.zeros(2, np.uint32), np.zeros(2, np.uint64))
    builds.put_summary("v2", {})
    with pytest.raises(RuntimeError, match="expected 2"):
        lists.flip("v2", 2)
    assert set(_version_keys(redis_client, "t", "v2")) == {b"t:v:v2:built", b"t:v:v2:meta"}
    dropped = lists.drop_unpublished()
    assert _version_keys(redis_client, "t", "v2") == {}, "a failed run's keys were kept"
    assert dropped == ["v2"] and lists.get_list("v1", "x:shards") is not None
    assert redis_client.smembers("t:started") == set()


@pytest.mark.parametrize("version", ["*", "v1:u:x", "v[", "v\\", "", "a?", "-v", "v" * 65])
def test_hardening_01_malformed_versions_are_refused_before_any_key(redis_client, version):
    lists, builds = ServedLists(redis_client, "t"), BuildRecords(redis_client, "t")
    _write(lists, "v1", ["u0"], fill=1)
    lists.flip("v1", 1)
    before = set(redis_client.keys())
    with pytest.raises(ValueError, match="malformed version"):
        lists.rollback(version)
    for write in (lambda: _write(lists, version, ["u0"], fill=2),
                  lambda: lists.copy_lists("v1", version, "carry", ["u0"]),
                  lambda: lists.copy_lists(version, "v2", "carry", ["u0"]),
                  lambda: builds.put_built(version, np.zeros(1, np.uint32),
                                           np.zeros(1, np.uint64)),
                  lambda: builds.put_summary(version, {}),
                  lambda: lists.flip(version, 1)):
        with pytest.raises(ValueError, match="malformed version"):
            write()
    assert set(redis_client.keys()) == before and lists.current() == "v1"


def test_hardening_01_planted_glob_versions_match_only_themselves(redis_client):
    lists = ServedLists(redis_client, "t")
    for n in (1, 2, 3):
        _write(lists, f"v{n}", ["u0", "*"], fill=n)
        lists.flip(f"v{n}", 2)
    kept = {v: _version_keys(redis_client, "t", v) for v in ("v1", "v2", "v3")}
    # Written around the stores (a hand edit, an old tool): neither record may widen a SCAN.
    redis_client.zadd("t:versions", {"*": 0, "v1:*": 0.5})
    redis_client.sadd("t:started", "*", "v2:u:*")
    assert lists.drop_unpublished() == []
    assert lists.expire_old(keep=3) == []
    assert {v: _version_keys(redis_client, "t", v) for v in kept} == kept
