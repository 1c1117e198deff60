"""Which Redis the tests get (tests/conftest.py `redis_url`): checked by running pytest on a
one-test file in a subprocess, with redis-server hidden from PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
def test_probe(redis_client):
    redis_client.set("probe", "1")
    assert redis_client.get("probe") == b"1"
"""


def _path_without_redis_server() -> str:
    """PATH minus every folder that holds a redis-server."""
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "redis-server").exists()]
    return os.pathsep.join(kept)


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """pytest on PROBE with the project's conftest as a plugin and redis-server off PATH."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CI")}
    clean.update(PATH=_path_without_redis_server(), PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120)


def test_probe_runs_without_redis_server_on_path(tmp_path):
    assert shutil.which("redis-server", path=_path_without_redis_server()) is None


def test_hardening_15_redis_tests_use_redis_url_when_redis_server_is_missing(tmp_path,
                                                                              redis_url):
    result = run_probe(tmp_path, REDIS_URL=redis_url)

    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0


def test_hardening_15_missing_redis_fails_in_ci_and_skips_elsewhere(tmp_path):
    in_ci = run_probe(tmp_path, CI="true")
    elsewhere = run_probe(tmp_path)

    assert in_ci.returncode != 0 and "1 error" in in_ci.stdout, in_ci.stdout + in_ci.stderr
    assert "no Redis for the tests" in in_ci.stdout
    assert elsewhere.returncode == 0 and "1 skipped" in elsewhere.stdout, elsewhere.stdout


def test_unreachable_redis_url_fails_and_says_so(tmp_path):
    from infra.redis_server import free_port

    result = run_probe(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    assert result.returncode != 0 and "1 error" in result.stdout, result.stdout
    assert "REDIS_URL is set but its Redis does not answer" in result.stdout
