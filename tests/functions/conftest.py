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
    from tests.conftest import recsys_serve

    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**served_env, "RECSYS_POINTER_TTL_S": "2", "WORKERS": "1", "THREADS": "4"}
    with recsys_serve(env, log, timeout=60) as (url, proc):
        yield url, log, proc.pid
