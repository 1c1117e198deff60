"""The serving state of one function instance: Redis, the current version, its bundle and scorer.

`Serving` composes one part per job: the Redis circuit breaker (functions/breaker.py), the
version pointer cache (functions/pointer.py), the bundle swap (functions/swap.py, which loads
a version's bundle and on-demand scorer: functions/loaded.py) and the item filters
(functions/filters.py), and the running experiment's arms (functions/arms.py). The pointer, the
filters' revision, the running experiment and the published versions are read together, at
most every `pointer_ttl` seconds; when the pointer moves, the new version is swapped in whole,
the filters are reloaded only when their revision moves, and an arm's version is loaded once.
So the cached path costs one round trip, in an experiment too: the user's list (in their arm's
version) and recent history. When Redis fails, it is left alone for `redis_retry`
seconds and the functions answer from what is loaded. (A scorer forked into a gunicorn worker
rebuilds its interpreters itself: models/kinds.)
"""

from __future__ import annotations

import redis

from functions.arms import ArmPlanner, Plan, Route
from functions.breaker import RedisBreaker
from functions.filters import FilterReloader
from functions.loaded import Loaded, NoBundleError
from functions.metrics import Recorder, VersionTags
from functions.pointer import PointerCache
from functions.settings import Settings
from functions.swap import BundleSwap, Busy
from functions.trending import TrendingCache
from infra.redis.event_stream import EventStream
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.redis.trending import TrendingCounters
from infra.store import open_store


class Serving:
    """What the handlers go through: `route(user_id)` for the version (and experiment's arm) to
    serve a user, `state()` for the current version, `fetch` for a user's list and history,
    `breaker` for whether to call Redis at all; the Redis stores (one client) `lists`, `events`
    (POST /events) and `items` (/admin/items); `record` for the metrics (functions/metrics.py)
    and `version_of` for the version a recommendation_id names."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.lists = ServedLists.from_url(settings.redis_url, settings.namespace,
                                          socket_timeout=settings.redis_timeout,
                                          socket_connect_timeout=settings.redis_timeout)
        self.events = EventStream(self.lists.r, settings.namespace)
        self.items = ItemFilters(self.lists.r, settings.namespace)
        self.breaker = RedisBreaker(settings.redis_retry)
        self.pointer = PointerCache(self.lists.serving_state, settings.pointer_ttl)
        self.swap = BundleSwap(open_store(settings.store), settings.faiss_threads)
        self.filters = FilterReloader(self.items.read)
        self.planner = ArmPlanner(self.swap)
        self.plan: Plan | None = None
        self.published: frozenset[str] = frozenset()  # NS:versions at the last pointer read
        self.record = Recorder(settings.metrics)
        self.trending = TrendingCache(TrendingCounters(self.lists.r, settings.namespace),
                                      self.breaker)  # /trending, fresh users' popular source
        self._tags = VersionTags()

    def state(self) -> Loaded:
        """The current version (the pointer's), loading its bundle when it moves.

        Raises:
            NoBundleError: nothing published yet, or its bundle unreadable and nothing loaded.
            redis.RedisError: Redis failed and nothing is loaded yet.
        """
        return self.refresh().current

    def route(self, user_id: str) -> Route:
        """The version that serves `user_id` (their arm's, in an experiment) and their arm.

        Raises:
            as `state`.
        """
        return self.refresh().route(user_id)

    def refresh(self) -> Plan:
        """The plan to serve (read again from Redis at most every `pointer_ttl` seconds).

        Raises:
            as `state`.
        """
        plan, now = self.plan, self.pointer.now()
        if plan is not None and (self.pointer.fresh(now) or not self.breaker.up()):
            return plan
        try:
            version, rev, running, published = self.pointer.read()
            self.published = frozenset(published)
            if version is None and plan is not None:
                return plan  # the pointer was deleted by hand: keep what is loaded
            if version is None:
                raise NoBundleError("no model version has been published yet: run "
                                    "`recsys nightly` first")
            loaded = self.swap.loaded
            if loaded is None or loaded.version != version:
                loaded = self.swap.to(version)
            if loaded.filters.rev != rev:
                loaded.filters = self.filters.reload(loaded.item_index)
            plan = self.planner.plan(loaded, running, published, wait=plan is None)
        except Busy:  # another thread loads an arm's version: serve the last plan meanwhile
            return plan
        except redis.RedisError as e:
            self.breaker.trip(e)
            if plan is None and self.swap.loaded is None:
                raise
            return plan or Plan(self.swap.loaded)
        self.plan = plan
        self.pointer.confirm(now)
        return plan
    def version_of(self, recommendation_id: str) -> str:
        """The published version that served a recommendation_id, or "unknown" (forged, or
        its version expired): functions/metrics.py, attribution."""
        return self._tags.version_of(recommendation_id, self.published)

    def fetch(self, version: str, user_id: str) -> tuple[bytes | None, list[str]]:
        """One round trip: (the user's nightly list, their recent items, oldest first)."""
        raw, hist = self.lists.read_user(version, user_id, self.settings.history_len)
        return raw, [h.decode() for h in reversed(hist)]
