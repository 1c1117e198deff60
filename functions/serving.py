"""The serving state of one function instance: Redis, the current version, its bundle and scorer.

The version pointer and the item filters' revision are read together, at most every
`pointer_ttl` seconds. When the pointer moves, the new version's bundle (item ids, popular
list, and the on-demand scorer of the kind its manifest names: models.kinds, e.g. MF's LiteRT
fold-in over Faiss or the served recommender on its LiteRT runtime) is loaded and swapped in
as one `Loaded`, so a request that took the old one finishes on it. Item filters (unavailable
items, categories) are reloaded only when their revision changes. So the cached path costs one
round trip: the user's list and recent history. When Redis fails, it is left alone for
`redis_retry` seconds and the functions answer from what is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import redis

from functions.settings import Settings
from infra.bundle import Bundle, read_bundle
from infra.redis.event_stream import EventStream
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.store import open_store
from models import kinds
from models.kinds import OnDemandScorer

log = logging.getLogger(__name__)
OUTAGE = (redis.ConnectionError, redis.TimeoutError)


def _one_query_threads(n: int) -> None:
    """Faiss' OpenMP threads for the one-query searches of the on-demand path. One is fastest
    where gunicorn threads and Redis share the cores: a flat search over 20,000 items took
    well under a millisecond with 1 thread and several with 2 (benchmarks/serving.py)."""
    import faiss

    faiss.omp_set_num_threads(n)


class NoBundleError(RuntimeError):
    """No version has been published yet, or its bundle cannot be read."""


@dataclass
class Filters:
    """The item filters of one revision, mapped onto one bundle's item indices."""

    rev: int
    unavailable: frozenset = frozenset()
    unavailable_idx: frozenset = frozenset()
    category: dict = field(default_factory=dict)  # item id -> category
    codes: dict = field(default_factory=dict)  # category -> code
    item_codes: np.ndarray | None = None  # [num_items] int32 category code, -1 if none


@dataclass
class Loaded:
    """One version as served, swapped in whole when the pointer moves; only its filters (new
    revision) are replaced in place."""

    version: str
    bundle: Bundle
    item_index: dict  # item id -> index
    item_names: list  # index -> item id
    scorer: OnDemandScorer | None  # the kind's; None: no on-demand path (popular instead)
    filters: Filters = field(default_factory=lambda: Filters(rev=-1))

    @property
    def on_demand(self) -> bool:
        return self.scorer is not None

    @property
    def served(self) -> OnDemandScorer | None:
        """The scorer if it ranks a user known only by request features (functions/chain.py)."""
        return self.scorer if self.scorer is not None and self.scorer.uses_features else None


class Serving:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.lists = ServedLists.from_url(settings.redis_url, settings.namespace,
                                          socket_timeout=settings.redis_timeout,
                                          socket_connect_timeout=settings.redis_timeout)
        self.events = EventStream(self.lists.r, settings.namespace)  # one connection pool
        self.items = ItemFilters(self.lists.r, settings.namespace)
        self.store = open_store(settings.store)
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._checked = 0.0
        self._down_until = 0.0
        self.loaded: Loaded | None = None

    # Redis health ---------------------------------------------------------------------------
    def redis_up(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self, error: Exception) -> None:
        if isinstance(error, OUTAGE):
            if self.redis_up():
                log.warning("redis unreachable (%s); retrying in %.1f s", error,
                            self.settings.redis_retry)
            self._down_until = time.monotonic() + self.settings.redis_retry

    # The version and its bundle -------------------------------------------------------------
    def state(self) -> Loaded:
        """The version to serve (pointer cached briefly), loading its bundle when it moves.

        Raises:
            NoBundleError: nothing published yet, or its bundle unreadable and nothing loaded.
            redis.RedisError: Redis failed and nothing is loaded yet.
        """
        loaded, now = self.loaded, time.monotonic()
        if loaded is not None and (now - self._checked <= self.settings.pointer_ttl
                                   or not self.redis_up()):
            return loaded
        try:
            version, rev = self.lists.current_and_rev()
            if version is None and loaded is not None:
                return loaded  # the pointer was deleted by hand: keep what is loaded
            if version is None:
                raise NoBundleError("no model version has been published yet: run "
                                    "`recsys nightly` first")
            if loaded is None or loaded.version != version:
                loaded = self._swap(version)
            if loaded.filters.rev != rev:
                self._reload_filters(loaded)
        except redis.RedisError as e:
            self.mark_down(e)
            if loaded is None:
                raise
            return loaded
        self._checked = now
        return loaded

    def _swap(self, version: str) -> Loaded:
        # One thread loads; while it does, the others keep answering from the old version.
        if not self._load_lock.acquire(blocking=self.loaded is None):
            return self.loaded
        try:
            if self.loaded is not None and self.loaded.version == version:
                return self.loaded
            try:
                bundle = read_bundle(self.store, version, with_users=False)
                _one_query_threads(self.settings.faiss_threads)
                scorer = kinds.get(bundle.manifest.get("model")).on_demand(bundle)
                new = Loaded(version, bundle, bundle.item_index, bundle.item_ids.tolist(),
                             scorer)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                if self.loaded is None:
                    raise NoBundleError(f"bundle {version} cannot be read from "
                                        f"{self.store.uri}: {e}") from e
                log.error("bundle %s cannot be read (%s); still serving %s", version, e,
                          self.loaded.version)
                return self.loaded
            new.filters = self._map_filters(new, self.loaded.filters if self.loaded else
                                            Filters(rev=-1))
            self.loaded = new
            log.info("loaded bundle %s (%d items)", version, len(bundle.item_ids))
            return new
        finally:
            self._load_lock.release()

    # Per-request reads ----------------------------------------------------------------------
    def fetch(self, version: str, user_id: str) -> tuple[bytes | None, list[str]]:
        """One round trip: (the user's nightly list, their recent items, oldest first)."""
        raw, hist = self.lists.read_user(version, user_id, self.settings.history_len)
        return raw, [h.decode() for h in reversed(hist)]

    def _reload_filters(self, loaded: Loaded) -> None:
        with self._lock:
            rev, unavailable, category = self.items.read()
            loaded.filters = self._map_filters(
                loaded, Filters(rev, frozenset(unavailable), category=category))
            log.info("item filters rev %d: %d unavailable, %d with a category", rev,
                     len(unavailable), len(category))

    @staticmethod
    def _map_filters(loaded: Loaded, f: Filters) -> Filters:
        index = loaded.item_index
        codes = {c: n for n, c in enumerate(sorted(set(f.category.values())))}
        item_codes = np.full(len(loaded.bundle.item_ids), -1, np.int32)
        for item, cat in f.category.items():
            if item in index:
                item_codes[index[item]] = codes[cat]
        unavailable_idx = frozenset(index[i] for i in f.unavailable if i in index)
        return Filters(f.rev, f.unavailable, unavailable_idx, f.category, codes, item_codes)

    def on_demand(self, loaded: Loaded, history_idx: np.ndarray, exclude_idx: np.ndarray,
                  k: int, user_id: str = "", features: dict | None = None
                  ) -> list[tuple[int, float]]:
        """Ranks for a user known by recent items (and, served, request features): the
        version's kind's on-demand scorer (MF: LiteRT tower -> Faiss -> rules; served:
        retrieval -> ranker -> rules); [] without one."""
        if loaded.scorer is None:
            return []
        I, S = loaded.scorer.recommend(history_idx, user_id, features, exclude_idx, k)
        return list(zip(I.tolist(), S.tolist(), strict=True))

