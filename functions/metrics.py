"""The functions' Prometheus metrics (`GET /metrics`), kept by prometheus_client.

Every name, type, label set and bucket is infra/monitoring/catalogue.py's (made by
infra/monitoring/exporters.make), so the dashboard, the alerts and this code cannot drift.
Handlers record through a `Recorder` (one per serving state: functions/serving.py), which does
nothing when RECSYS_METRICS=0.

An answer's own metrics (its request, latency, source, impression, experiment arm, cache
lookup) are not written as it is made: `Recorder` appends one tuple to a per-process queue,
and `flush` adds them up and writes each label set's count once (and the latency histogram's
buckets once each), every FLUSH_S by a daemon thread of each process (started by its first
record: gunicorn forks its workers after import), before every scrape this process answers
(`page`, `sample`) and at exit. So an answer costs a few writes per flush instead of six
locked writes to the memory-mapped file; a scrape answered by another worker may miss this
worker's last FLUSH_S of answers. Rarer records (events, fallbacks, attribution, dropped
impressions) are written at once.

Workers add up. Under `recsys serve` (gunicorn) PROMETHEUS_MULTIPROC_DIR names a fresh folder
that app/cli.py makes before prometheus_client is first imported and removes at exit: each
worker writes its values to files of its own there, and a scrape, whichever worker answers it,
adds up every worker's files (prometheus_client's MultiProcessCollector), those of workers that
have exited too; `worker_exited` is gunicorn's child_exit hook (mark_process_dead). Without the
variable (tests, a Cloud Function's single process) the values live in the process.

Three gauges are worked out at scrape time by the answering worker (`ScrapeCollector`), not
kept: recsys_ingestion_lag_seconds (the age of the oldest first entry of the event streams,
NS:events or a cluster's per-bucket ones: the drain acknowledges and deletes what it has
written, so a stream's first entry is its oldest undrained one; 0 when they are empty),
recsys_served_version_info (1 for the version `current` names, 0 for those this process
served before) and recsys_served_version_age_seconds (from the version's publish time, its
score in NS:versions). The lag and the publish time cost one round trip per scrape,
skipped while the Redis breaker is open; when Redis fails the lag is simply absent (the page
still answers 200) and the age comes from the last publish time read.

Attribution (recsys_attributed_events_total{version}): a recommendation_id is 24 random hex
digits and `version_tag(version)`, 8 hex digits of a hash of the version that served the list
(`new_recommendation_id`). /events maps an event's id back through the published versions
(`version_of`), with no lookup: an id that maps to no published version (forged, or its
version expired) counts as version="unknown" (docs/SERVING.md).
"""

from __future__ import annotations

import atexit
import collections
import functools
import hashlib
import logging
import os
import random
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.values import ValueClass

from infra.monitoring.catalogue import METRICS
from infra.monitoring.exporters import make

log = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SCRAPED = ("recsys_ingestion_lag_seconds", "recsys_served_version_info",
           "recsys_served_version_age_seconds")
UNKNOWN = "unknown"  # the version of an id that maps to no published version
TAG_CHARS = 8
KEPT_VERSIONS = 3  # earlier versions a process still reports as served_version_info 0
_MAX_CHILDREN = 10_000  # label sets whose child is cached (versions, arms: a handful)
FLUSH_S = 0.5  # an answer's metrics reach the worker's file within this (or at a scrape)
MAX_PENDING = 100_000  # answers queued at most: beyond, the recording thread flushes

if os.environ.get(MULTIPROC_ENV) and not getattr(ValueClass, "_multiprocess", False):
    raise RuntimeError(f"{MULTIPROC_ENV} was set after prometheus_client was imported, so each "
                       "worker would count alone: set it before the first import (recsys serve "
                       "does)")

REGISTRY = CollectorRegistry()  # this process's values (multiprocess: also in its files)
FAMILIES = {m.name: make(m, REGISTRY) for m in METRICS
            if m.exporter == "functions" and m.name not in SCRAPED}
_CATALOGUE = {m.name: m for m in METRICS}
_children: dict[tuple, object] = {}


def _child(name: str, labels: tuple[str, ...]):
    key = (name, labels)
    child = _children.get(key)
    if child is None:
        child = FAMILIES[name].labels(*labels)
        if len(_children) < _MAX_CHILDREN:
            _children[key] = child
    return child


class Recorder:
    """What the handlers record; every method does nothing when `on` is False. An answer's
    own records (`request`, `recommendation`, `cache_lookup`) are queued and written by
    `flush` (see the module's doc); the others at once.

    Args:
        on: record (RECSYS_METRICS, default on; off only to measure what recording costs).
    """

    def __init__(self, on: bool = True):
        self.on = on

    def request(self, path: str, code: int, source: str, seconds: float) -> None:
        """One answer of a handler (`path` of catalogue.PATHS), its status and latency."""
        if self.on:
            _queue(("q", path, code, source, seconds))

    def recommendation(self, source: str, version: str, arm: str, experiment: str) -> None:
        """One /recommend answer: its source, and its impression by version and arm."""
        if self.on:
            _queue(("r", source, version, arm, experiment))

    def cache_lookup(self, hit: bool) -> None:
        if self.on:
            _queue(("l", hit))

    def fallback(self, reason: str) -> None:
        if self.on:
            _child("recsys_fallbacks_total", (reason,)).inc()

    def events(self, result: str, n: int) -> None:
        """`n` posted events of one result (stored, duplicate, rejected, unavailable)."""
        if self.on and n:
            _child("recsys_events_total", (result,)).inc(n)

    def attributed(self, version: str, event_type: str, n: int = 1) -> None:
        if self.on and n:
            _child("recsys_attributed_events_total", (version, event_type)).inc(n)

    def impressions_dropped(self, n: int = 1) -> None:
        if self.on and n:
            FAMILIES["recsys_impressions_dropped_total"].inc(n)


# The answers' queue -----------------------------------------------------------------------------
_pending: collections.deque = collections.deque()  # append and popleft are atomic
_flush_lock = threading.Lock()  # one flush at a time: the thread's, a scrape's, exit's
_flusher_started = False  # in this process (a forked child starts its own)


def _forked() -> None:
    global _flusher_started
    _flusher_started = False
    _pending.clear()  # the parent writes what it queued


os.register_at_fork(after_in_child=_forked)


def _queue(entry: tuple) -> None:
    if not _flusher_started:
        _start_flusher()
    _pending.append(entry)
    if len(_pending) > MAX_PENDING:  # the thread is starved: write here
        flush()


def _start_flusher() -> None:
    global _flusher_started
    with _flush_lock:
        if not _flusher_started:
            threading.Thread(target=_flush_every, args=(FLUSH_S,), name="metrics",
                             daemon=True).start()
            _flusher_started = True


def _flush_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        try:
            flush()
        except Exception:  # never let the thread die: the next flush retries
            log.exception("metrics not written")


def flush() -> None:
    """Writes the answers queued in this process: one write per label set (see the module's
    doc)."""
    with _flush_lock:
        n = len(_pending)
        if not n:
            return
        counts: collections.Counter = collections.Counter()
        latencies = collections.defaultdict(list)
        take = _pending.popleft
        for _ in range(n):
            entry = take()
            if entry[0] == "q":
                _, path, code, source, seconds = entry
                counts["recsys_requests_total", (path, str(code))] += 1
                latencies[path, source].append(seconds)
            elif entry[0] == "r":
                _, source, version, arm, experiment = entry
                counts["recsys_recommendations_total", (source,)] += 1
                counts["recsys_impressions_total", (version, arm or "current")] += 1
                if experiment:
                    counts["recsys_experiment_requests_total", (experiment, arm)] += 1
            else:
                counts["recsys_cache_lookups_total", ("hit" if entry[1] else "miss",)] += 1
        for (name, labels), count in counts.items():
            _child(name, labels).inc(count)
        for labels, values in latencies.items():
            observe_many(_child("recsys_request_seconds", labels), values)


atexit.register(flush)


def observe_many(child, values: list[float]) -> None:
    """`child.observe(v)` for each of `values`, writing each bucket and the sum once.

    prometheus_client's Histogram keeps a value per bucket (`_buckets`, counted once per
    observation in the first bucket whose bound is >= it) and the sum (`_sum`): the same
    result as the observations one by one (tests/functions/test_metrics.py checks it against
    `observe`); any other layout falls back to `observe`.
    """
    bounds, buckets, total = (getattr(child, a, None) for a in ("_upper_bounds", "_buckets",
                                                                 "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            child.observe(v)
        return
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect_left(bounds, v)] += 1  # the first bound >= v (the last is +Inf)
    total.inc(sum(values))
    for i, count in enumerate(counts):
        if count:
            buckets[i].inc(count)


def sample(name: str, labels: dict | None = None) -> float | None:
    """This process's own value of a kept metric (tests; not the instance's sum), its queued
    answers written first."""
    flush()
    return REGISTRY.get_sample_value(name, labels or {})


# Recommendation ids carrying their version -----------------------------------------------------
@functools.lru_cache(maxsize=64)
def version_tag(version: str) -> str:
    """8 hex digits of a hash of `version` (the last part of its recommendation ids)."""
    return hashlib.blake2b(version.encode(), digest_size=TAG_CHARS // 2).hexdigest()


_random_bits = random.getrandbits  # seeded from os.urandom, and again in each forked child


def new_recommendation_id(version: str) -> str:
    """A fresh recommendation id (32 hex digits) whose last 8 name `version`'s tag: 96 random
    bits (unique ids, not secrets: the answer shows them) and the tag."""
    return f"{_random_bits(96):024x}" + version_tag(version)


class VersionTags:
    """Maps recommendation ids back to the published version whose tag they end with."""

    def __init__(self):
        self._map: tuple[frozenset[str], dict[str, str]] = (frozenset(), {})

    def version_of(self, rid: str, published: Iterable[str]) -> str:
        """The published version that served `rid`, or "unknown"."""
        if not isinstance(published, frozenset):
            published = frozenset(published)
        versions, by_tag = self._map  # one read: threads may swap it meanwhile
        if published != versions:  # a new publish or expiry: a handful of hashes
            by_tag = {version_tag(v): v for v in published}
            self._map = (published, by_tag)
        return by_tag.get(rid[-TAG_CHARS:], UNKNOWN) if len(rid) == 32 else UNKNOWN


# Scrape -----------------------------------------------------------------------------------------
class ScrapeCollector:
    """The gauges worked out at scrape time from the serving state (see the module's doc).

    Args:
        serving: the instance's functions.serving.Serving (its refresh(), breaker, lists and
            events stores).
    """

    def __init__(self, serving):
        self.serving = serving
        self.published_at: dict[str, float] = {}  # version -> publish time (NS:versions)
        self.served: list[str] = []  # versions this process served, the newest last

    def collect(self):
        version = self._current()
        first_ms, published = self._read(version)
        now = time.time()
        if first_ms is not None:
            yield self._gauge("recsys_ingestion_lag_seconds",
                              max(0.0, now - first_ms / 1000) if first_ms else 0.0)
        if version is None:
            return
        if version not in self.served:
            self.served = [*self.served, version][-(KEPT_VERSIONS + 1):]
        m = _CATALOGUE["recsys_served_version_info"]
        info = GaugeMetricFamily(m.name, m.help, labels=m.labels)
        for v in self.served:
            info.add_metric([v], 1.0 if v == version else 0.0)
        yield info
        if published is not None:
            self.published_at = {version: published}
        if version in self.published_at:
            yield self._gauge("recsys_served_version_age_seconds",
                              max(0.0, now - self.published_at[version]))

    @staticmethod
    def _gauge(name: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, _CATALOGUE[name].help, value=value)

    def _current(self) -> str | None:
        try:
            return self.serving.refresh().current.version
        except Exception as e:  # nothing published or loadable yet, Redis down: no version
            log.debug("no served version for /metrics: %s", e)
            return None

    def _read(self, version: str | None) -> tuple[int | None, float | None]:
        """(the first entry's time in ms, 0 for none; the version's publish time), or Nones
        when Redis is not asked or fails."""
        s = self.serving
        if not s.breaker.up():
            return None, None
        streams = s.events.keys.event_streams  # NS:events, or one per bucket in a cluster
        try:
            pipe = s.lists.r.pipeline(transaction=False)
            for stream in streams:
                pipe.xrange(stream, count=1)
            if version is not None:
                pipe.zscore(s.lists.keys.versions, version)
            replies = pipe.execute()
        except Exception as e:  # redis.RedisError, or a stream key of another type
            log.warning("ingestion lag not read for /metrics: %s", e)
            return None, None
        firsts = [int(r[0][0].split(b"-")[0]) for r in replies[:len(streams)] if r]
        score = replies[len(streams)] if version is not None else None
        return min(firsts, default=0), (float(score) if score is not None else None)


class _Kept:
    """This instance's kept values: every worker's files, or this process's registry (less
    its `_created` series, which the files do not keep: one page in both modes)."""

    def collect(self):
        path = os.environ.get(MULTIPROC_ENV)
        if path:
            yield from MultiProcessCollector(None, path).collect()
            return
        for family in REGISTRY.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class Page:
    """What one scrape reads: the kept values and the scrape-time gauges."""

    def __init__(self, scraped: ScrapeCollector | None):
        self.collectors = [_Kept()] + ([scraped] if scraped is not None else [])

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


def page(scraped: ScrapeCollector | None) -> bytes:
    """The text exposition (format 0.0.4) of one scrape (this process's queued answers
    written first)."""
    flush()
    return generate_latest(Page(scraped))


def worker_exited(server, worker) -> None:
    """gunicorn's child_exit hook: prometheus_client's bookkeeping of a dead worker."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        mark_process_dead(worker.pid, path)
