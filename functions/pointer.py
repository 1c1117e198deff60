"""The version pointer cache: the pointer, the filters' revision and the running experiment are
read from Redis together, at most every `pointer_ttl` seconds (RECSYS_POINTER_TTL_S).

The cached value is what was served after the last good read (the loaded version, its
filters' revision and the experiment's plan: functions/arms.py), so between reads a request
costs no pointer round trip at all.
"""

from __future__ import annotations

import time


class PointerCache:
    """Reads (current version, filters revision) and says when to read them again.

    Args:
        read: returns what to act on, e.g. infra.redis.lists.ServedLists.serving_state (the
            current version or None, the item filters' revision, the running experiments,
            the published versions).
        ttl: seconds a good read stays fresh (0: read on every request).
    """

    def __init__(self, read, ttl: float):
        self._read, self.ttl = read, ttl
        self._checked = float("-inf")

    def fresh(self, now: float) -> bool:
        """Whether the last confirmed read, if any, is at most `ttl` seconds before `now`."""
        return now - self._checked <= self.ttl

    def read(self) -> tuple:
        """What `read` returns, from Redis; raises redis.RedisError when it fails."""
        return self._read()

    def confirm(self, now: float) -> None:
        """The read made at `now` was acted on: nothing to read for `ttl` seconds."""
        self._checked = now

    @staticmethod
    def now() -> float:
        return time.monotonic()
