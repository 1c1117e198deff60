"""functions/trending.TrendingCache on a real redis-server: a window is read at most every TTL,
the last answer is served while Redis fails, and nothing raises."""

import redis

from functions.breaker import RedisBreaker
from functions.trending import TrendingCache
from infra.redis.event_stream import EventStream
from infra.redis.trending import TrendingCounters
from infra.redis_server import free_port


def _click(client, item, n=1):
    EventStream(client, "t").append([{"user_id": f"u{k}", "item_id": item} for k in range(n)])


def test_a_window_is_reread_only_after_the_ttl(redis_client):
    _click(redis_client, "a", 2)
    cache = TrendingCache(TrendingCounters(redis_client, "t"), RedisBreaker(1.0), ttl=3600)
    assert cache.top("15m") == [("a", 2.0)]
    _click(redis_client, "b", 3)
    assert cache.top("15m") == [("a", 2.0)]  # within the TTL: no read
    cache.ttl = 0
    assert cache.top("15m") == [("b", 3.0), ("a", 2.0)]


def test_while_redis_fails_the_last_answer_is_served_and_nothing_raises(redis_client):
    _click(redis_client, "a")
    counters, breaker = TrendingCounters(redis_client, "t"), RedisBreaker(60.0)
    cache = TrendingCache(counters, breaker, ttl=0)
    assert cache.top("1h") == [("a", 1.0)]
    cache.counters = TrendingCounters(redis.Redis(port=free_port(), socket_connect_timeout=0.2),
                                      "t")  # nobody listens there
    assert cache.top("1h") == [("a", 1.0)] and not breaker.up()  # tripped, last answer kept
    assert cache.top("24h") is None  # never read: nothing to serve
