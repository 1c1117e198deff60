"""The impression stream: a batch of records in, one entry out through the drain's group."""

import json

import pytest

from infra.redis.impressions import FIELDS, MAX_ROWS, ImpressionStream, is_batch


def _record(n: int) -> dict:
    return {"recommendation_id": f"{n:032x}", "user_id": f"u:{n}*", "experiment": "ab",
            "arm": "b", "version": "v2", "items": ["i1", "é:2"], "source": "cache",
            "status": 200, "latency_ms": 1.25, "ts_ms": 1_700_000_000_000 + n}


def test_a_batch_is_one_entry_read_through_the_group(redis_client):
    stream = ImpressionStream(redis_client, "t")
    (sid,) = stream.add([_record(1), _record(2)])
    assert redis_client.xlen("t:impressions") == 1 and stream.last_id() == sid
    stream.ensure_group("nightly")
    entries = stream.read("nightly", "c", 10)
    assert [s for s, _ in entries] == [sid]
    fields = entries[0][1]
    assert is_batch(fields) and set(fields) == {"rows"}
    rows = json.loads(fields["rows"])  # FIELDS' values in their order, JSON-typed
    assert [dict(zip(FIELDS, r, strict=True)) for r in rows] == [_record(1), _record(2)]
    stream.ack("nightly", [sid])
    assert redis_client.xlen("t:impressions") == 0
    assert sorted(k.decode() for k in redis_client.keys("*")) == ["t:impressions"]


def test_rows_in_fields_order_and_none_as_empty(redis_client):
    stream = ImpressionStream(redis_client, "t")
    row = ["a" * 32, "u", "", "", "", [], "error", 503, 0.5, 7]
    stream.add_rows([tuple(row)])
    stream.add([{**_record(3), "version": None}])
    first, second = (json.loads(f[b"rows"]) for _, f in redis_client.xrange("t:impressions"))
    assert first == [row] and second[0][FIELDS.index("version")] == ""
    assert stream.add([]) == [] and stream.add_rows([]) == []
    assert redis_client.xlen("t:impressions") == 2  # nothing written for no rows


def test_a_bad_batch_writes_nothing(redis_client):
    stream = ImpressionStream(redis_client, "t")
    bad = _record(2)
    del bad["version"]
    with pytest.raises(ValueError, match="impression without version"):
        stream.add([_record(1), bad])
    with pytest.raises(ValueError, match="10 values"):
        stream.add_rows([("a", "u")])
    with pytest.raises(ValueError, match="JSON cannot hold"):
        stream.add([{**_record(1), "latency_ms": object()}])
    assert redis_client.exists("t:impressions") == 0


def test_a_batch_over_max_rows_is_several_entries_written_together(redis_client):
    stream = ImpressionStream(redis_client, "t")
    ids = stream.add([_record(n) for n in range(2 * MAX_ROWS + 1)])
    entries = redis_client.xrange("t:impressions")
    assert [e[0].decode() for e in entries] == ids
    assert [len(json.loads(f[b"rows"])) for _, f in entries] == [MAX_ROWS, MAX_ROWS, 1]


def test_a_lone_surrogate_is_escaped_not_refused(redis_client):
    """JSON's ASCII escapes: a record Redis could not encode as UTF-8 does not sink its batch
    (the drain dead-letters that row alone)."""
    stream = ImpressionStream(redis_client, "t")
    stream.add([{**_record(1), "items": ["\udc80"]}, _record(2)])
    rows = json.loads(redis_client.xrange("t:impressions")[0][1][b"rows"])
    assert rows[0][FIELDS.index("items")] == ["\udc80"] and len(rows) == 2
