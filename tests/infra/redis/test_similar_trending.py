"""The items' neighbours (infra/redis/similar.py) and the trending counters
(infra/redis/trending.py, written by the events script) on a real redis-server and a real
3-node Redis Cluster."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from infra.redis.client import connect
from infra.redis.codec import decode_list
from infra.redis.event_stream import EventStream
from infra.redis.lists import ServedLists
from infra.redis.similar import SimilarLists
from infra.redis.trending import BUCKET_S, KEEP_S, TrendingCounters, bucket_at

V = "20260101T000000Z-abcd"


def _write(client, ns="t"):
    lists, similar = ServedLists(client, ns), SimilarLists(client, ns)
    lists.write_shard(V, "0", ["u1", "u2"], np.array([[1, 2], [0, 2]]), np.ones((2, 2)))
    items = np.array([[1, 2], [2, -1], [0, 1]])
    similar.write_shard(V, "0", ["a", "b"], items[:2], np.ones((2, 2)))
    return lists, similar, items


def test_the_flip_publishes_lists_and_neighbours_together(redis_client):
    lists, similar, items = _write(redis_client)
    with pytest.raises(RuntimeError, match="similar-items shards wrote 2 items, expected 3"):
        lists.flip(V, 2, expected_similar=3)
    assert lists.current() is None and V in {v.decode() for v in
                                             redis_client.smembers(lists.keys.started)}
    similar.write_shard(V, "1", ["c"], items[2:], np.ones((1, 2)))
    lists.flip(V, 2, expected_similar=3)
    assert lists.current() == V
    idx, _ = decode_list(similar.read(V, "b"))
    assert idx.tolist() == [2]  # -1 pads dropped
    assert similar.read(V, "zz") is None
    lists.flip(V, 2)  # without the argument: the users' count alone, as before


def test_a_failed_runs_neighbours_are_dropped_with_its_lists(redis_client):
    lists, similar, _ = _write(redis_client)
    assert lists.drop_unpublished() == [V]
    assert similar.read(V, "a") is None and similar.count(V) == 0


def test_trending_sums_a_windows_buckets_and_its_keys_expire(redis_client):
    events = EventStream(redis_client, "t")
    events.append([{"user_id": "u1", "item_id": "hit", "weight": 5.0},
                   {"user_id": "u2", "item_id": "hit"},
                   {"user_id": "u2", "item_id": "other", "weight": 2.0},
                   {"user_id": "u3", "item_id": "zero", "weight": 0.0}])
    trend = TrendingCounters(redis_client, "t")
    assert trend.top(900, 10) == [("hit", 6.0), ("other", 2.0)]
    key = trend.keys.trend("u1", bucket_at(time.time()))
    assert 0 < redis_client.ttl(key) <= KEEP_S
    # An older bucket inside the 1 h window counts for 1 h but not for 15 min.
    old = bucket_at(time.time()) - 6
    redis_client.zincrby(f"t:trend:{old}", 10.0, "older")
    assert trend.top(3600, 1) == [("older", 10.0)]
    assert [i for i, _ in trend.top(900, 10)] == ["hit", "other"]
    assert "older" in dict(trend.top(3600, 10, now=(old + 11) * BUCKET_S))
    assert "older" not in dict(trend.top(3600, 10, now=(old + 12) * BUCKET_S))  # left the hour


def test_a_batch_refused_by_the_events_script_counts_nothing(redis_client):
    redis_client.set("t:hist:v", "not a list")
    with pytest.raises(redis.ResponseError):
        EventStream(redis_client, "t").append([{"event_id": "e1", "user_id": "u", "item_id": "i"},
                                                {"event_id": "e2", "user_id": "v", "item_id": "i"}])
    assert TrendingCounters(redis_client, "t").top(900, 10) == []


@pytest.mark.cluster
def test_cluster_keys_share_their_scripts_slot_and_reads_sum_every_bucket(redis_cluster_url):
    client = connect(redis_cluster_url)
    client.flushall(target_nodes=client.PRIMARIES)
    try:
        events = EventStream(client, "c")
        users = [f"u{i}" for i in range(40)]
        events.append([{"event_id": f"e{n}", "user_id": u, "item_id": "hit"}
                       for n, u in enumerate(users)])
        events.append([{"user_id": users[0], "item_id": "other", "weight": 3.0}])
        k = events.keys
        now = bucket_at(time.time())
        assert key_slot(k.trend("u7", now).encode()) == key_slot(k.hist("u7").encode())
        assert TrendingCounters(client, "c").top(900, 5) == [("hit", 40.0), ("other", 3.0)]
        lists, similar, items = _write(client, "c")
        similar.write_shard(V, "1", ["c"], items[2:], np.ones((1, 2)))
        assert key_slot(k.similar_shards(V).encode()) == key_slot(k.current.encode())
        lists.flip(V, 2, expected_similar=3)
        assert decode_list(similar.read(V, "a"))[0].tolist() == [1, 2]
    finally:
        client.flushall(target_nodes=client.PRIMARIES)
