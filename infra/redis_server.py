"""Starts real, throw-away Redis servers for the demo and the tests: one server
(local_redis) or a Redis Cluster of three (local_redis_cluster)."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_redis(port: int | None = None) -> Iterator[str]:
    """Runs `redis-server` (from PATH) on a free loopback port; yields its URL.

    Raises:
        RuntimeError: no redis-server on PATH, with how to install one.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found on PATH: install it (Debian/Ubuntu: "
                           "`apt-get install redis-server`, macOS: `brew install redis`) or "
                           "set REDIS_URL to an existing server.")
    import redis

    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="recsys-redis-") as workdir:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited with {proc.returncode}") from None
                    time.sleep(0.05)
            log.info("started redis-server pid %d at %s", proc.pid, url)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextlib.contextmanager
def local_redis_cluster(nodes: int = 3) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """Runs a throw-away Redis Cluster on loopback: `nodes` primaries (no replicas), each a
    `redis-server --cluster-enabled yes` on a free port, joined by `redis-cli --cluster create`.

    Yields:
        (the cluster's URL for infra.redis.client.connect, `redis+cluster://127.0.0.1:PORT`,
        [the server processes, slots split evenly in port order]): a test may kill one.

    Raises:
        RuntimeError: no redis-server/redis-cli on PATH, or the cluster did not form.
    """
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server and redis-cli not found on PATH: install them "
                           "(Debian/Ubuntu: `apt-get install redis-server`, macOS: "
                           "`brew install redis`)")
    import redis

    ports, procs = _cluster_ports(nodes), []
    with tempfile.TemporaryDirectory(prefix="recsys-redis-cluster-") as workdir:
        try:
            for port in ports:
                procs.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", workdir, "--cluster-enabled", "yes",
                     "--cluster-config-file", f"nodes-{port}.conf",
                     "--cluster-node-timeout", "2000"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for port, proc in zip(ports, procs, strict=True):
                _wait_ping(redis.Redis(port=port), proc)
            subprocess.run([cli, "--cluster", "create",
                            *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=60)
            _wait_cluster_ok([redis.Redis(port=p) for p in ports])
            url = f"redis+cluster://127.0.0.1:{ports[0]}"
            log.info("started a %d-node Redis Cluster at %s", nodes, url)
            yield url, procs
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def _cluster_ports(n: int) -> list[int]:
    """`n` free loopback ports whose cluster bus ports (port + 10000) are free too."""
    ports, rng = [], random.Random()
    while len(ports) < n:
        port = rng.randrange(20_000, 50_000)
        if port in ports:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        ports.append(port)
    return ports


def _wait_ping(client, proc: subprocess.Popen) -> None:
    import redis

    for _ in range(200):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}") from None
            time.sleep(0.05)
    raise RuntimeError("redis-server did not answer within 10 s")


def _wait_cluster_ok(clients) -> None:
    """Waits until every node reports cluster_state:ok (the nodes agree on the slots)."""
    for _ in range(300):
        if all(c.cluster("INFO").get("cluster_state") == "ok" for c in clients):
            return
        time.sleep(0.05)
    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok within 15 s")
