"""Issue 15, store side: hostile ids cannot widen a key pattern (1); a batch of events is
stored whole or not at all (8). Against a real Redis server process."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import redis

from infra import redis_store
from infra.redis_store import ListStore

# User ids that are glob patterns, key separators or both: each one, built into a SCAN
# pattern, would match keys it does not name.
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
    lists = ListStore(redis_client, "t")
    _write(lists, "v1", USERS, fill=1)
    lists.put_built("v1", np.zeros(len(USERS), np.uint32), np.zeros(len(USERS), np.uint64))
    lists.flip("v1", len(USERS), {"users": len(USERS)})
    served = _version_keys(redis_client, "t", "v1")
    assert len(served) == len(USERS) + 3  # the lists, meta, shards, built

    # A failed run: lists (hostile ids too), copies and the built record, never flipped.
    _write(lists, "v2", USERS, fill=2)
    lists.copy_lists("v1", "v2", "carry", ["u0", "*[^:shards"])
    lists.copy_lists("v1", "v2", "carry-remapped", ["u1:shards"], np.array([0, 2, 1]))
    lists.put_built("v2", np.zeros(3, np.uint32), np.zeros(3, np.uint64))
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
    lists = ListStore(redis_client, "t")
    _write(lists, "v1", ["x:shards"], fill=1)
    lists.flip("v1", 1, {})
    # Failed before any shard count: only the built record, the meta of a refused flip.
    lists.put_built("v2", np.zeros(2, np.uint32), np.zeros(2, np.uint64))
    with pytest.raises(RuntimeError, match="expected 2"):
        lists.flip("v2", 2, {})
    assert set(_version_keys(redis_client, "t", "v2")) == {b"t:v:v2:built", b"t:v:v2:meta"}
    dropped = lists.drop_unpublished()
    assert _version_keys(redis_client, "t", "v2") == {}, "a failed run's keys were kept"
    assert dropped == ["v2"] and lists.get_list("v1", "x:shards") is not None
    assert redis_client.smembers("t:started") == set()


@pytest.mark.parametrize("version", ["*", "v1:u:x", "v[", "v\\", "", "a?", "-v", "v" * 65])
def test_hardening_01_malformed_versions_are_refused_before_any_key(redis_client, version):
    lists = ListStore(redis_client, "t")
    _write(lists, "v1", ["u0"], fill=1)
    lists.flip("v1", 1, {})
    before = set(redis_client.keys())
    with pytest.raises(ValueError, match="malformed version"):
        lists.rollback(version)
    for write in (lambda: _write(lists, version, ["u0"], fill=2),
                  lambda: lists.copy_lists("v1", version, "carry", ["u0"]),
                  lambda: lists.copy_lists(version, "v2", "carry", ["u0"]),
                  lambda: lists.put_built(version, np.zeros(1, np.uint32),
                                          np.zeros(1, np.uint64)),
                  lambda: lists.flip(version, 1, {})):
        with pytest.raises(ValueError, match="malformed version"):
            write()
    assert set(redis_client.keys()) == before and lists.current() == "v1"


def test_hardening_01_planted_glob_versions_match_only_themselves(redis_client):
    lists = ListStore(redis_client, "t")
    for n in (1, 2, 3):
        _write(lists, f"v{n}", ["u0", "*"], fill=n)
        lists.flip(f"v{n}", 2, {})
    kept = {v: _version_keys(redis_client, "t", v) for v in ("v1", "v2", "v3")}
    # Written around the class (a hand edit, an old tool): neither record may widen a SCAN.
    redis_client.zadd("t:versions", {"*": 0, "v1:*": 0.5})
    redis_client.sadd("t:started", "*", "v2:u:*")
    assert lists.drop_unpublished() == []
    assert lists.expire_old(keep=3) == []
    assert {v: _version_keys(redis_client, "t", v) for v in kept} == kept
    assert redis_store.glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


# Finding 8 ------------------------------------------------------------------------------------
def _state(client, ns="t"):
    """The stream, the event id marks and the histories: what append_events writes."""
    entries = [(i, f) for i, f in client.xrange(f"{ns}:events")]
    marks = sorted(k for k in client.scan_iter(count=10_000) if k.startswith(f"{ns}:eid:".encode()))
    hists = {k: client.lrange(k, 0, -1) for k in client.scan_iter(count=10_000)
             if k.startswith(f"{ns}:hist:".encode())}
    return entries, marks, hists


@pytest.mark.parametrize("field", ["event_id", "user_id", "item_id"])
def test_hardening_08_a_bad_event_stores_nothing_of_its_batch(redis_client, field):
    lists = ListStore(redis_client, "t")
    lists.append_events([{"event_id": "old-1", "user_id": "u", "item_id": "i0", "timestamp": 1}])
    before = _state(redis_client)
    bad = {"event_id": "bad-1", "user_id": "u", "item_id": "i2", "timestamp": 3}
    bad[field] = "\udfff"
    batch = [{"event_id": "good-1", "user_id": "u", "item_id": "i1", "timestamp": 2}, bad]
    error = None
    try:
        lists.append_events(batch)
    except (ValueError, redis.RedisError) as e:
        error = e
    assert _state(redis_client) == before, "part of a failed batch was stored"
    assert isinstance(error, ValueError) and str(error).startswith("event 1:"), error
    # The good event alone is stored (nothing remembered its id), and non-BMP text survives.
    assert lists.append_events([batch[0], {**batch[0], "event_id": "e-😀", "item_id": "😀"}])[0]
    assert lists.history("u") == ["i0", "i1", "😀"]


@pytest.mark.parametrize("bad", [b"[not json", b'{"a": 1}', b'["id", "u", "i", "field"]',
                                 b'["id", "u", null, "user_id", "u", "item_id", "i"]',
                                 b'["id", "u", "i", "user_id", 7]', "\udfff".encode("utf-8",
                                                                                  "surrogatepass")])
def test_hardening_08_the_script_checks_every_entry_before_its_first_write(redis_client, bad):
    lists = ListStore(redis_client, "t")
    good = json.dumps(["good-1", "u", "i1", "user_id", "u", "item_id", "i1"]).encode()
    error = None
    try:
        lists._append(keys=[lists.events_key], args=["t", 50, 86_400, good, bad])
    except redis.ResponseError as e:
        error = e
    assert _state(redis_client) == ([], [], {}), "the entry before the bad one was written"
    assert error is not None and re.search("event 1: .*nothing was stored", str(error)), error


def test_hardening_08_a_key_of_the_wrong_type_stores_nothing(redis_client):
    lists = ListStore(redis_client, "t")
    redis_client.set("t:hist:v", "not a list")
    batch = [{"event_id": "e1", "user_id": "u", "item_id": "i"},
             {"event_id": "e2", "user_id": "v", "item_id": "i"}]
    with pytest.raises(redis.ResponseError) as error:
        lists.append_events(batch)
    assert redis_client.xlen("t:events") == 0, "the event before the bad one was written"
    assert not redis_client.exists("t:eid:e1") and not redis_client.exists("t:hist:u")
    assert "event 1: the history key of its user is not a list" in str(error.value)
