"""Fixtures for the functions: apps built by functions-framework from functions/main.py."""

import functions_framework
import pytest

SOURCE = "functions/main.py"


def make_app(env: dict, target: str = "router"):
    """A fresh functions-framework app: functions/main.py reads its environment at import."""
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        if value is None:
            mp.delenv(name, raising=False)
        else:
            mp.setenv(name, value)
    try:
        return functions_framework.create_app(target, SOURCE)
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def served_env(published):
    """The environment of functions serving the `published` version (pointer read each call)."""
    store, redis_url, summary = published
    return {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": "pub",
            "RECSYS_API_KEY": "secret", "RECSYS_ADMIN_KEY": "admin",
            "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None}


@pytest.fixture(scope="module")
def client(served_env, published):
    return make_app(served_env).test_client(), published[2]


@pytest.fixture(scope="session")
def warm_user(tiny_dataset):
    return str(tiny_dataset.interactions["user_id"].iloc[0])


@pytest.fixture(scope="session")
def live_server(served_env, tmp_path_factory):
    """`recsys serve` (functions-framework's gunicorn) as a subprocess; yields (url, log, pid)."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from infra.redis_server import free_port

    port, log = free_port(), tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, **{k: v for k, v in served_env.items() if v is not None},
           "RECSYS_POINTER_TTL_S": "2", "WORKERS": "1", "THREADS": "4"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"recsys serve did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url, log, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
