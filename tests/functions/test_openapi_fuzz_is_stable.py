"""The OpenAPI fuzz (tests/functions/test_openapi.py) sends the same requests on every run:
it is run twice by pytest, under two PYTHONHASHSEEDs, against a stand-in server that records
each request (method, path and query, body, whether X-API-Key was sent) and answers as the
document allows (401, or 200 where no key is asked), so no check fails and nothing is shrunk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FUZZ_TEST = "tests/functions/test_openapi.py::test_no_input_gives_a_server_error"

RECORDER = '''
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SEEN = []
ANSWERS = {"/health": (200, "application/json", b'{"status": "ok"}'),
           "/metrics": (200, "text/plain; version=0.0.4", b"up 1\\n"),
           "/openapi.json": (200, "application/json", b"{}")}


class Recorder(BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        SEEN.append([self.command, self.path, body.decode("utf-8", "backslashreplace"),
                     "X-API-Key" in self.headers])
        default = (401, "application/json", b'{"error": "recorded"}')
        status, content_type, out = ANSWERS.get(self.path.split("?")[0], default)
        if self.command not in ("GET", "POST"):
            status, content_type, out = 405, "application/json", b'{"error": "method"}'
        self.send_response(status)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def handle_one_request(self):  # any method, request lines of any length
        self.raw_requestline = self.rfile.readline(1 << 24)
        if not self.raw_requestline:
            self.close_connection = True
        elif self.parse_request():
            self.answer()
            self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def live_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", None, None
    server.shutdown()
    with open(os.environ["FUZZ_RECORD"], "w") as f:
        json.dump(SEEN, f)
'''


def record_fuzz(tmp_path: Path, hash_seed: str) -> list:
    """The requests of one run of the fuzz test, in order."""
    (tmp_path / "fuzz_recorder.py").write_text(RECORDER)
    record = tmp_path / f"requests-{hash_seed}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
    env.update(PYTHONHASHSEED=hash_seed, FUZZ_RECORD=str(record),
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
         "-p", "fuzz_recorder", FUZZ_TEST],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return json.loads(record.read_text())


# Slow: the fuzz twice, in child pytest processes; it checks the test suite's own determinism.
# Fast loop: the fuzz itself (tests/functions/test_openapi.py).
@pytest.mark.slow
def test_hardening_15_fuzz_sends_the_same_requests_under_any_hash_seed(tmp_path):
    first, second = record_fuzz(tmp_path, "1"), record_fuzz(tmp_path, "2")

    assert len(first) > 50
    assert first == second
    keyed = [with_key for *_, with_key in first]
    assert 0 < sum(keyed) < len(keyed), "some cases should carry the key and some not"
