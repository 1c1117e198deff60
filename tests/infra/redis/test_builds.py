"""BuildRecords (infra/redis/builds.py) against a real Redis server process."""

import numpy as np

from infra.redis.builds import BuildRecords


def test_built_record_round_trips(redis_client):
    builds = BuildRecords(redis_client, "t")
    assert builds.built("v1") is None
    built_at = np.array([1_700_000_000, 5], np.uint32)
    fingerprints = np.array([2**64 - 1, 0], np.uint64)
    builds.put_built("v1", built_at, fingerprints)
    got_b, got_f = builds.built("v1")
    assert got_b.tolist() == built_at.tolist() and got_f.tolist() == fingerprints.tolist()
    assert redis_client.strlen("t:v:v1:built") == 2 * 12


def test_summary_round_trips_and_joins_the_started_record(redis_client):
    builds = BuildRecords(redis_client, "t")
    assert builds.summary("v1") is None
    summary = {"version": "v1", "users_published": 3, "gate": None, "seconds": {"train": 1.5}}
    builds.put_summary("v1", summary)
    assert builds.summary("v1") == summary
    # A run that dies after this is found by drop_unpublished.
    assert redis_client.smembers("t:started") == {b"v1"}
