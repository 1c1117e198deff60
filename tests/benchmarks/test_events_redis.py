"""`python -m benchmarks.events --redis-kill`: a real redis-server SIGKILLed while a real
`recsys serve` takes events, restarted from its own folder (slow: two short runs, ~20 s)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import events_redis


@pytest.mark.slow
def test_aof_keeps_every_acknowledged_event_and_no_persistence_loses_them():
    args = argparse.Namespace(persistence=["aof-always", "none"], events=2000, batch=50,
                              clients=4, down_s=0.5, workers=2, threads=2, seed=0)
    result, lines, passed = events_redis.main(args)
    aof, none = result["aof-always"], result["none"]
    assert passed, lines
    for r in (aof, none):
        assert r["acknowledged"] == 2000
        assert 0 < r["acknowledged_before_kill"] < 2000  # killed mid-stream
        assert r["duplicated_rows"] == 0 and r["stream_duplicates"] == 0
    assert aof["lost"] == 0 and aof["rows_in_parquet"] == 2000
    # Without persistence Redis restarts empty: what was acknowledged before the kill is gone.
    assert none["lost"] >= none["acknowledged_before_kill"]
    assert none["rows_in_parquet"] == 2000 - none["lost"]
