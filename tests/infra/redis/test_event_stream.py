"""EventStream (infra/redis/event_stream.py) against a real Redis server process: the stream,
the per-user histories, resent ids, and (issue 15, finding 8) a batch of events is stored
whole or not at all. The drain into Parquet: tests/infra/test_events_log.py."""

from __future__ import annotations

import json
import re

import pytest
import redis

from infra.redis.event_stream import EventStream


def _events(n, user="u", start=0):
    return [{"user_id": f"{user}{i % 3}", "item_id": str(i), "timestamp": 1_700_000_000 + i,
             "event_type": "click", "event_id": f"e{i}"} for i in range(start, start + n)]


def test_events_go_to_stream_and_capped_history(redis_client):
    stream = EventStream(redis_client, "t")
    ids = stream.append([{"user_id": "a", "item_id": str(n), "timestamp": n}
                         for n in range(8)], history_len=5)
    assert len(ids) == 8 and redis_client.xlen("t:events") == 8
    assert stream.history("a") == ["3", "4", "5", "6", "7"]


def test_a_resent_event_id_is_stored_once(redis_client):
    stream = EventStream(redis_client, "t")
    first = stream.append(_events(4))
    again = stream.append(_events(2) + [{"user_id": "x", "item_id": "9", "timestamp": 1}])
    assert all(first) and again[:2] == [None, None] and again[2] is not None
    assert redis_client.xlen("t:events") == 5
    # Items reach the history once per stored event, newest last.
    assert stream.history("u0") == ["0", "3"]


def test_read_claim_and_ack(redis_client):
    stream = EventStream(redis_client, "t")
    ids = stream.append(_events(3))
    stream.ensure_group("g")
    stream.ensure_group("g")  # exists: no error
    assert stream.last_id() == ids[-1]
    read = stream.read("g", "old", 2)
    assert [sid for sid, _ in read] == ids[:2] and read[0][1]["item_id"] == "0"
    assert stream.claim("g", "new", 10) == 2  # the pending entries of "old"
    assert [sid for sid, _ in stream.read("g", "new", 10, after="0-0")] == ids[:2]
    stream.ack("g", ids[:2])
    assert redis_client.xlen("t:events") == 1 and stream.last_id() == ids[2]


# Issue 15, finding 8 ---------------------------------------------------------------------------
def _state(client, ns="t"):
    """The stream, the event id marks and the histories: what EventStream.append writes."""
    entries = [(i, f) for i, f in client.xrange(f"{ns}:events")]
    marks = sorted(k for k in client.scan_iter(count=10_000) if k.startswith(f"{ns}:eid:".encode()))
    hists = {k: client.lrange(k, 0, -1) for k in client.scan_iter(count=10_000)
             if k.startswith(f"{ns}:hist:".encode())}
    return entries, marks, hists


@pytest.mark.parametrize("field", ["event_id", "user_id", "item_id"])
def test_hardening_08_a_bad_event_stores_nothing_of_its_batch(redis_client, field):
    stream = EventStream(redis_client, "t")
    stream.append([{"event_id": "old-1", "user_id": "u", "item_id": "i0", "timestamp": 1}])
    before = _state(redis_client)
    bad = {"event_id": "bad-1", "user_id": "u", "item_id": "i2", "timestamp": 3}
    bad[field] = "\udfff"
    batch = [{"event_id": "good-1", "user_id": "u", "item_id": "i1", "timestamp": 2}, bad]
    error = None
    try:
        stream.append(batch)
    except (ValueError, redis.RedisError) as e:
        error = e
    assert _state(redis_client) == before, "part of a failed batch was stored"
    assert isinstance(error, ValueError) and str(error).startswith("event 1:"), error
    # The good event alone is stored (nothing remembered its id), and non-BMP text survives.
    assert stream.append([batch[0], {**batch[0], "event_id": "e-😀", "item_id": "😀"}])[0]
    assert stream.history("u") == ["i0", "i1", "😀"]


@pytest.mark.parametrize("bad", [b"[not json", b'{"a": 1}', b'["id", "u", "i", "field"]',
                                 b'["id", "u", null, "user_id", "u", "item_id", "i"]',
                                 b'["id", "u", "i", "user_id", 7]', "\udfff".encode("utf-8",
                                                                                  "surrogatepass")])
def test_hardening_08_the_script_checks_every_entry_before_its_first_write(redis_client, bad):
    stream = EventStream(redis_client, "t")
    good = json.dumps(["good-1", "u", "i1", "user_id", "u", "item_id", "i1"]).encode()
    error = None
    try:
        keys = [stream.keys.events, "t:hist:u", "t:eid:good-1", "t:hist:u", "t:eid:bad",
                "t:trend:1"]
        stream._append(keys=keys, args=[50, 86_400, "[0, 1]", 600, good, bad])
    except redis.ResponseError as e:
        error = e
    assert _state(redis_client) == ([], [], {}), "the entry before the bad one was written"
    assert error is not None and re.search("event 1: .*nothing was stored", str(error)), error


def test_hardening_08_a_key_of_the_wrong_type_stores_nothing(redis_client):
    stream = EventStream(redis_client, "t")
    redis_client.set("t:hist:v", "not a list")
    batch = [{"event_id": "e1", "user_id": "u", "item_id": "i"},
             {"event_id": "e2", "user_id": "v", "item_id": "i"}]
    with pytest.raises(redis.ResponseError) as error:
        stream.append(batch)
    assert redis_client.xlen("t:events") == 0, "the event before the bad one was written"
    assert not redis_client.exists("t:eid:e1") and not redis_client.exists("t:hist:u")
    assert "event 1: the history key of its user is not a list" in str(error.value)
