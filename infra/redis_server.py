"""Starts a real, throw-away Redis server process for the demo and the tests."""

from __future__ import annotations

import contextlib
import logging
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
