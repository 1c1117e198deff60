"""Issue #6's acceptance path in small: events posted over HTTP to `recsys serve` under
/recommend load, the server SIGKILLed midway and restarted, then a drain that dies after a
write and a second one; every acknowledged event must be in the Parquet files exactly once
(benchmarks/events.py runs the same code with 100,000 events)."""

import os

from benchmarks.events import Server, build_small_bundle, count_rows, make_event, run_scenario
from infra.events_log import EVENTS_SCHEMA
from infra.parquet import STREAM_DEAD_SCHEMA, parquet_bytes
from infra.store import LocalStore


def test_acknowledged_events_reach_parquet_exactly_once_across_a_server_kill(redis_url,
                                                                              tmp_path):
    r = run_scenario("kill", redis_url, str(tmp_path), events=2000, batch=100, clients=4,
                     load_clients=1, kill=True, users=50, items=100, drain_batch=500)
    assert r["kill"]["pids_killed"] == 3 and r["kill"]["at_acknowledged"] >= 1000
    assert r["acknowledged"] == r["rows_in_parquet"] == r["read_events_log_rows"] == 2000
    assert (r["missing"], r["duplicated_rows"], r["unknown"], r["mismatched"]) == (0, 0, 0, 0)
    # The drain died with one file written and not acknowledged; the rerun did not rewrite it.
    assert r["drain"]["crash"]["pending"] > 0 and r["drain"]["final"]["already_written"] > 0
    assert r["recommend"]["ok"] > 0
    assert r["checks"]["passed"], r["checks"]


# Loaded by the server's Python from PYTHONPATH: gunicorn forks the second worker 1.5 s after
# the first (normally up to 0.1 s), so a start that only waits for /health returns too early.
SLOW_SECOND_FORK = """
import time

import gunicorn.arbiter

_spawn = gunicorn.arbiter.Arbiter.spawn_worker


def _slow_spawn(self):
    if self.WORKERS:
        time.sleep(1.5)
    return _spawn(self)


gunicorn.arbiter.Arbiter.spawn_worker = _slow_spawn
"""


def test_hardening_16_server_start_and_kill_wait_for_every_worker(redis_url, tmp_path):
    from benchmarks.serving import publish_lists
    from infra.redis.lists import ServedLists
    from infra.redis_server import free_port
    from infra.store import open_store

    store, lists = open_store(str(tmp_path / "artifacts")), ServedLists.from_url(redis_url, "h16")
    publish_lists(lists, store, "h16-0001", build_small_bundle(store, "h16-0001", 20, 30, 8, 0),
                  5)
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(SLOW_SECOND_FORK)
    path = os.pathsep.join([str(tmp_path / "slow"), os.environ.get("PYTHONPATH", "")])
    server = Server({"REDIS_URL": redis_url, "RECSYS_STORE": store.uri, "RECSYS_NAMESPACE": "h16",
                     "WORKERS": "2", "THREADS": "2", "PYTHONPATH": path}, free_port(),
                    str(tmp_path / "serve.log"))
    try:
        server.start()
        assert len(server.pids()) == 3, "start() returned before gunicorn forked both workers"
        assert len(server.kill()) == 3
        server.start()
        assert len(server.pids()) == 3
    finally:
        server.stop()


def test_the_row_count_sees_a_row_written_twice(tmp_path):
    store = LocalStore(str(tmp_path))
    rows = [{**make_event("t", n, 5, 7), "weight": 1.0, "stream_id": f"1-{n}",
             "recommendation_id": None} for n in range(3)]
    store.put_bytes("events/1-0_1-1.parquet", parquet_bytes(rows[:2], EVENTS_SCHEMA))
    store.put_bytes("events/1-1_1-2.parquet", parquet_bytes(rows[1:], EVENTS_SCHEMA))
    dead = [{"stream_id": "1-9", "reason": "missing item_id", "row": "{}"}]
    store.put_bytes("events/dead/1-9_1-9.parquet", parquet_bytes(dead, STREAM_DEAD_SCHEMA))
    counts, content, dead_rows = count_rows(store)
    assert counts == {"t-0000000": 1, "t-0000001": 2, "t-0000002": 1} and dead_rows == 1
    assert content["t-0000002"] == ("2", str(2 * 7919 % 7), 1_750_000_002)
