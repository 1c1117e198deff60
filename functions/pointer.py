"""The version pointer cache: the pointer and the filters' revision are read from Redis
together, at most every `pointer_ttl` seconds (RECSYS_POINTER_TTL_S).

The cached value is what was served after the last good read (the loaded version and its
filters' revision), so between reads a request costs no pointer round trip at all.
"""

from __future__ import annotations

import time


class PointerCache:
    """Reads (current version, filters revision) and says when to read them again.

    Args:
        read: returns (the current version or None, the item filters' revision), e.g.
            infra.redis.lists.ServedLists.current_and_rev.
        ttl: seconds a good read stays fresh (0: read on every request).
    """

    def __init__(self, read, ttl: float):
        self._read, self.ttl = read, ttl
        self._checked = float("-inf")

    def fresh(self, now: float) -> bool:
        """Whether the last confirmed read, if any, is at most `ttl` seconds before `now`."""
        return now - self._checked <= self.ttl

    def read(self) -> tuple[str | None, int]:
        """(version, revision) from Redis; raises redis.RedisError when it fails."""
        return self._read()

    def confirm(self, now: float) -> None:
        """The read made at `now` was acted on: nothing to read for `ttl` seconds."""
        self._checked = now

    @staticmethod
    def now() -> float:
        return time.monotonic()
