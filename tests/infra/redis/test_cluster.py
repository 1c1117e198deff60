"""The Redis stores against a real local 3-node Redis Cluster (issue 20): the key layout puts
every script's and transaction's keys in one slot and spreads users over every node; publish,
flip, rollback, carry-over, expiry, events with de-duplication and their drain keep their
single-server meaning; a node killed during a publish never lets the pointer move to an
incomplete version. Run alone with `pytest -m cluster`; the fixtures: tests/conftest.py."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from infra.events_log import drain_events, read_events_log
from infra.redis.builds import BuildRecords
from infra.redis.client import connect, is_cluster
from infra.redis.event_stream import EventStream
from infra.redis.experiments import Experiments
from infra.redis.item_filters import ItemFilters
from infra.redis.keys import Keys
from infra.redis.lists import ServedLists
from infra.store import open_store
from models.experiments.assignment import Experiment

pytestmark = pytest.mark.cluster

USERS = [f"u{i}" for i in range(240)]


@pytest.fixture
def cluster(redis_cluster_url):
    client = connect(redis_cluster_url)
    client.flushall(target_nodes=client.PRIMARIES)
    yield client
    client.flushall(target_nodes=client.PRIMARIES)


def _lists(n=len(USERS), k=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50, (n, k)).astype(np.int32), rng.random((n, k)).astype(np.float32)


def _publish(lists, version, users=USERS, seed=0):
    items, scores = _lists(len(users), seed=seed)
    lists.write_shard(version, "0", users, items, scores)
    lists.flip(version, len(users))
    return items


def _slot(key: str) -> int:
    return key_slot(key.encode())


def test_the_url_picks_the_client(redis_cluster_url, redis_url):
    assert is_cluster(connect(redis_cluster_url)) and not is_cluster(connect(redis_url))
    with pytest.raises(ValueError, match="only database 0"):
        connect(redis_cluster_url + "/1")


def test_layout_one_slot_per_script_and_users_on_every_node(cluster):
    keys = Keys("t", cluster=True)
    shared = {keys.current, keys.versions, keys.started, keys.shards("v1"), keys.meta("v1"),
              keys.built("v1"), keys.experiments, keys.experiments_running, keys.items_rev,
              keys.items_unavailable, keys.items_category, keys.impressions, keys.drain_lock}
    assert len({_slot(k) for k in shared}) == 1  # flip, rollback, expiry, promote: one slot
    for user in ("u1", "a}b{c", "😀", ""):  # a user's keys share their bucket's slot
        bucket_keys = [keys.user("v1", user), keys.user("v2", user), keys.hist(user),
                       keys.event_id(user, "e1"), keys.event_streams[keys.bucket(user)]]
        assert len({_slot(k) for k in bucket_keys}) == 1, user
    # Buckets spread evenly: each of the 3 nodes' equal slot ranges holds a third of them.
    slots = sorted(_slot(s) for s in keys.event_streams)
    assert [sum(lo <= s < lo + 5462 for s in slots) for lo in (0, 5462, 10924)] in (
        [21, 21, 22], [22, 21, 21], [21, 22, 21])
    lists = ServedLists(cluster, "t")
    _publish(lists, "v1")
    per_node = [n.redis_connection.dbsize() for n in cluster.get_primaries()]
    assert min(per_node) > 0.2 * len(USERS), per_node  # the users' lists are on every node


def test_publish_flip_rollback_and_a_short_version_is_refused(cluster):
    lists = ServedLists(cluster, "t")
    items = _publish(lists, "v1")
    got, _ = lists.get_list("v1", "u7")
    assert got.tolist() == items[7].tolist() and lists.current() == "v1"
    lists.write_shard("v2", "0", USERS[:100], *_lists(100, seed=1))
    with pytest.raises(RuntimeError, match="wrote 100 users, expected 240"):
        lists.flip("v2", len(USERS))
    assert lists.current() == "v1" and lists.versions() == ["v1"]
    lists.write_shard("v2", "1", USERS[100:], *_lists(140, seed=2))
    lists.flip("v2", len(USERS))
    assert lists.current() == "v2"
    lists.rollback("v1")
    assert lists.current() == "v1" and lists.get_list("v1", "u7")[0].tolist() == items[7].tolist()
    raw, hist = lists.read_user("v1", "u7")
    assert raw is not None and hist == []


def test_carry_over_copies_and_remaps_between_versions(cluster):
    lists = ServedLists(cluster, "t")
    items = _publish(lists, "v1")
    copied = lists.copy_lists("v1", "v2", "carry", USERS[:200] + ["nobody"], batch=64)
    assert copied.sum() == 200 and not copied[-1]
    lists.write_shard("v2", "0", USERS[200:], *_lists(40, seed=3))
    lists.flip("v2", len(USERS))  # the copies count in the flip's check
    assert lists.get_list("v2", "u3")[0].tolist() == items[3].tolist()
    reverse = np.arange(50)[::-1].copy()
    assert lists.copy_lists("v2", "v3", "c", USERS[:5], item_map=reverse).all()
    assert lists.get_list("v3", "u3")[0].tolist() == reverse[items[3]].tolist()


def test_drop_unpublished_and_expire_old_reach_every_node(cluster):
    lists = ServedLists(cluster, "t")
    _publish(lists, "v1")
    _publish(lists, "v2", seed=1)
    lists.write_shard("v3", "0", USERS, *_lists(seed=2))  # a run that died before its flip
    BuildRecords(cluster, "t").put_summary("v3", {"users": 240})
    EventStream(cluster, "t").append([{"user_id": "x}:v:v3:u:y", "item_id": "1"}])
    assert lists.drop_unpublished() == ["v3"]
    left = list(cluster.scan_iter("*:v:v3:*", count=10_000))
    assert left == [EventStream(cluster, "t").keys.hist("x}:v:v3:u:y").encode()]
    assert EventStream(cluster, "t").history("x}:v:v3:u:y") == ["1"]  # not a key of v3
    assert lists.expire_old(1) == ["v1"] and lists.versions() == ["v2"]
    assert not list(cluster.scan_iter("*:v:v1:*", count=10_000))
    assert sum(1 for _ in cluster.scan_iter("*:v:v2:u:*", count=10_000)) == len(USERS)


def test_events_dedup_history_and_drain_over_every_bucket(cluster, tmp_path):
    stream = EventStream(cluster, "t")
    batch = [{"event_id": f"e{i}", "user_id": f"u{i % 30}", "item_id": str(i),
              "timestamp": 1_700_000_000 + i, "event_type": "click"} for i in range(90)]
    first = stream.append(batch, history_len=2)
    again = stream.append(batch[:45] + [{**batch[0], "event_id": "new"}])
    assert all(first) and again[:45] == [None] * 45 and again[45] is not None
    # u0's items 0, 30, 60 capped to the newest two, then the item of the event with a new id.
    assert stream.history("u0") == ["30", "60", "0"]
    store = open_store(str(tmp_path))
    stats = drain_events(stream, store)
    assert stats["events"] == 91 and stats["acknowledged"] == 91
    assert len({f.rsplit(".", 2)[1] for f in stats["files"]}) > 1  # several buckets' streams
    log = read_events_log(store)
    assert len(log) == 91 and log["event_id"].is_unique
    assert drain_events(stream, store)["events"] == 0  # nothing twice


def test_events_a_wrong_typed_history_refuses_a_batch_over_buckets(cluster):
    stream = EventStream(cluster, "t")
    cluster.set(stream.keys.hist("v"), "not a list")
    batch = [{"event_id": f"e{u}", "user_id": u, "item_id": "i"} for u in ("u1", "u2", "v")]
    with pytest.raises(redis.ResponseError, match="event 2: the history key"):
        stream.append(batch)
    assert all(cluster.xlen(s) == 0 for s in stream.keys.event_streams)


def test_filters_and_experiments_transactions(cluster):
    lists = ServedLists(cluster, "t")
    _publish(lists, "v1")
    _publish(lists, "v2", seed=1)
    filters = ItemFilters(cluster, "t")
    assert filters.update(unavailable=["3"], categories={"3": "Drama"}) == 1
    assert filters.read() == (1, {"3"}, {"3": "Drama"})
    exps = Experiments(cluster, "t")
    exps.create(Experiment.from_dict({"name": "ab", "salt": "s1", "arms": [
        {"name": "control", "version": "current", "allocation": 5000},
        {"name": "old", "version": "v1", "allocation": 5000}]}))
    exps.start("ab")
    assert lists.serving_state()[2].keys() == {"ab"} and lists.expire_old(0) == []
    exps.promote("ab", "old")
    assert lists.current() == "v1"


def test_a_node_killed_during_a_publish_leaves_the_pointer(own_redis_cluster):
    url, procs = own_redis_cluster
    client = connect(url, socket_timeout=1, socket_connect_timeout=1)
    lists = ServedLists(client, "t")
    _publish(lists, "v1")
    pointer_port = client.get_node_from_key(lists.keys.current).port
    victim = next(p for p in procs if str(pointer_port) not in " ".join(p.args))
    lists.write_shard("v2", "0", USERS[:120], *_lists(120, seed=1))
    victim.kill()
    victim.wait()
    with pytest.raises(redis.RedisError):
        lists.write_shard("v2", "1", USERS[120:], *_lists(120, seed=2))
    with pytest.raises((RuntimeError, redis.RedisError)):
        lists.flip("v2", len(USERS))
    survivor = redis.Redis(port=pointer_port)
    assert survivor.get(lists.keys.current) == b"v1"
    assert survivor.zrange(lists.keys.versions, 0, -1) == [b"v1"]
