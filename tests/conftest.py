"""Shared fixtures: a real redis-server process and a tiny published version."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis server for the session (skips if redis-server is not installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not on PATH (apt-get install redis-server; .ci/run does)")
    from infra.redis_server import local_redis

    with local_redis() as url:
        yield url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def tiny_dataset():
    from models.synthetic import generate

    return generate(n_users=120, n_items=60, seed=3, events_per_user=15)


@pytest.fixture(scope="session")
def published(tmp_path_factory, redis_url, tiny_dataset):
    """Runs the real nightly job once on tiny data; returns (store, redis_url, summary)."""
    from batch.nightly import run

    redis_url = redis_url.rsplit("/", 1)[0] + "/1"  # apart from the db that tests flush
    root = tmp_path_factory.mktemp("published")
    path = root / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    store = str(root / "artifacts")
    summary = run([f"--input={path}", f"--store={store}", f"--redis_url={redis_url}",
                   "--namespace=pub", "--epochs=3", "--dim=8", "--k=20", "--shard_size=50",
                   "--skip_gate"])
    return store, redis_url, summary


# A served recommender small enough for tests (as tests/models/test_served.py's TINY).
TINY_SERVED = {
    "tower": {"dim": 8, "hidden": 16, "epochs": 2, "history": 10, "recent": 3, "patience": 1},
    "ranker": {"hidden": [8], "neighbours": 20, "epochs": 3, "members": 2},
    "windows": [0.8, 0.9], "n_tower": 15, "n_knn": 15, "n_session": 10, "n_popular": 10,
    "candidates": 40}


def served_flags(root, dataset) -> list[str]:
    """--model served flags with TINY_SERVED and the dataset's users and items tables."""
    import json

    dataset.users.to_parquet(root / "users.parquet")
    dataset.items.to_parquet(root / "items.parquet")
    return ["--model=served", f"--served_config={json.dumps(TINY_SERVED)}",
            f"--users={root / 'users.parquet'}", f"--items={root / 'items.parquet'}"]


@pytest.fixture(scope="session")
def published_served(tmp_path_factory, redis_url, tiny_dataset):
    """The real nightly job with --model served on tiny data (namespace `srv` of db 1);
    returns (store, redis_url, summary, folder holding the input tables)."""
    from batch.nightly import run

    redis_url = redis_url.rsplit("/", 1)[0] + "/1"
    root = tmp_path_factory.mktemp("published_served")
    path = root / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    store = str(root / "artifacts")
    summary = run([f"--input={path}", f"--store={store}", f"--redis_url={redis_url}",
                   "--namespace=srv", "--k=10", "--shard_size=50", "--skip_gate",
                   *served_flags(root, tiny_dataset)])
    return store, redis_url, summary, root


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server: real HTTP to boto3."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
