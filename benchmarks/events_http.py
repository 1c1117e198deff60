"""What the event benchmarks share: the events they post, the `recsys serve` process they post
to, the client threads that post and ask for recommendations, and the count of the drained log.
benchmarks/events.py (server killed) and benchmarks/events_redis.py (Redis killed) use it.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np

log = logging.getLogger("benchmarks.events")
BASE_TS = 1_750_000_000
RETRY = (500, 502, 503, 504)


def make_event(scenario: str, n: int, users: int, items: int) -> dict:
    """Event number n of a scenario; its content follows from n, so a row can be checked."""
    return {"user_id": str(n % users), "item_id": str(n * 7919 % items), "event_type": "click",
            "timestamp": BASE_TS + n, "event_id": f"{scenario}-{n:07d}"}


def build_small_bundle(store, version: str, n_users: int, n_items: int, dim: int, seed: int):
    """A random MF bundle without the LiteRT tower (no TensorFlow needed), written by the MF
    kind's export (models.kinds.write_bundle); returns the model."""
    from infra.bundle import BundleWriter
    from models.kinds import mf, write_bundle

    rng = np.random.default_rng(seed)
    factors = rng.normal(0, 0.3, (n_users, dim)), rng.normal(0, 0.3, (n_items, dim))
    fit = mf.fit_from_factors(range(n_users), range(n_items), *factors,
                              rng.normal(0, 1, n_items), seed=seed)
    fit.popular = fit.popular[:100]
    write_bundle(mf.KIND, fit, BundleWriter(store, version), k=20)
    return fit.model


class Server:
    """`recsys serve` in a process group of its own, so one kill takes the master and workers."""

    def __init__(self, env: dict, port: int, log_path: str):
        self.env, self.port, self.log_path = {**os.environ, **env}, port, log_path
        self.base, self.proc = f"http://127.0.0.1:{port}", None
        self.workers = int(self.env.get("WORKERS", 1))

    def start(self, timeout: float = 120) -> float:
        """Starts it; returns the seconds until /health answers 200 and every worker exists.

        gunicorn's master forks its workers one by one, up to 0.1 s apart, and the first one
        answers /health before the last is forked: a kill right after that would miss a worker.
        """
        started = time.perf_counter()
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    conn.close()
                    break
            conn.close()
            if self.proc.poll() is not None or time.perf_counter() - started > timeout:
                raise RuntimeError(f"recsys serve did not start; see {self.log_path}")
            time.sleep(0.02)
        self.wait_for_workers(max(1.0, timeout - (time.perf_counter() - started)))
        return time.perf_counter() - started

    def pids(self) -> list[int]:
        """The master's pid, then its children's (from every thread of the master)."""
        pid, children = self.proc.pid, []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                    children += map(int, f.read().split())
        return [pid, *sorted(set(children))]

    def wait_for_workers(self, timeout: float = 30) -> list[int]:
        """Polls the process tree until the master has all its workers; returns the pids.

        Raises:
            RuntimeError: they are not all there after `timeout` seconds (see the log).
        """
        deadline = time.perf_counter() + timeout
        while len(pids := self.pids()) < self.workers + 1:
            if self.proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"recsys serve has {len(pids) - 1} of {self.workers} "
                                   f"workers after {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.01)
        return pids

    def kill(self) -> list[int]:
        """SIGKILLs the whole process group (once every worker is up); returns its pids."""
        pids = self.wait_for_workers()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return pids

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


class Tally:
    """What the clients saw, shared between their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.stored = self.duplicates = self.posts = self.retries = self.failed = 0
        self.post_ms: list[float] = []
        self.recommend: Counter = Counter()
        self.recommend_ms: list[float] = []


def _connect(port: int, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def post_batches(port: int, jobs: queue.Queue, tally: Tally, timeout: float = 30) -> None:
    """A client thread: sends each batch until a 200 acknowledges it (same event ids)."""
    conn = _connect(port, timeout)
    headers = {"Content-Type": "application/json"}
    while True:
        try:
            events = jobs.get_nowait()
        except queue.Empty:
            break
        body, attempt = json.dumps({"events": events}).encode(), 0
        while True:
            started = time.perf_counter()
            try:
                conn.request("POST", "/events", body, headers)
                resp = conn.getresponse()
                status, answer = resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                status, answer = 0, b""
                conn.close()
                conn = _connect(port, timeout)
            ms = 1000 * (time.perf_counter() - started)
            if status == 200:
                reply = json.loads(answer)
                with tally.lock:
                    tally.posts += 1
                    tally.acked += reply["event_ids"]
                    tally.stored += reply["stored"]
                    tally.duplicates += reply["duplicates"]
                    tally.post_ms.append(ms)
                break
            with tally.lock:
                tally.posts += 1
                tally.retries += status == 0 or status in RETRY
                tally.failed += status != 0 and status not in RETRY
            if status != 0 and status not in RETRY:
                log.error("batch refused with %d: %s", status, answer[:300])
                break
            attempt += 1
            time.sleep(min(0.5, 0.01 * 2 ** attempt))
    conn.close()


def recommend_load(port: int, users: int, stop: threading.Event, tally: Tally, seed: int) -> None:
    """A client thread asking /recommend for random users until `stop` is set."""
    rng, conn = np.random.default_rng(seed), _connect(port, 10)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn.request("GET", f"/recommend?k=10&user_id={rng.integers(users)}")
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = _connect(port, 10)
            time.sleep(0.05)
        with tally.lock:
            tally.recommend[status] += 1
            if status == 200:
                tally.recommend_ms.append(1000 * (time.perf_counter() - started))
    conn.close()


def count_rows(store, prefix: str = "events") -> tuple[Counter, dict, int]:
    """Rows per event id across every Parquet file, (user, item, timestamp) of each id, and
    the number of dead-letter rows."""
    import pyarrow.parquet as pq

    counts, content, dead = Counter(), {}, 0
    for key in store.list(prefix):
        table = pq.read_table(io.BytesIO(store.get_bytes(key)))
        if "/dead/" in key:
            dead += table.num_rows
            continue
        cols = table.select(["event_id", "user_id", "item_id", "timestamp"]).to_pydict()
        counts.update(cols["event_id"])
        content.update(zip(cols["event_id"], zip(cols["user_id"], cols["item_id"],
                                                 cols["timestamp"], strict=True), strict=True))
    return counts, content, dead
