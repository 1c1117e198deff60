"""Trending items: counters of recent engagement kept by POST /events, summed over a window.

The events script (event_stream.py) adds each stored event's weight (1 without one) to its
item in the sorted set of the current 5-minute bucket, NS:trend:T with T = epoch seconds //
BUCKET_S at the time the event is stored (not its own timestamp: "trending" is what users do
now), in the same atomic step as the stream and the history; the set expires KEEP_S after its
last write, once no window reads it. `top` sums the sets of a window's buckets, the current
one included, so an event counts at once (ZUNIONSTORE into the scratch key NS:trend:sum and
its top items, in one script). In a Redis Cluster each user bucket keeps its own sets (in the
slot of its events script); `top` sums them per slot and then across.
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


# The window's sum inside Redis: KEYS[1] a scratch key of the buckets' slot, KEYS[2..] the
# buckets; only the top ARGV[1] items come back (a bucket may hold the whole catalogue).
_TOP = """
redis.call('ZUNIONSTORE', KEYS[1], #KEYS - 1, unpack(KEYS, 2))
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
redis.call('DEL', KEYS[1])
return top
"""


class TrendingCounters(Namespaced):
    """Reads the trending counters the events script writes.

    Contract: `top(window)` ranks the items by the summed weights of the events stored in the
    window's buckets (ties: the smaller id first); items of expired buckets are gone.
    """

    def __init__(self, client, namespace: str = "recsys"):
        super().__init__(client, namespace)
        self._top = self.r.register_script(_TOP)

    def top(self, seconds: int, n: int, now: float | None = None) -> list[tuple[str, float]]:
        """The `n` items of most weight in the window of `seconds` ending now: [(item id,
        summed weight)], most first. One script per slot (one on a server) sums its buckets
        and returns its top n; in a cluster the slots' tops are merged here.

        Raises:
            redis.RedisError: Redis failed.
        """
        buckets = window_buckets(seconds, time.time() if now is None else now)
        total: Counter = Counter()
        for scratch, keys in zip(self.keys.trend_sums(), self.keys.trend_parts(buckets),
                                 strict=True):
            reply = self._top(keys=[scratch, *keys], args=[n])
            for member, score in zip(reply[::2], reply[1::2], strict=True):
                total[member] += float(score)
        ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(m.decode("utf-8", "surrogateescape"), s) for m, s in ranked[:n] if s > 0]
