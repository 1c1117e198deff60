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


def test_two_versions_served_side_by_side_each_keep_their_fallback_list(redis_client):
    """In an experiment the arms' versions alternate request by request: each version's list
    is built once per TTL, not rebuilt on every switch (one slot rebuilt it each time)."""
    from types import SimpleNamespace

    for k in range(12):
        _click(redis_client, f"i{k}", k + 1)
    cache = TrendingCache(TrendingCounters(redis_client, "t"), RedisBreaker(1.0), ttl=3600)
    reads = []
    top = cache.top
    cache.top = lambda window: reads.append(window) or top(window)
    index = {f"i{k}": k for k in range(12)}
    a = SimpleNamespace(version="va", item_index=index, bundle=SimpleNamespace(popular=["p"]))
    b = SimpleNamespace(version="vb", item_index=index, bundle=SimpleNamespace(popular=["q"]))
    answers = [cache.fallback(v) for v in (a, b, a, b, a, b)]
    assert len(reads) == 2
    assert answers[0][-1] == "p" and answers[1][-1] == "q" and answers[4] == answers[0]
