"""The circuit breaker around Redis: after an outage, Redis is left alone for a while.

While the breaker is open the functions answer from what is loaded (popular items of the
current bundle) instead of waiting on a Redis that just failed; `redis_retry` seconds later
the next request tries Redis again.
"""

from __future__ import annotations

import logging
import time

import redis

log = logging.getLogger(__name__)
# Errors that open the breaker; a Redis Cluster that lost a node answers CLUSTERDOWN.
OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError)


class RedisBreaker:
    """Open for `retry` seconds after a connection error or a timeout, closed otherwise.

    Args:
        retry: seconds to leave Redis alone after an outage (RECSYS_REDIS_RETRY_S).
    """

    def __init__(self, retry: float):
        self.retry = retry
        self._open_until = 0.0

    def up(self) -> bool:
        """True while Redis may be called (the breaker is closed)."""
        return time.monotonic() >= self._open_until

    def trip(self, error: Exception) -> None:
        """Opens the breaker if `error` is an outage; other Redis errors (a refused script, a
        wrong type) say nothing about reachability and leave it closed."""
        if isinstance(error, OUTAGE):
            if self.up():
                log.warning("redis unreachable (%s); retrying in %.1f s", error, self.retry)
            self._open_until = time.monotonic() + self.retry
