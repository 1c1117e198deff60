"""Issue 15, finding 10: request bodies are limited (413) on every endpoint, with or without
Content-Length, in functions-framework's real gunicorn server (`recsys serve`)."""

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from infra.redis_server import free_port
from tests.functions.conftest import make_app

LIMIT = 64 * 1024
ADMIN_LIMIT = LIMIT + 1024
KEY = {"X-API-Key": "secret"}


@pytest.fixture(scope="module")
def small_limit_server(served_env, tmp_path_factory):
    """`recsys serve` (one worker) with RECSYS_MAX_BODY_BYTES=64 KiB; yields (port, worker pid)."""
    port, log = free_port(), tmp_path_factory.mktemp("limits") / "server.log"
    env = {**os.environ, **{k: v for k, v in served_env.items() if v is not None},
           "RECSYS_MAX_BODY_BYTES": str(LIMIT), "RECSYS_MAX_ADMIN_BODY_BYTES": str(ADMIN_LIMIT),
           "WORKERS": "1", "THREADS": "2", "RECSYS_REQUEST_LOG": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"recsys serve did not start: {log.read_text()}") from None
                time.sleep(0.1)
        workers = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        yield port, int(workers[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def _post(port: int, path: str, body, chunked: bool = False, headers: dict | None = None,
          method: str = "POST"):
    """(status, parsed JSON or None) of one POST (or `method`) on a new connection; None, None
    when the server closed the connection before the client could read an answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        for name, value in {"Content-Type": "application/json", **KEY, **(headers or {})}.items():
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for part in body:
                conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    except (BrokenPipeError, ConnectionResetError):
        return None, None
    finally:
        conn.close()


def _events(n_bytes: int) -> bytes:
    """A valid /events body of at least `n_bytes` (events of 200-character ids)."""
    event = {"user_id": "u" * 200, "item_id": "1", "event_type": "view"}
    n = n_bytes // len(json.dumps(event)) + 1
    return json.dumps({"events": [{**event, "event_id": f"lim-{i}"} for i in range(n)]}).encode()


def _peak_rss_kb(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_hardening_10_a_body_over_the_limit_is_413_and_the_server_stays_fine(
        small_limit_server, chunked):
    port, _ = small_limit_server
    # Over the /admin/items limit too, and small enough for gunicorn to drain what is unread
    # (64 KiB, then 64 KiB more on close), so that the close does not reset the connection.
    big = _events(ADMIN_LIMIT + 1)
    for path in ("/recommend", "/events", "/health", "/admin/items", "/nowhere"):
        parts = [big[i:i + 4096] for i in range(0, len(big), 4096)] if chunked else big
        status, body = _post(port, path, parts, chunked)
        assert status == 413, (path, body)
        limit = ADMIN_LIMIT if path == "/admin/items" else LIMIT
        assert f"larger than {limit} bytes" in body["error"]
    # Just under the limit is read and validated as usual.
    fits = json.dumps({"events": [{"user_id": "fit", "item_id": "1", "event_id": "fit-1",
                                   "note": "x" * (LIMIT - 200)}]}).encode()
    assert len(fits) <= LIMIT
    parts = [fits[i:i + 4096] for i in range(0, len(fits), 4096)] if chunked else fits
    status, body = _post(port, "/events", parts, chunked)
    assert status == 200 and body["event_ids"] == ["fit-1"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        assert r.status == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_a_get_with_a_body_over_the_limit_is_413(small_limit_server, chunked):
    """read_body skips the stream only when the request has neither Content-Length nor
    Transfer-Encoding (no body by HTTP framing): a GET that does send one is still bounded."""
    port, _ = small_limit_server
    big = _events(LIMIT + 1)
    parts = [big[i:i + 4096] for i in range(0, len(big), 4096)] if chunked else big
    status, body = _post(port, "/recommend?user_id=1", parts, chunked, method="GET")
    assert status == 413, body
    assert f"larger than {LIMIT} bytes" in body["error"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/recommend?user_id=1", timeout=5) as r:
        assert r.status == 200  # without a body: answered as usual


def test_hardening_10_a_huge_streamed_body_does_not_grow_the_worker(small_limit_server):
    port, worker = small_limit_server
    before = _peak_rss_kb(worker)
    chunk = b"[" + b"1," * (1 << 19)  # ~1 MiB

    def endless():  # 200 MiB, chunked: no Content-Length to refuse it by
        for _ in range(200):
            yield chunk

    started = time.monotonic()
    status, body = _post(port, "/events", endless(), chunked=True)
    grown = _peak_rss_kb(worker) - before
    assert grown < 32 * 1024, f"the worker's peak grew by {grown} KiB"  # body not kept
    assert status in (413, None), body  # 413, or the connection closed while still sending
    assert time.monotonic() - started < 20
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        assert r.status == 200


def test_hardening_10_every_endpoint_answers_413_in_the_test_client(served_env):
    app = make_app({**served_env, "RECSYS_MAX_BODY_BYTES": "2048"}).test_client()
    big = b" " * 2049  # even where the body is never parsed
    for method, path in (("post", "/recommend"), ("post", "/events"), ("get", "/health"),
                         ("get", "/recommend?user_id=1"), ("get", "/metrics")):
        r = getattr(app, method)(path, data=big, headers={**KEY, "Content-Type":
                                                          "application/json"})
        assert r.status_code == 413 and "2048 bytes" in r.get_json()["error"], path
    ok = app.post("/recommend", data=b'{"user_id": "1"}' + b" " * 2030,
                  headers={"Content-Type": "application/json"})
    assert ok.status_code == 200
