"""Trending items: counters of recent engagement kept by POST /events, summed over a window.

The events script (event_stream.py) adds each stored event's weight (1 without one) to its
item in the sorted set of the current 5-minute bucket, NS:trend:T with T = epoch seconds //
BUCKET_S at the time the event is stored (not its own timestamp: "trending" is what users do
now), in the same atomic step as the stream and the history; the set expires KEEP_S after its
last write, once no window reads it. `top` sums the sets of a window's buckets, the current
one included, so an event counts at once. In a Redis Cluster each user bucket keeps its own
sets (in the slot of its events script); `top` sums them per slot (ZUNION) and then across.
Keys: keys.py.
"""

from __future__ import annotations

import time
from collections import Counter

from infra.redis.keys import Namespaced

BUCKET_S = 300
# The windows /trending answers (name -> seconds), and how long a bucket must live for them.
WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
KEEP_S = max(WINDOWS.values()) + BUCKET_S


def bucket_at(now: float) -> int:
    """The time bucket of epoch seconds `now`."""
    return int(now // BUCKET_S)


def window_buckets(seconds: int, now: float) -> range:
    """The buckets a window of `seconds` ending at `now` reads: the current one and the ones
    before it, `seconds // BUCKET_S` in all (at least one)."""
    last = bucket_at(now)
    return range(last - max(1, seconds // BUCKET_S) + 1, last + 1)


class TrendingCounters(Namespaced):
    """Reads the trending counters the events script writes.

    Contract: `top(window)` ranks every item by the summed weights of the events stored in the
    window's buckets (ties: the smaller id first); items of expired buckets are gone.
    """

    def top(self, seconds: int, n: int, now: float | None = None) -> list[tuple[str, float]]:
        """The `n` items of most weight in the window of `seconds` ending now: [(item id,
        summed weight)], most first.

        Raises:
            redis.RedisError: Redis failed.
        """
        buckets = window_buckets(seconds, time.time() if now is None else now)
        pipe = self.r.pipeline(transaction=False)
        parts = self.keys.trend_parts(buckets)
        for keys in parts:
            pipe.zunion(keys, withscores=True)
        total: Counter = Counter()
        for reply in pipe.execute():
            for member, score in reply:
                total[member] += float(score)
        ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(m.decode("utf-8", "surrogateescape"), s) for m, s in ranked[:n] if s > 0]
