"""The serving state of one function instance: Redis, the current version, its bundle and scorer.

`Serving` composes one part per job: the Redis circuit breaker (functions/breaker.py), the
version pointer cache (functions/pointer.py), the bundle swap (functions/swap.py, which loads
a version's bundle and on-demand scorer: functions/loaded.py) and the item filters
(functions/filters.py). The pointer and the filters' revision are read together, at most every
`pointer_ttl` seconds; when the pointer moves, the new version is swapped in whole, and the
filters are reloaded only when their revision moves. So the cached path costs one round trip:
the user's list and recent history. When Redis fails, it is left alone for `redis_retry`
seconds and the functions answer from what is loaded. (A scorer forked into a gunicorn worker
rebuilds its interpreters itself: models/kinds.)
"""

from __future__ import annotations

import redis

from functions.breaker import RedisBreaker
from functions.filters import FilterReloader
from functions.loaded import Loaded, NoBundleError
from functions.pointer import PointerCache
from functions.settings import Settings
from functions.swap import BundleSwap
from infra.redis.event_stream import EventStream
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.store import open_store


class Serving:
    """What the handlers go through: `state()` for the version to serve, `fetch` for a user's
    list and history, `breaker` for whether to call Redis at all; the Redis stores (one client)
    `lists`, `events` (POST /events) and `items` (/admin/items)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.lists = ServedLists.from_url(settings.redis_url, settings.namespace,
                                          socket_timeout=settings.redis_timeout,
                                          socket_connect_timeout=settings.redis_timeout)
        self.events = EventStream(self.lists.r, settings.namespace)
        self.items = ItemFilters(self.lists.r, settings.namespace)
        self.breaker = RedisBreaker(settings.redis_retry)
        self.pointer = PointerCache(self.lists.current_and_rev, settings.pointer_ttl)
        self.swap = BundleSwap(open_store(settings.store), settings.faiss_threads)
        self.filters = FilterReloader(self.items.read)

    def state(self) -> Loaded:
        """The version to serve (pointer cached briefly), loading its bundle when it moves.

        Raises:
            NoBundleError: nothing published yet, or its bundle unreadable and nothing loaded.
            redis.RedisError: Redis failed and nothing is loaded yet.
        """
        loaded, now = self.swap.loaded, self.pointer.now()
        if loaded is not None and (self.pointer.fresh(now) or not self.breaker.up()):
            return loaded
        try:
            version, rev = self.pointer.read()
            if version is None and loaded is not None:
                return loaded  # the pointer was deleted by hand: keep what is loaded
            if version is None:
                raise NoBundleError("no model version has been published yet: run "
                                    "`recsys nightly` first")
            if loaded is None or loaded.version != version:
                loaded = self.swap.to(version)
            if loaded.filters.rev != rev:
                loaded.filters = self.filters.reload(loaded.item_index)
        except redis.RedisError as e:
            self.breaker.trip(e)
            if loaded is None:
                raise
            return loaded
        self.pointer.confirm(now)
        return loaded

    def fetch(self, version: str, user_id: str) -> tuple[bytes | None, list[str]]:
        """One round trip: (the user's nightly list, their recent items, oldest first)."""
        raw, hist = self.lists.read_user(version, user_id, self.settings.history_len)
        return raw, [h.decode() for h in reversed(hist)]
