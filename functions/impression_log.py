"""The impression writer: every /recommend answer goes to NS:impressions off the request path.

A request only encodes its row (`record`: JSON text written by hand, about a microsecond) and
appends it to a bounded in-memory queue (no round trip); a daemon thread of each process
(started by the first record of that process, since gunicorn forks its workers after import)
sends the queue to Redis in batches, every FLUSH_S or BATCH records, each batch one stream
entry written in one round trip (ImpressionStream.add_encoded: one XADD of the rows joined
into a JSON array). While Redis is
down the batch in hand is retried (backing off up to MAX_BACKOFF_S) and new records wait in
the queue; only a full queue drops records, its oldest first, counted in
recsys_impressions_dropped_total (an alert watches it) and logged. At exit (atexit) the
thread stops and what is left is sent once.

Loss bound: an instance that stops normally loses nothing Redis accepts; one killed hard
(SIGKILL, out of memory) loses its unflushed records: at most the queue (max_queue) and the
batch in hand (BATCH), in practice the last ~FLUSH_S of answers. A batch whose reply was lost
may be written twice (its records keep their recommendation_id, so a reader can drop the
repeat). Events never go through here (POST /events writes them before answering).
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import threading
import weakref
from json.encoder import encode_basestring_ascii as _quote

import redis

from infra.redis.impressions import MAX_ROWS, ImpressionStream

log = logging.getLogger(__name__)
FLUSH_S = 0.05  # a batch leaves at least this often
BATCH = 500  # ... or as soon as this many records wait (one stream entry: <= MAX_ROWS)
MAX_QUEUE = 50_000  # records kept while Redis is down; beyond, the oldest are dropped
MAX_BACKOFF_S = 2.0  # the longest wait between two tries of a batch while Redis is down
EXIT_TIMEOUT_S = 2.0  # how long the last flush at exit may take


def record(rid: str, user_id: str, experiment: str, arm: str, version: str | None,
           items: list[str], source: str, status: int, latency_ms: float,
           ts_ms: int) -> str:
    """One impression as the queue holds it: the JSON text of its row (FIELDS' values in
    their order: infra/redis/impressions.py), ASCII, written by hand while the values are at
    hand (a third of what json spends on one small row, and the writer only joins rows)."""
    if not math.isfinite(latency_ms):  # never from a handler; the drain dead-letters -1
        latency_ms = -1.0
    return (f"[{_quote(rid)},{_quote(user_id)},{_quote(experiment)},{_quote(arm)},"
            f"{_quote(version or '')},[{','.join(map(_quote, items))}],{_quote(source)},"
            f"{int(status)},{latency_ms:.3f},{int(ts_ms)}]")


class ImpressionLog:
    """A bounded queue of impressions and the thread that writes them.

    Args:
        stream: where the impressions go.
        dropped: called with the number of records dropped (the metric; None: not counted).
        max_queue: records held at most (the oldest are dropped beyond).
        batch: records per round trip (one stream entry) at most.
        flush_s: seconds between two sends at most.
    """

    def __init__(self, stream: ImpressionStream, max_queue: int = MAX_QUEUE,
                 batch: int = BATCH, flush_s: float = FLUSH_S, dropped=None):
        self.stream, self.batch, self.flush_s = stream, min(batch, MAX_ROWS), flush_s
        self._count_dropped = dropped or (lambda n: None)
        self.dropped = 0  # records this process dropped (the queue full or refused)
        self.queue: collections.deque = collections.deque(maxlen=max_queue)
        self._pid = None  # the process whose thread runs
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._pending: list[str] = []  # the batch in hand (retried while Redis is down)
        self.failures = 0  # tries failed in a row
        atexit.register(_close_at_exit, weakref.ref(self))  # a weak one: tests make many

    def add(self, values: str) -> None:
        """Queues one impression (`record(...)`); never blocks, never raises."""
        if self._pid != _process.pid:  # the first record of this process (or a fork)
            self._start()
        queue = self.queue
        if len(queue) == queue.maxlen:  # the append below drops the oldest
            self.dropped += 1
            self._count_dropped(1)
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("impression queue full (%d records: Redis down or slow); dropping "
                          "the oldest, %d so far", queue.maxlen, self.dropped)
        queue.append(values)
        if len(queue) == 1 or len(queue) >= self.batch:  # the first record or a full batch
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            if self._pid is not None:  # forked: the parent writes what it queued
                self.queue.clear()
                self._pending = []
                self._stop, self._wake = threading.Event(), threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if backoff:  # Redis failed: the batch in hand waits
                self._stop.wait(backoff)
            else:
                if not self.queue and not self._pending:
                    self._wake.wait()  # idle until the next record
                self._wake.clear()
                # (close sets _stop before waking us; a batch that filled before the clear
                # is not waited for)
                if not self._stop.is_set() and len(self.queue) < self.batch:
                    self._wake.wait(self.flush_s)  # gather a batch; a full one cuts it short
                    self._wake.clear()
            backoff = 0.0 if self.flush() else min(max(2 * backoff, self.flush_s),
                                                  MAX_BACKOFF_S)

    def flush(self) -> bool:
        """Sends the batch in hand and the queue, a batch per round trip; False if Redis failed
        (what was not written stays: the batch in hand first)."""
        while True:
            if not self._pending:
                queue, n = self.queue, min(len(self.queue), self.batch)
                self._pending = [queue.popleft() for _ in range(n)]
            if not self._pending:
                return True
            try:
                self.stream.add_encoded(self._pending)
            except redis.RedisError as e:
                self.failures += 1
                (log.warning if self.failures == 1 else log.debug)(
                    "impressions not written (%s): %d in hand, %d queued; retrying until "
                    "Redis answers", e, len(self._pending), len(self.queue))
                return False
            except Exception as e:  # a malformed record (ValueError): never retried, never
                # blocking, and the thread lives on
                log.error("impressions refused by the stream (%r); %d dropped", e,
                          len(self._pending))
                self.dropped += len(self._pending)
                self._count_dropped(len(self._pending))
            else:
                if self.failures:
                    log.warning("impressions written again after %d failed tries",
                                self.failures)
                    self.failures = 0
            self._pending = []

    def close(self, timeout: float = EXIT_TIMEOUT_S) -> None:
        """Stops this process's thread and sends what is left (once; at exit)."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("impression writer still busy at exit; %d impressions not written",
                          len(self._pending) + len(self.queue))
                return
        left = len(self._pending) + len(self.queue)
        if left and self.failures:  # the last try failed: do not hold the exit up again
            log.error("%d impressions lost at exit: Redis unreachable", left)
        elif left and not self.flush():
            log.error("%d impressions lost at exit: Redis unreachable", left)
        self._pid = None



class _Process:
    """This process's id, kept up to date across forks (os.getpid is a system call)."""

    def __init__(self):
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.pid = os.getpid()


_process = _Process()


def _close_at_exit(ref: weakref.ref) -> None:
    log_ = ref()
    if log_ is not None:
        log_.close()
