"""benchmarks.precompute --cluster on tiny sizes (issue 20): the nightly's Precompute transform
publishes every user's list to a real local 3-node Redis Cluster, and the bytes Redis spends
per user stay within 1.5x the list's payload. `pytest -m cluster` runs it."""

from __future__ import annotations

import pytest

from benchmarks import precompute

pytestmark = pytest.mark.cluster


def test_precompute_publishes_to_a_cluster_within_the_memory_budget(redis_cluster_url, tmp_path):
    # redis_cluster_url: skips (fails under CI) without redis-server; the benchmark starts its own
    result = precompute.main(["--users", "2000", "--items", "300", "--dim", "8", "--k", "100",
                              "--seen", "2", "--shard-size", "500", "--cluster",
                              "--json", str(tmp_path / "out.json")])
    assert result["redis"] == "cluster" and result["redis_nodes"] == 3
    assert result["payload_bytes_per_user"] == 100 * 6  # K int32 items + K float16 scores
    assert result["redis_overhead"] <= 1.5  # MEMORY USAGE of the lists
    assert result["redis_used_memory_bytes_per_user"] > result["payload_bytes_per_user"]
