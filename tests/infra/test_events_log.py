"""The drain of the event stream (infra/redis/event_stream.py) into Parquet (infra/events_log.py),
against a real redis-server and a local artifact store."""

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

from infra.events_log import drain_events, read_events_log
from infra.redis.event_stream import EventStream
from infra.store import LocalStore
from models.schema import drop_duplicates, validate_batch


def _events(n, user="u", start=0):
    return [{"user_id": f"{user}{i % 3}", "item_id": str(i), "timestamp": 1_700_000_000 + i,
             "event_type": "click", "event_id": f"e{i}"} for i in range(start, start + n)]


def _frame(store, key):
    return pq.read_table(io.BytesIO(store.get_bytes(key))).to_pandas()


def test_drain_writes_the_interactions_schema_then_empties_the_stream(redis_client, tmp_path):
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(7) + [{"user_id": "w", "item_id": "5", "timestamp": 3,
                                 "weight": 2.5, "recommendation_id": "r1", "event_id": "w1"}])
    stats = drain_events(stream, store, batch_size=3)
    assert stats["events"] == 8 and stats["acknowledged"] == 8 and len(stats["files"]) == 3
    assert redis_client.xlen("t:events") == 0
    df = read_events_log(store)
    assert sorted(df["event_id"]) == sorted([f"e{i}" for i in range(7)] + ["w1"])
    w = df[df.event_id == "w1"].iloc[0]
    assert (w.weight, w.recommendation_id, w.timestamp) == (2.5, "r1", 3)
    clean, dead = validate_batch(df, "drained")  # what the nightly job will read
    assert len(clean) == 8 and dead == [] and drop_duplicates(clean)[1] == []
    assert drain_events(stream, store)["events"] == 0  # nothing left


def test_a_crash_between_write_and_ack_loses_and_duplicates_nothing(redis_client, tmp_path,
                                                                    monkeypatch):
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(10))

    def crash(*args):
        raise ConnectionError("killed after the write")

    monkeypatch.setattr(stream, "ack", crash)
    with pytest.raises(ConnectionError):
        drain_events(stream, store, batch_size=4)
    assert len(store.list("events")) == 1  # the first batch is durable, not acknowledged
    monkeypatch.undo()
    stream.append(_events(3, start=10))  # more arrive before the rerun
    stats = drain_events(stream, store, batch_size=4)
    assert stats["already_written"] == 4 and stats["events"] == 9
    assert redis_client.xlen("t:events") == 0
    frames = [_frame(store, k) for k in store.list("events")]
    ids = pd.concat(frames)["event_id"].tolist()
    assert sorted(ids) == sorted(f"e{i}" for i in range(13))  # each event exactly once


def test_nothing_is_acknowledged_when_the_write_fails(redis_client, tmp_path, monkeypatch):
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(5))

    def full(key, data):
        raise OSError("disk full")

    monkeypatch.setattr(store, "put_bytes", full)
    with pytest.raises(OSError):
        drain_events(stream, store)
    assert redis_client.xlen("t:events") == 5
    monkeypatch.undo()
    assert drain_events(stream, store)["events"] == 5
    assert redis_client.xlen("t:events") == 0


def test_pending_entries_of_another_consumer_are_taken_over(redis_client, tmp_path):
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(6))
    stream.ensure_group("nightly")
    assert len(stream.read("nightly", "old-worker", 4)) == 4  # read, then it died
    stats = drain_events(stream, store)
    assert stats["events"] == 6 and redis_client.xlen("t:events") == 0
    assert redis_client.xpending("t:events", "nightly")["pending"] == 0


def test_invalid_stream_entries_become_dead_letters(redis_client, tmp_path):
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(2))
    redis_client.xadd("t:events", {"user_id": "z", "timestamp": "1"})  # written by hand
    stats = drain_events(stream, store)
    assert stats["events"] == 2 and stats["dead"] == 1
    dead = _frame(store, next(k for k in store.list("events") if "/dead/" in k))
    assert dead["reason"].tolist() == ["missing item_id"]


POISON = [  # (event as the ingestion API stores it, the reason its dead letter gives)
    ({"user_id": "p", "item_id": "1", "timestamp": 1e20, "event_id": "p1"},
     "timestamp out of range"),
    ({"user_id": "p", "item_id": "1", "timestamp": "99999999999999999999", "event_id": "p2"},
     "timestamp out of range"),
    ({"user_id": "p", "item_id": "1", "timestamp": -1e30, "event_id": "p3"},
     "timestamp out of range"),
    ({"user_id": "p", "item_id": "1", "timestamp": 1.7e12, "event_id": "p4"},  # milliseconds
     "timestamp out of range"),
    ({"user_id": "p", "item_id": "1", "timestamp": True, "event_id": "p5"},
     "unparseable timestamp"),
    ({"user_id": "p", "item_id": "1", "timestamp": 5, "weight": 1e39, "event_id": "p6"},
     "weight out of range [0, 1000]"),
    ({"user_id": "p", "item_id": "1", "timestamp": 5, "weight": "nan", "event_id": "p7"},
     "non-numeric weight"),
    ({"user_id": "a\x00b", "item_id": "1", "timestamp": 5, "event_id": "p8"},
     "user_id holds a control character or a lone surrogate"),
    ({"user_id": "p", "item_id": "1", "timestamp": 5, "event_id": "e" * 300},
     "event_id is longer than 256 characters"),
]


def test_hardening_02_poison_events_are_dead_lettered_and_the_drain_goes_on(redis_client,
                                                                            tmp_path):
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(2))
    stream.append([event for event, _ in POISON])
    redis_client.xadd("t:events", {"user_id": "z", "item_id": "1",
                                   "timestamp": "9.3e18"})  # written by hand
    stream.append(_events(2, start=2))
    stats = drain_events(stream, store, batch_size=4)
    assert stats["events"] == 4 and stats["dead"] == len(POISON) + 1
    assert redis_client.xlen("t:events") == 0
    assert redis_client.xpending("t:events", "nightly")["pending"] == 0
    assert sorted(read_events_log(store)["event_id"]) == ["e0", "e1", "e2", "e3"]
    dead = pd.concat([_frame(store, k) for k in store.list("events/dead")])
    reasons = sorted(r.split(":")[0] for r in dead["reason"])
    assert reasons == sorted([r for _, r in POISON] + ["timestamp out of range"])
    # Nothing is left to stall the next nightly.
    stream.append(_events(1, start=9))
    assert drain_events(stream, store)["events"] == 1


def test_hardening_02_a_row_parquet_cannot_hold_is_dead_lettered(redis_client, tmp_path,
                                                                 monkeypatch):
    """Should validation ever let a value through that the Parquet schema cannot hold (an
    int64 overflow), the entry is dead-lettered; its neighbours reach the file."""
    import infra.events_log as events_log

    real = events_log.validate_interaction

    def permissive(fields):
        row, reason = real(fields)
        if fields.get("item_id") == "overflow":
            return {**real({**fields, "timestamp": "5"})[0], "timestamp": 10**20}, None
        return row, reason

    monkeypatch.setattr(events_log, "validate_interaction", permissive)
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(2) + [{"user_id": "o", "item_id": "overflow",
                                 "timestamp": 5, "event_id": "o1"}] + _events(2, start=2))
    stats = drain_events(stream, store)
    assert stats["events"] == 4 and stats["dead"] == 1
    assert redis_client.xlen("t:events") == 0
    assert sorted(read_events_log(store)["event_id"]) == ["e0", "e1", "e2", "e3"]
    dead = _frame(store, store.list("events/dead")[0])
    assert dead["reason"].str.startswith("cannot be written as a row").tolist() == [True]
    assert "overflow" in dead["row"].iloc[0]


def test_hardening_02_an_entry_that_is_not_utf8_is_dead_lettered(redis_client, tmp_path):
    """Bytes that are not UTF-8 (a hand-written entry) go to events/dead/, not into a
    UnicodeDecodeError that leaves the entry pending before every later drain."""
    stream, store = EventStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.append(_events(2))
    redis_client.xadd("t:events", {b"user_id": b"\xff\xfeu", b"item_id": b"1",
                                   b"timestamp": b"1700000000"})
    stream.append(_events(2, start=2))
    stats = drain_events(stream, store)
    assert stats["events"] == 4 and stats["dead"] == 1
    assert redis_client.xlen("t:events") == 0
    assert sorted(read_events_log(store)["event_id"]) == ["e0", "e1", "e2", "e3"]
