"""The impression stream: records in, the same fields out through the drain's group."""

import json

import pytest

from infra.redis.impressions import FIELDS, ImpressionStream


def _record(n: int) -> dict:
    return {"recommendation_id": f"{n:032x}", "user_id": f"u:{n}*", "experiment": "ab",
            "arm": "b", "version": "v2", "items": ["i1", "é:2"], "source": "cache",
            "status": 200, "latency_ms": 1.25, "ts_ms": 1_700_000_000_000 + n}


def test_add_then_read_through_the_group(redis_client):
    stream = ImpressionStream(redis_client, "t")
    ids = stream.add([_record(1), _record(2)])
    assert len(ids) == 2 and stream.last_id() == ids[-1]
    stream.ensure_group("nightly")
    entries = stream.read("nightly", "c", 10)
    assert [sid for sid, _ in entries] == ids
    fields = entries[1][1]
    assert set(fields) == set(FIELDS) and fields["user_id"] == "u:2*"
    assert json.loads(fields["items"]) == ["i1", "é:2"] and fields["status"] == "200"
    stream.ack("nightly", ids)
    assert redis_client.xlen("t:impressions") == 0
    assert sorted(k.decode() for k in redis_client.keys("*")) == ["t:impressions"]


def test_a_record_without_a_field_writes_nothing(redis_client):
    stream = ImpressionStream(redis_client, "t")
    bad = _record(2)
    del bad["version"]
    with pytest.raises(ValueError, match="impression without version"):
        stream.add([_record(1), bad])
    assert redis_client.exists("t:impressions") == 0
