"""The drain of the impression stream (infra/redis/impressions.py) into Parquet
(infra/events_log.drain_impressions, the machinery of infra/stream_log.py), against a real
redis-server and a local artifact store: nothing lost, nothing twice, bad rows dead-lettered
(a batch's good rows written), entries of the format before batches still drained."""

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from infra.events_log import drain_events, drain_impressions, read_impressions_log
from infra.redis.event_stream import EventStream
from infra.redis.impressions import FIELDS, ImpressionStream
from infra.store import LocalStore


def _impressions(n, start=0):
    return [{"recommendation_id": f"r{i:031d}", "user_id": f"u{i % 3}", "experiment": "exp",
             "arm": "a" if i % 2 else "b", "version": "v1", "items": [str(i), str(i + 1)],
             "source": "cache", "status": 200, "latency_ms": 1.5 + i,
             "ts_ms": 1_700_000_000_000 + i}
            for i in range(start, start + n)]


def _frame(store, key):
    return pq.read_table(io.BytesIO(store.get_bytes(key))).to_pandas()


def _add_each(stream, records):
    """One entry per record (a batch of one each)."""
    for r in records:
        stream.add([r])


def _add_single(client, records):
    """Entries of the format before batches: one answer per entry, every field text."""
    for r in records:
        client.xadd("t:impressions", {**{k: str(v) for k, v in r.items()},
                                      "items": json.dumps(r["items"])})


def test_drain_writes_typed_rows_then_empties_the_stream(redis_client, tmp_path):
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    stream.add(_impressions(3))
    _add_each(stream, _impressions(2, start=3))
    stats = drain_impressions(stream, store, batch_size=2)  # a file: whole entries, >= 2 rows
    assert stats["impressions"] == 5 and stats["acknowledged"] == 3
    assert [len(_frame(store, f)) for f in stats["files"]] == [3, 2]
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
    _add_each(stream, _impressions(10))
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
    stream.add(_impressions(3, start=10))  # one entry of 3
    stats = drain_impressions(stream, store, batch_size=4)
    assert stats["already_written"] == 4 and stats["impressions"] == 5  # 2 entries + 3 rows
    assert redis_client.xlen("t:impressions") == 0
    files = [k for k in store.list("impressions") if "/dead/" not in k]
    ids = pd.concat([_frame(store, k) for k in files])["recommendation_id"]
    assert sorted(ids) == sorted(r["recommendation_id"] for r in _impressions(13))  # once each


def test_bad_single_entries_are_dead_lettered_with_their_reason(redis_client, tmp_path):
    """Entries of the format before batches (one answer each, text fields)."""
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


def test_a_bad_row_of_a_batch_is_dead_lettered_and_its_good_rows_written(redis_client, tmp_path):
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    good = _impressions(4)
    rows = [[r[f] for f in FIELDS] for r in good]
    status, items = FIELDS.index("status"), FIELDS.index("items")
    bad = [[*rows[0][:status], True, *rows[0][status + 1:]],  # JSON true is no status
           [*rows[0][:status], 200.5, *rows[0][status + 1:]],  # nor a fraction
           [*rows[0][:items], {"i": 1}, *rows[0][items + 1:]],  # items no array
           {"recommendation_id": "x"}, rows[0][:3], "junk"]
    redis_client.xadd("t:impressions", {"rows": json.dumps(
        [rows[0], *bad[:3], rows[1], *bad[3:], rows[2]])})
    redis_client.xadd("t:impressions", {"rows": "[not json"})
    redis_client.xadd("t:impressions", {"rows": json.dumps({"a": 1})})
    redis_client.xadd("t:impressions", {"rows": json.dumps([rows[3]])})
    stats = drain_impressions(stream, store)
    assert stats["impressions"] == 4 and stats["dead"] == 8 and stats["acknowledged"] == 4
    assert redis_client.xlen("t:impressions") == 0
    df = read_impressions_log(store).sort_values("ts_ms")
    assert df["recommendation_id"].tolist() == [r["recommendation_id"] for r in good]
    assert df["stream_id"].tolist()[:3] == [df["stream_id"].iloc[0]] * 3  # one entry's rows
    dead = _frame(store, next(k for k in store.list("impressions") if "/dead/" in k))
    reasons = dead["reason"].tolist()
    assert reasons[:6] == [
        "row 1: status is not an integer", "row 2: status is not an integer",
        "row 3: items is not a JSON array of at most 10000 ids",
        "row 5: not a JSON array of the 10 impression fields",
        "row 6: not a JSON array of the 10 impression fields",
        "row 7: not a JSON array of the 10 impression fields"]
    assert reasons[6:] == ["rows is not a JSON array of at most 1000 rows"] * 2
    assert dead["stream_id"].nunique() == 3  # the batch's bad rows name their entry


def test_single_entries_already_in_the_stream_drain_beside_batches(redis_client, tmp_path):
    """A stream written before batches still drains, mixed with the batches written since."""
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    old = _impressions(5)
    _add_single(redis_client, old[:3])
    stream.add(_impressions(4, start=5))
    _add_single(redis_client, old[3:])
    stats = drain_impressions(stream, store)
    assert stats["impressions"] == 9 and stats["acknowledged"] == 6 and stats["dead"] == 0
    assert redis_client.xlen("t:impressions") == 0
    df = read_impressions_log(store).sort_values("ts_ms").reset_index(drop=True)
    want = pd.DataFrame(_impressions(9))
    for column in want.columns:
        assert [list(v) if column == "items" else v for v in df[column]] == \
            want[column].tolist(), column


def test_a_file_takes_whole_entries_until_it_holds_batch_size_rows(redis_client, tmp_path):
    stream, store = ImpressionStream(redis_client, "t"), LocalStore(str(tmp_path))
    sizes = [3, 1, 2, 5, 1, 1]
    start = 0
    for n in sizes:
        stream.add(_impressions(n, start=start))
        start += n
    _add_single(redis_client, _impressions(4, start=start))
    stats = drain_impressions(stream, store, batch_size=4)
    assert [len(_frame(store, f)) for f in stats["files"]] == [4, 7, 4, 2]
    assert stats["impressions"] == start + 4 and redis_client.xlen("t:impressions") == 0


@pytest.mark.cluster
def test_batches_drain_from_a_redis_cluster(redis_cluster_url, tmp_path):
    """The stream is one key (hash-tagged {NS}) of a 3-node cluster: its batches go in and
    drain out as on one server."""
    from infra.redis.client import connect

    cluster = connect(redis_cluster_url)
    cluster.flushall(target_nodes=cluster.PRIMARIES)
    try:
        stream, store = ImpressionStream(cluster, "t"), LocalStore(str(tmp_path))
        stream.add(_impressions(3))
        cluster.xadd(stream.stream, {**{k: str(v) for k, v in _impressions(1, 3)[0].items()},
                                     "items": "[]"})
        stream.add(_impressions(2, start=4))
        stats = drain_impressions(stream, store)
        assert stats["impressions"] == 6 and stats["acknowledged"] == 3
        assert cluster.xlen(stream.stream) == 0
        assert sorted(read_impressions_log(store)["recommendation_id"]) == sorted(
            r["recommendation_id"] for r in _impressions(6))
        assert drain_impressions(stream, store)["impressions"] == 0  # nothing twice
    finally:
        cluster.flushall(target_nodes=cluster.PRIMARIES)


def test_overlapping_files_cover_every_id_of_their_union():
    """Files whose id ranges overlap (a drain that died mid-way) still tell every entry
    written: one bisection over their merged ranges."""
    from infra.stream_log import _covered, _union

    ranges = _union(sorted([((1, 0), (10, 0)), ((5, 0), (7, 0)), ((12, 0), (13, 0))]))
    starts = [r[0] for r in ranges]
    assert ranges == [((1, 0), (10, 0)), ((12, 0), (13, 0))]
    assert [_covered((t, 0), ranges, starts) for t in (0, 1, 8, 10, 11, 12, 14)] == [
        False, True, True, True, False, True, False]
