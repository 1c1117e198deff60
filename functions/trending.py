"""GET|POST /trending, and the trending list that fresh users' popular fallback uses.

The counters are kept by POST /events in the events script (infra/redis/trending.py: per
5-minute bucket, expiring). An instance reads a window's top items at most every TTL_S seconds
(one thread reads, the others keep the last answer), so /trending costs no Redis round trip in
between, and an event shows within TTL_S seconds (well inside a minute). While Redis is down
the last answer read is served.

/recommend's popular source (functions/chain.py) takes `fallback(loaded)`: the FALLBACK_WINDOW
trending items the served version knows, followed by its nightly popular list, once at least
MIN_ITEMS of them trend; the nightly popular list alone otherwise.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from functions.breaker import RedisBreaker
from functions.loaded import Loaded
from infra.redis.trending import WINDOWS, TrendingCounters
from models.rules import fill

log = logging.getLogger(__name__)
TTL_S = 5.0  # seconds a window's top items are reused
TOP_N = 1000  # items read per window
MIN_ITEMS = 10  # trending items (known to the served version) before the fallback uses them
MAX_VERSIONS = 8  # fallback lists kept (current and an experiment's arms serve side by side)
FALLBACK_WINDOW = "1h"


class TrendingCache:
    """The windows' top items of one instance, read at most every `ttl` seconds.

    Args:
        counters: the Redis counters.
        breaker: the instance's Redis breaker (no read while it is open).
    """

    def __init__(self, counters: TrendingCounters, breaker: RedisBreaker, ttl: float = TTL_S):
        self.counters, self.breaker, self.ttl = counters, breaker, ttl
        self._top: dict[str, tuple[float, list[tuple[str, float]]]] = {}
        self._fallback: dict[str, tuple[float, list[str] | None]] = {}
        self._lock = threading.Lock()

    def top(self, window: str) -> list[tuple[str, float]] | None:
        """[(item id, summed weight)] of `window`, most first; None when never read and Redis
        is unreachable."""
        got = self._top.get(window)
        now = time.monotonic()
        if got is not None and now - got[0] < self.ttl:
            return got[1]
        if not self.breaker.up() or not self._lock.acquire(blocking=got is None):
            return got[1] if got else None
        try:
            latest = self._top.get(window)  # another thread may have read it meanwhile
            if latest is not None and time.monotonic() - latest[0] < self.ttl:
                return latest[1]
            items = self.counters.top(WINDOWS[window], TOP_N)
            self._top[window] = (time.monotonic(), items)
            return items
        except redis.RedisError as e:
            self.breaker.trip(e)
            log.warning("trending counters unreadable: %s", e)
            return got[1] if got else None
        finally:
            self._lock.release()

    def fallback(self, loaded: Loaded) -> list[str] | None:
        """The popular source's items for `loaded`: its trending items, then its popular list
        (None: fewer than MIN_ITEMS trend, use the popular list alone). Cheap between reads."""
        cached = self._fallback.get(loaded.version)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        top = self.top(FALLBACK_WINDOW) or []
        index = loaded.item_index
        ids = [i for i, _ in top if i in index]
        if len(ids) >= MIN_ITEMS:
            seen = set(ids)
            ids += [i for i in loaded.bundle.popular if i not in seen]
        else:
            ids = None
        # One entry per version: during an experiment the arms' versions alternate request by
        # request, and a single slot rebuilt the list (~2,000 dict operations) on each.
        if len(self._fallback) >= MAX_VERSIONS:
            self._fallback.clear()
        self._fallback[loaded.version] = (now, ids)
        return ids


def trending(cache: TrendingCache, loaded: Loaded | None, q
             ) -> tuple[str, list[str], list[tuple[str, float | None]]]:
    """The answer of /trending: (source, filled_by, [(item id, summed weight or None)]).

    Args:
        q: the request (functions.params.ItemQuery: window, k, exclude, categories).

    The window's items under the filters (unavailable, `exclude`, `category`); when fewer
    than k remain, the served version's popular items fill (score None).

    Raises:
        BadRequest: a category no served item has.
    """
    flt = loaded.filters if loaded is not None else None
    top = cache.top(q.window) or []
    weight = dict(top)
    blocked = set(q.exclude)
    if flt is not None:
        if q.categories:
            flt.check_categories(q.categories)
        blocked |= flt.unavailable

    def keep(ids: list[str]) -> list[str]:
        if not q.categories or flt is None:
            return ids
        cats = set(q.categories)
        return [i for i in ids if not cats.isdisjoint(flt.category.get(i, ()))]

    out = [(i, weight[i]) for i in fill([], keep([i for i, _ in top]), q.k, blocked)]
    sources = ["trending"] if out else []
    if len(out) < q.k and loaded is not None:
        got = fill([], keep(loaded.bundle.popular), q.k - len(out),
                   blocked | {i for i, _ in out})
        if got:
            out, sources = out + [(i, None) for i in got], sources + ["popular"]
    return (sources[0] if sources else "trending"), sources[1:], out
