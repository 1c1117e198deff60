"""Degraded modes with real redis-server processes: Redis lost, nothing published, a bundle
that cannot be read, and the swap when the pointer moves."""

import shutil
import time

import numpy as np
import redis

from infra.redis.lists import ServedLists
from infra.redis_server import free_port, local_redis
from tests.functions.conftest import make_app

KEY = {"X-API-Key": "secret"}


def test_redis_lost_after_start_answers_popular_and_refuses_events(served_env, published,
                                                                   warm_user):
    store, _, summary = published
    with local_redis() as url:
        redis.Redis.from_url(url).set("pub:current", summary["version"])
        app = make_app({**served_env, "REDIS_URL": url}).test_client()
        assert app.get(f"/recommend?user_id={warm_user}&k=3").get_json()["source"] == "popular"
        popular = [i["item_id"] for i in app.get("/recommend?user_id=x&k=4").get_json()["items"]]
    # The redis-server process is gone now.
    started = time.perf_counter()
    r = app.get(f"/recommend?user_id={warm_user}&k=4&exclude={popular[0]}")
    assert r.status_code == 200
    body = r.get_json()
    assert body["source"] == "fallback" and body["model_version"] == summary["version"]
    assert [i["item_id"] for i in body["items"]] == popular[1:] + [body["items"][-1]["item_id"]]
    for _ in range(20):  # while Redis is marked down, answers do not wait for it
        assert app.get("/recommend?user_id=y&k=2").get_json()["source"] == "fallback"
    assert time.perf_counter() - started < 2.0
    r = app.post("/events", json=[{"user_id": "a", "item_id": "1"}], headers=KEY)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "nothing was stored" in r.get_json()["error"]
    health = app.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "degraded"
    assert 'recsys_fallbacks_total{reason="redis_down"}' in app.get("/metrics").get_data(
        as_text=True)


def test_redis_unreachable_before_any_bundle_is_a_503(served_env):
    app = make_app({**served_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    r = app.test_client().get("/recommend?user_id=1")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert app.test_client().get("/health").status_code == 503


def test_nothing_published_yet_is_a_clear_503(served_env):
    app = make_app({**served_env, "RECSYS_NAMESPACE": "never-published"}).test_client()
    r = app.get("/recommend?user_id=1")
    assert r.status_code == 503 and r.headers["Retry-After"] == "60"
    assert "run `recsys nightly` first" in r.get_json()["error"]
    assert app.get("/health").get_json()["status"] == "no_bundle"


def test_an_unreadable_bundle_is_a_503_not_a_500(served_env, redis_client):
    redis_client.set("broken:current", "19990101T000000Z-dead")
    env = {**served_env, "REDIS_URL": served_env["REDIS_URL"].rsplit("/", 1)[0] + "/0",
           "RECSYS_NAMESPACE": "broken"}
    r = make_app(env).test_client().get("/recommend?user_id=1")
    assert r.status_code == 503 and "cannot be read" in r.get_json()["error"]


def test_the_bundle_is_swapped_when_the_pointer_moves(served_env, published, redis_client,
                                                      tmp_path, warm_user):
    store, _, summary = published
    old = summary["version"]
    new = old[:-4] + "beef"
    shutil.copytree(store, tmp_path / "store")
    shutil.copytree(tmp_path / "store" / "bundles" / old, tmp_path / "store" / "bundles" / new)
    lists = ServedLists(redis_client, "swap")
    for version, first in ((old, 0), (new, 1)):
        lists.write_shard(version, "0", [warm_user], np.array([[first, 2, 3]]),
                          np.array([[3.0, 2.0, 1.0]]))
        lists.flip(version, 1)
    lists.rollback(old)
    env = {**served_env, "REDIS_URL": served_env["REDIS_URL"].rsplit("/", 1)[0] + "/0",
           "RECSYS_NAMESPACE": "swap", "RECSYS_STORE": str(tmp_path / "store")}
    app = make_app(env).test_client()
    first = app.get(f"/recommend?user_id={warm_user}&k=1").get_json()
    lists.rollback(new)
    second = app.get(f"/recommend?user_id={warm_user}&k=1").get_json()
    assert (first["model_version"], second["model_version"]) == (old, new)
    assert first["items"][0]["item_id"] != second["items"][0]["item_id"]
