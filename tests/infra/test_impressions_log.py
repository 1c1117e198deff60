"""The drain of the impression stream (infra/redis/impressions.py) into Parquet
(infra/events_log.drain_impressions, the machinery of infra/stream_log.py), against a real
redis-server and a local artifact store: nothing lost, nothing twice, bad entries dead-lettered."""

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

from infra.events_log import drain_events, drain_impressions, read_impressions_log
from infra.redis.event_stream import EventStream
from infra.redis.impressions import ImpressionStream
from infra.store import LocalStore


def _impressions(n, start=0):
    return [{"recommendation_id": f"r{i:031d}", "user_id": f"u{i % 3}", "experiment": "exp",
             "arm": "a" if i % 2 else "b", "version": "v1", "items": [str(i), str(i + 1)],
             "source": "cache", "status": 200, "latency_ms": 1.5 + i,
             "ts_ms": 1_700_000_000_000 + i}
            for i in range(start, start + n)]


def _frame(store, key):
    return pq.read_table(io.BytesIO(store.get_bytes(key))).to_pandas()


def test_drain_writes_typed_rows_then_empties_the_stream(redis_client, tmp_path):
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.add(_impressions(5))
    stats = drain_impressions(stream, store, batch_size=2)
    assert stats["impressions"] == 5 and stats["acknowledged"] == 5 and len(stats["files"]) == 3
    assert all(f.startswith("impressions/") for f in stats["files"])
    assert redis_client.xlen("t:impressions") == 0
    df = read_impressions_log(store).sort_values("ts_ms")
    first = df.iloc[0]
    assert list(first["items"]) == ["0", "1"] and first["status"] == 200
    assert (first["latency_ms"], first["ts_ms"], first["arm"]) == (1.5, 1_700_000_000_000, "b")
    assert drain_impressions(stream, store)["impressions"] == 0


def test_a_lost_reply_or_a_crash_between_write_and_ack_loses_and_duplicates_nothing(
        redis_client, tmp_path, monkeypatch):
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.add(_impressions(10))
    real_ack = stream.ack

    def lost_reply(group, ids):  # the XACK ran, its reply never came back
        real_ack(group, ids)
        raise ConnectionError("reply lost")

    monkeypatch.setattr(stream, "ack", lost_reply)
    with pytest.raises(ConnectionError):
        drain_impressions(stream, store, batch_size=4)
    monkeypatch.setattr(stream, "ack", lambda *a: (_ for _ in ()).throw(ConnectionError("killed")))
    with pytest.raises(ConnectionError):  # the next batch is written, then the drain dies
        drain_impressions(stream, store, batch_size=4)
    monkeypatch.undo()
    stream.add(_impressions(3, start=10))
    stats = drain_impressions(stream, store, batch_size=4)
    assert stats["already_written"] == 4 and stats["impressions"] == 5
    assert redis_client.xlen("t:impressions") == 0
    files = [k for k in store.list("impressions") if "/dead/" not in k]
    ids = pd.concat([_frame(store, k) for k in files])["recommendation_id"]
    assert sorted(ids) == sorted(r["recommendation_id"] for r in _impressions(13))  # once each


def test_bad_entries_are_dead_lettered_with_their_reason(redis_client, tmp_path):
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.add(_impressions(2))
    good = {k: str(v) for k, v in _impressions(1, start=7)[0].items() if k != "items"}
    for change in ({"items": "not json"}, {"items": '["ok", {"x": 1}]'}, {"status": "abc"},
                   {"latency_ms": "nan"}, {"ts_ms": "-5"}, {"user_id": ""},
                   {"version": "v1:*"}):
        redis_client.xadd("t:impressions", {**good, "items": "[]", **change})
    stream.add(_impressions(2, start=2))
    stats = drain_impressions(stream, store)
    assert stats["impressions"] == 4 and stats["dead"] == 7
    assert redis_client.xlen("t:impressions") == 0
    dead = _frame(store, next(k for k in store.list("impressions") if "/dead/" in k))
    assert dead["reason"].tolist() == [
        "items is not a JSON array", "items: item_id must be a string or a finite number",
        "status is not an integer", "latency_ms out of range [0, 3.6e+06]",
        "ts_ms out of range [0, 4.10244e+12]", "missing user_id", "malformed version"]
    assert len(read_impressions_log(store)) == 4


def test_drains_take_turns_under_the_lock(redis_client, tmp_path):
    """A second drain (a report beside the nightly) waits for the lock, then gives up naming
    it; the events and impressions drains of one namespace share it."""
    store = LocalStore(str(tmp_path))
    lock = redis_client.lock("t:drain:lock", timeout=30)
    assert lock.acquire()
    try:
        with pytest.raises(TimeoutError, match="t:drain:lock"):
            from infra.events_log import IMPRESSIONS
            from infra.stream_log import drain
            drain(ImpressionStream(redis_client, "t"), store, IMPRESSIONS, lock_wait=0.2)
    finally:
        lock.release()
    EventStream(redis_client, "t").append([{"user_id": "u", "item_id": "i", "timestamp": 5}])
    assert drain_events(EventStream(redis_client, "t"), store)["events"] == 1
    assert redis_client.exists("t:drain:lock") == 0  # released


def test_a_file_that_is_not_of_the_log_is_named(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put_bytes("impressions/1-0_2-0.parquet", b"not parquet")
    with pytest.raises(OSError, match=r"impressions/1-0_2-0.parquet: not a readable Parquet"):
        read_impressions_log(store)
