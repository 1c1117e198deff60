"""The impression writer (functions/impression_log.py) against real redis-server processes:
batches written (one stream entry each), records kept while Redis is down and written once it
is back, the oldest dropped (and counted) only when the queue is full, the rest sent at close."""

import json
import time

import redis

from functions.impression_log import ImpressionLog, record
from infra.redis.impressions import FIELDS, ImpressionStream
from infra.redis_server import free_port, local_redis


def _record(n: int) -> str:
    return record(f"{n:032x}", f"u{n}", "", "", "v1", [f"i{n}", "i0"], "cache", 200, 1.5,
                  1_700_000_000_000 + n)


def _rows(client) -> list[dict]:
    """Every impression in the stream, in order, as a dict of FIELDS."""
    return [dict(zip(FIELDS, r, strict=True)) for _, f in client.xrange("t:impressions")
            for r in json.loads(f[b"rows"])]


def _wait_len(client, n: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while len(_rows(client)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(_rows(client))


def test_records_are_written_in_order_with_every_field(redis_client):
    # flush_s: only a full batch wakes the thread, which then sends the whole queue
    writer = ImpressionLog(ImpressionStream(redis_client, "t"), batch=7, flush_s=3600)
    for n in range(20):
        writer.add(_record(n))
    assert _wait_len(redis_client, 20) == 20
    rows = _rows(redis_client)
    assert [len(json.loads(f[b"rows"])) for _, f in redis_client.xrange("t:impressions")] \
        == [7, 7, 6]  # an entry per batch
    assert rows[0] == {"recommendation_id": "0" * 32, "user_id": "u0", "experiment": "",
                       "arm": "", "version": "v1", "items": ["i0", "i0"], "source": "cache",
                       "status": 200, "latency_ms": 1.5, "ts_ms": 1700000000000}
    assert [r["user_id"] for r in rows] == [f"u{n}" for n in range(20)]
    writer.close()


def test_records_wait_while_redis_is_down_then_are_written(tmp_path):
    port = free_port()
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    writer = ImpressionLog(ImpressionStream(client, "t"), batch=4)
    for n in range(10):
        writer.add(_record(n))
    deadline = time.monotonic() + 10
    while not writer.failures and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.failures and len(writer.queue) + len(writer._pending) == 10  # tried, kept
    assert writer._thread.is_alive()
    with local_redis(port) as url:
        up = redis.Redis.from_url(url)
        for n in range(10, 12):  # more while it comes back
            writer.add(_record(n))
        assert _wait_len(up, 12) == 12
        users = [r["user_id"] for r in _rows(up)]
        assert sorted(users) == sorted(f"u{n}" for n in range(12))
        writer.close()


def test_a_full_queue_drops_the_oldest_and_counts_them(redis_client):
    port = free_port()  # nothing listens: every try fails
    client = redis.Redis(port=port, socket_timeout=0.2, socket_connect_timeout=0.2)
    counted = []  # what the metric is told (functions/main.py passes the Recorder's method)
    # flush_s: the thread never takes a batch during the test
    writer = ImpressionLog(ImpressionStream(client, "t"), max_queue=5, batch=100,
                           flush_s=3600, dropped=counted.append)
    for n in range(8):
        writer.add(_record(n))
    assert sum(counted) == writer.dropped == 3
    assert [json.loads(r)[1] for r in writer.queue] == [f"u{n}" for n in range(3, 8)]
    writer.stream = ImpressionStream(redis_client, "t")  # Redis back: close sends the rest
    writer.close()
    assert [r["user_id"] for r in _rows(redis_client)] == [f"u{n}" for n in range(3, 8)]


def test_a_record_is_the_json_of_its_row_whatever_its_text():
    """record writes the row's JSON by hand: json reads it back as the values given (any
    text, non-ASCII and lone surrogates escaped), in FIELDS order."""
    row = record("r" * 32, 'u"\\é\n\udc80', "exp", "B", None, ["i1", "ü", ""], "cache", 200,
                 1.23456, 1_700_000_000_123)
    assert row.isascii()
    assert dict(zip(FIELDS, json.loads(row), strict=True)) == {
        "recommendation_id": "r" * 32, "user_id": 'u"\\é\n\udc80', "experiment": "exp",
        "arm": "B", "version": "", "items": ["i1", "ü", ""], "source": "cache", "status": 200,
        "latency_ms": 1.235, "ts_ms": 1_700_000_000_123}
    assert json.loads(record("r", "u", "", "", "v", [], "error", 503, float("nan"), 1))[8] == -1
