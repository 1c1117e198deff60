"""ListStore against a real Redis server process."""

import threading

import numpy as np
import pytest

from infra.redis_store import ListStore, decode_list, encode_list


def test_encoding_round_trip_is_six_bytes_per_entry():
    items = np.array([5, 0, 123456], np.int32)
    scores = np.array([1.5, -0.25, 3.0], np.float32)
    raw = encode_list(items, scores)
    assert len(raw) == 18
    got_i, got_s = decode_list(raw)
    assert got_i.tolist() == [5, 0, 123456] and got_s.tolist() == [1.5, -0.25, 3.0]


def _publish(lists, version, n_users, fill, shard_size=50):
    for lo in range(0, n_users, shard_size):
        users = [f"u{n}" for n in range(lo, min(lo + shard_size, n_users))]
        items = np.full((len(users), 4), fill, np.int64)
        lists.write_shard(version, str(lo), users, items, np.ones((len(users), 4)), batch=7)
    lists.flip(version, n_users, {"users": n_users})


def test_reader_sees_only_complete_old_or_complete_new(redis_client):
    lists = ListStore(redis_client, "t")
    _publish(lists, "v1", 400, fill=1)
    observed, stop = [], threading.Event()

    def reader():
        r = ListStore(redis_client.__class__(connection_pool=redis_client.connection_pool), "t")
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
    lists = ListStore(redis_client, "t")
    _publish(lists, "v1", 100, fill=1)
    lists.write_shard("v2", "0", ["u0", "u1"], np.zeros((2, 3), np.int64), np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="wrote 2 users, expected 100"):
        lists.flip("v2", 100, {})
    assert lists.current() == "v1"
    # Rewriting a shard is idempotent: a rerun that completes the shards can flip.
    lists.write_shard("v2", "0", ["u0", "u1"], np.zeros((2, 3), np.int64), np.zeros((2, 3)))
    lists.write_shard("v2", "1", [f"u{n}" for n in range(2, 100)],
                      np.zeros((98, 3), np.int64), np.zeros((98, 3)))
    lists.flip("v2", 100, {})
    assert lists.current() == "v2"


def test_rollback_and_expiry(redis_client):
    lists = ListStore(redis_client, "t")
    for n in range(1, 5):
        _publish(lists, f"v{n}", 10, fill=n)
    lists.rollback("v2")
    assert lists.current() == "v2"
    with pytest.raises(ValueError, match="never published"):
        lists.rollback("v9")
    assert lists.expire_old(keep=2) == ["v1"]  # v2 is current, so it stays
    assert lists.get_list("v1", "u0") is None and lists.get_list("v2", "u0") is not None
    assert lists.versions() == ["v2", "v3", "v4"]


def test_events_go_to_stream_and_capped_history(redis_client):
    lists = ListStore(redis_client, "t")
    ids = lists.append_events([{"user_id": "a", "item_id": str(n), "timestamp": n}
                               for n in range(8)], history_len=5)
    assert len(ids) == 8 and redis_client.xlen("t:events") == 8
    assert lists.history("a") == ["3", "4", "5", "6", "7"]


def test_read_user_keeps_a_connection_per_thread_and_replaces_a_broken_one(redis_client):
    import redis

    lists = ListStore(redis_client, "t")
    _publish(lists, "v1", 10, fill=3)
    lists.append_events([{"user_id": "u1", "item_id": "9", "timestamp": 1}])
    raw, hist = lists.read_user("v1", "u1")
    assert decode_list(raw)[0].tolist() == [3, 3, 3, 3] and hist == [b"9"]
    names = []

    def other_thread():
        lists.read_user("v1", "u2")
        names.append(lists._local.conn)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert names[0] is not lists._local.conn
    redis_client.client_kill_filter(_type="normal", skipme=True)  # drops read_user's sockets
    with pytest.raises(redis.ConnectionError):
        lists.read_user("v1", "u1")
    raw, hist = lists.read_user("v1", "u1")  # a new connection, same answer
    assert decode_list(raw)[0].tolist() == [3, 3, 3, 3] and hist == [b"9"]


def test_vectorised_encoding_equals_the_single_list_one():
    from infra.redis_store import encode_lists

    items = np.array([[3, 1, 2], [4, -1, -1], [-1, -1, -1]])
    scores = np.array([[0.5, 0.25, 0.125], [1.0, 0, 0], [0, 0, 0]], np.float32)
    assert encode_lists(items, scores) == [
        encode_list(items[0], scores[0]), encode_list(items[1][:1], scores[1][:1]), b""]


def test_copy_lists_copies_bytes_remaps_indices_and_counts(redis_client):
    from infra.redis_store import remap_lists

    lists = ListStore(redis_client, "t")
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


def test_built_record_round_trips(redis_client):
    lists = ListStore(redis_client, "t")
    assert lists.built("v1") is None
    built_at = np.array([1_700_000_000, 5], np.uint32)
    fingerprints = np.array([2**64 - 1, 0], np.uint64)
    lists.put_built("v1", built_at, fingerprints)
    got_b, got_f = lists.built("v1")
    assert got_b.tolist() == built_at.tolist() and got_f.tolist() == fingerprints.tolist()
    assert redis_client.strlen("t:v:v1:built") == 2 * 12
