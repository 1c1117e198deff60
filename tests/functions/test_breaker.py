"""The Redis circuit breaker (functions/breaker.py)."""

import time

import redis

from functions.breaker import RedisBreaker


def test_an_outage_opens_the_breaker_for_the_retry_time():
    breaker = RedisBreaker(retry=0.2)
    assert breaker.up()
    breaker.trip(redis.ConnectionError("refused"))
    assert not breaker.up()
    time.sleep(0.25)
    assert breaker.up()
    breaker.trip(redis.TimeoutError("slow"))
    assert not breaker.up()


def test_other_redis_errors_leave_it_closed():
    breaker = RedisBreaker(retry=60)
    breaker.trip(redis.ResponseError("NOSCRIPT"))
    breaker.trip(ValueError("not Redis's"))
    assert breaker.up()
