"""Shared fixtures: a real Redis server and a tiny published version.

Which Redis the tests use (`redis_url`):
- `redis-server` on PATH: a throw-away server of the session's own, always preferred;
- else `REDIS_URL`, when set explicitly: that server. The tests FLUSH its databases 0 and 1
  (`redis_client` empties db 0 around each test; the published fixtures write to db 1), so
  point it at a Redis of its own, never at one holding data;
- else the Redis tests are skipped, except in CI (`CI=true`, which .ci/run exports), where a
  missing Redis fails them: a CI run must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from urllib.parse import urlsplit, urlunsplit

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NO_REDIS = ("no Redis for the tests: install redis-server (apt-get install redis-server; "
            "`make test` does) or set REDIS_URL to a Redis whose databases 0 and 1 the tests "
            "may flush")


def in_ci() -> bool:
    """True under CI (`CI=true`, as GitHub Actions, GitLab and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def explicit_redis_url(url: str) -> str:
    """REDIS_URL as the tests use it: db 0 of that server (they derive db 1 from it).

    Raises:
        pytest.UsageError: the URL is not redis://HOST:PORT[/DB] or rediss://...
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.query:
        raise pytest.UsageError(f"REDIS_URL={url!r} for the tests must look like "
                                "redis://HOST:PORT[/DB] (no query string)")
    return urlunsplit(parts._replace(path="/0"))


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis server for the session (see the module docstring for which one)."""
    if shutil.which("redis-server") is not None:
        from infra.redis_server import local_redis

        with local_redis() as url:
            yield url
        return
    if os.environ.get("REDIS_URL"):
        import redis

        url = explicit_redis_url(os.environ["REDIS_URL"])
        try:
            redis.Redis.from_url(url, socket_timeout=5).ping()
        except redis.RedisError as e:
            pytest.fail(f"REDIS_URL is set but its Redis does not answer ({e}); fix or unset "
                        "it", pytrace=False)
        yield url
        return
    if in_ci():
        pytest.fail(f"{NO_REDIS} (CI=true: a missing Redis fails instead of skipping)",
                    pytrace=False)
    pytest.skip(NO_REDIS)


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
                   "--namespace=pub",
                   "--model=mf", "--epochs=3", "--dim=8", "--k=20", "--shard_size=50",
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


@contextlib.contextmanager
def recsys_serve(env: dict, log, timeout: float = 90):
    """`recsys serve` (functions-framework's gunicorn) as a subprocess with `env` (None values
    unset) on a free port, its output in the file `log`; yields (url, process) once /health
    answers 200, and stops it afterwards."""
    import subprocess
    import sys
    import time
    import urllib.request

    from infra.redis_server import free_port

    port = free_port()
    env = {**os.environ, **env}
    env = {k: v for k, v in env.items() if v is not None}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"recsys serve did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def monitoring_binary(*names: str) -> str:
    """The path of a Prometheus tool (Debian's `prometheus`, `prometheus-pushgateway`; .ci/run
    installs them); skips the test without it, except under CI=true, where it fails."""
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    message = f"{names[0]} not found: apt-get install {names[0]} (.ci/run does)"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing binary fails instead of skipping)")
    pytest.skip(message)


@pytest.fixture
def pushgateway(tmp_path):
    """A real Pushgateway on a free loopback port; yields its address (HOST:PORT)."""
    import subprocess
    import time

    import requests

    from infra.redis_server import free_port

    binary = monitoring_binary("prometheus-pushgateway", "pushgateway")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, f"--web.listen-address={address}",
         f"--persistence.file={tmp_path / 'pushgateway.data'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{address}/-/ready", timeout=2).ok:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
            time.sleep(0.05)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=20)


def _cluster_or_skip() -> None:
    """Skips (fails under CI=true) a cluster test where redis-server/redis-cli are missing."""
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return
    message = ("no redis-server/redis-cli for the Redis Cluster tests: apt-get install "
               "redis-server (`make test` does)")
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing Redis fails instead of skipping)",
                    pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A real 3-node Redis Cluster for the session (infra.redis_server.local_redis_cluster):
    its `redis+cluster://` URL. Tests that kill a node start their own (`own_redis_cluster`)."""
    _cluster_or_skip()
    from infra.redis_server import local_redis_cluster

    with local_redis_cluster() as (url, _):
        yield url


@pytest.fixture
def own_redis_cluster():
    """A 3-node Redis Cluster of the test's own: (URL, [server processes]) to kill one."""
    _cluster_or_skip()
    from infra.redis_server import local_redis_cluster

    with local_redis_cluster() as cluster:
        yield cluster
