"""Experiments' arms served by /recommend (functions/arms.py): the real nightly's version as
current and a second version published beside it (its lists the same users' lists reversed,
so an answer shows which version served it), on a real redis-server, through the functions
app; the impressions of those answers in NS:impressions."""

import json
import shutil
import time

import numpy as np
import pytest
import redis

from infra.bundle import read_bundle
from infra.redis.codec import decode_list
from infra.redis.experiments import Experiments
from infra.redis.impressions import FIELDS
from infra.redis.lists import ServedLists
from infra.redis.similar import SimilarLists
from infra.store import LocalStore
from models.experiments.assignment import experiment
from tests.functions.conftest import make_app

NS = "arms"
V2, GONE = "v2-arms", "v3-no-bundle"


@pytest.fixture(scope="module")
def versions(published, tmp_path_factory):
    """Namespace `arms` of db 1: the nightly's version current, V2 (a copy of its bundle whose
    lists are reversed) and GONE (lists, no bundle) published beside it; yields (env, client,
    current version, users)."""
    store, redis_url, summary = published
    v1 = summary["version"]
    root = tmp_path_factory.mktemp("arms") / "artifacts"
    shutil.copytree(store, root)
    shutil.copytree(root / "bundles" / v1, root / "bundles" / V2)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{NS}:*"):
        client.delete(key)
    src, lists = ServedLists(client, "pub"), ServedLists(client, NS)
    users = [str(u) for u in read_bundle(LocalStore(str(root)), v1).user_ids]
    got = [src.get_list(v1, u) for u in users]
    items = np.stack([g[0] for g in got])
    scores = np.stack([g[1] for g in got]).astype(np.float32)
    lists.write_shard(v1, "0", users, items, scores)
    lists.flip(v1, len(users))
    for version in (V2, GONE):
        lists.write_shard(version, "0", users, items[:, ::-1], scores)
        lists.flip(version, len(users), move_current=False)
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": str(root), "RECSYS_NAMESPACE": NS,
           "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None, "RECSYS_API_KEY": None}
    yield env, client, v1, users
    for key in client.scan_iter(f"{NS}:*"):
        client.delete(key)


@pytest.fixture
def app(versions):
    env, client, _, _ = versions
    client.delete(f"{NS}:exp:defs", f"{NS}:exp:running", f"{NS}:impressions")
    return make_app(env).test_client()


def _start(client, name: str, b_version: str):
    exp = experiment(name, [{"name": "A", "version": "current", "allocation": 5000},
                            {"name": "B", "version": b_version, "allocation": 5000}], "s1")
    store = Experiments(client, NS)
    store.create(exp)
    store.start(name)
    return exp


def _ids(body) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def _rows(client, key: str = f"{NS}:impressions") -> list[dict]:
    """Every impression of the stream `key` (its entries' batches of rows), as FIELDS dicts."""
    return [dict(zip(FIELDS, row, strict=True)) for _, fields in client.xrange(key)
            for row in json.loads(fields[b"rows"])]


def _impressions(client, since: float, n: int, timeout: float = 5.0) -> list[dict]:
    """The first n impressions of NS:impressions made after `since` (epoch s: an earlier
    test's app may still be writing its own), waiting for the writer (every ~50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [g for g in _rows(client) if g["ts_ms"] >= since * 1000]
        if len(got) >= n or time.monotonic() > deadline:
            return got[:n]
        time.sleep(0.02)


def test_users_get_their_arms_version_and_back_to_current_when_it_stops(app, versions):
    env, client, v1, users = versions
    before = {u: app.get(f"/recommend?user_id={u}&k=5").get_json() for u in users[:40]}
    assert {b["model_version"] for b in before.values()} == {v1}
    assert all(b["experiment"] is None and b["arm"] is None for b in before.values())
    exp = _start(client, "ab", V2)
    names = read_bundle(LocalStore(env["RECSYS_STORE"]), v1).item_ids.tolist()
    arms = set()
    for u in users[:40]:
        arm = exp.arm_for(u).name
        arms.add(arm)
        body = app.get(f"/recommend?user_id={u}&k=5").get_json()
        assert (body["experiment"], body["arm"], body["source"]) == ("ab", arm, "cache")
        if arm == "A":
            assert body["model_version"] == v1 and _ids(body) == _ids(before[u])
        else:  # V2's own cached list: the user's list reversed
            reversed_list = ServedLists(client, NS).get_list(V2, u)[0][:5]
            assert body["model_version"] == V2
            assert _ids(body) == [names[i] for i in reversed_list] != _ids(before[u])
    assert arms == {"A", "B"}
    Experiments(client, NS).stop("ab")
    after = {u: app.get(f"/recommend?user_id={u}&k=5").get_json() for u in users[:40]}
    assert all(b["model_version"] == v1 and b["experiment"] is None and
               _ids(b) == _ids(before[u]) for u, b in after.items())


def test_any_user_id_the_request_rules_take_gets_an_arm(app, versions):
    _, client, v1, _ = versions
    exp = _start(client, "ids", V2)
    try:
        for sent, user in ((7, "7"), (12.0, "12"), ("  ü-名前 ", "ü-名前"), ("x" * 256, "x" * 256)):
            r = app.post("/recommend", json={"user_id": sent, "k": 2})
            assert r.status_code == 200, r.get_json()
            body = r.get_json()
            assert (body["user_id"], body["arm"]) == (user, exp.arm_for(user).name)
            assert body["model_version"] == (V2 if body["arm"] == "B" else v1)
        assert app.post("/recommend", json={"user_id": "a\x00b"}).status_code == 400
    finally:
        Experiments(client, NS).stop("ids")


def test_an_arm_without_a_bundle_or_expired_gets_current_not_a_500(app, versions):
    _, client, v1, users = versions
    exp = _start(client, "no-bundle", GONE)
    assert app.get("/health").get_json()["experiment"] == {"name": "no-bundle",
                                                           "arms": {"A": v1, "B": v1}}
    b_users = [u for u in users if exp.arm_for(u).name == "B"][:5]
    for u in b_users:
        r = app.get(f"/recommend?user_id={u}&k=5")
        assert r.status_code == 200
        body = r.get_json()
        assert (body["model_version"], body["arm"], body["source"]) == (v1, "B", "cache")
    Experiments(client, NS).stop("no-bundle")
    exp = _start(client, "expired", V2)
    u = next(u for u in users if exp.arm_for(u).name == "B")
    assert app.get(f"/recommend?user_id={u}&k=5").get_json()["model_version"] == V2
    assert app.get("/health").get_json()["experiment"]["arms"] == {"A": v1, "B": V2}
    client.zrem(f"{NS}:versions", V2)  # expired under a running experiment
    try:
        body = app.get(f"/recommend?user_id={u}&k=5").get_json()
        assert (body["model_version"], body["arm"]) == (v1, "B")
    finally:
        client.zadd(f"{NS}:versions", {V2: time.time()})
        Experiments(client, NS).stop("expired")


def test_every_answer_is_an_impression_with_its_arm_items_and_status(app, versions):
    _, client, v1, users = versions
    since = time.time()
    exp = _start(client, "imp", V2)
    u = next(u for u in users if exp.arm_for(u).name == "B")
    body = app.get(f"/recommend?user_id={u}&k=4").get_json()
    assert app.get(f"/recommend?user_id={u}&k=0").status_code == 400
    assert app.get("/recommend?user_id=nobody&k=2&category=nope").status_code == 400
    page = app.get("/metrics").get_data(as_text=True)
    assert 'recsys_experiment_requests_total{arm="B",experiment="imp"} 1.0' in page
    assert f'recsys_impressions_total{{arm="B",version="{V2}"}} ' in page  # (process-wide)
    Experiments(client, NS).stop("imp")
    outside = app.get("/recommend?user_id=nobody&k=2").get_json()
    ok, bad_k, bad_category, plain = _impressions(client, since, 4)
    assert ok == {"recommendation_id": body["recommendation_id"], "user_id": u,
                  "experiment": "imp", "arm": "B", "version": V2,
                  "items": _ids(body), "source": "cache", "status": 200,
                  "latency_ms": ok["latency_ms"], "ts_ms": ok["ts_ms"]}
    assert 0 < ok["latency_ms"] < 5000
    assert abs(ok["ts_ms"] - time.time() * 1000) < 60_000
    assert (bad_k["user_id"], bad_k["status"], bad_k["source"], bad_k["items"]) == (
        u, 400, "error", [])
    assert len(bad_k["recommendation_id"]) == 32 and bad_k["experiment"] == ""
    assert (bad_category["status"], bad_category["experiment"], bad_category["arm"]) == (
        400, "imp", "A" if exp.arm_for("nobody").name == "A" else "B")
    assert (plain["experiment"], plain["arm"], plain["version"], plain["source"]) == (
        "", "", v1, "popular")
    assert plain["items"] == _ids(outside)


def test_a_503_is_an_impression_and_the_switch_turns_them_off(versions):
    env, client, _, _ = versions
    client.delete("empty:impressions")
    app = make_app({**env, "RECSYS_NAMESPACE": "empty"}).test_client()
    assert app.get("/recommend?user_id=u1&k=2").status_code == 503  # nothing published
    deadline = time.monotonic() + 5
    while not client.xlen("empty:impressions") and time.monotonic() < deadline:
        time.sleep(0.02)
    (row,) = _rows(client, "empty:impressions")
    assert (row["status"], row["source"], row["user_id"]) == (503, "error", "u1")
    client.delete(f"{NS}:impressions")
    off = make_app({**env, "RECSYS_IMPRESSIONS": "0"}).test_client()
    assert off.get("/recommend?user_id=u1&k=2").status_code == 200
    time.sleep(0.2)
    assert client.xlen(f"{NS}:impressions") == 0
    client.delete("empty:impressions")


def test_forked_workers_each_write_their_answers_and_lose_none_at_a_stop(versions, tmp_path):
    import urllib.request

    from tests.conftest import recsys_serve

    env, client, _, users = versions
    since = time.time()
    exp = _start(client, "live", V2)
    with recsys_serve({**env, "WORKERS": "2", "THREADS": "2"}, tmp_path / "serve.log") as (
            url, _):
        for u in users[:30]:
            with urllib.request.urlopen(f"{url}/recommend?user_id={u}&k=3", timeout=10) as r:
                assert r.status == 200
    # Stopped (SIGTERM) right after the last answer: nothing a worker held is lost.
    Experiments(client, NS).stop("live")
    got = _impressions(client, since, 30, timeout=1)
    assert sorted(g["user_id"] for g in got) == sorted(users[:30])
    assert all(g["version"] == (V2 if exp.arm_for(g["user_id"]).name == "B" else g["version"])
               and g["experiment"] == "live" for g in got)


def test_similar_given_a_user_id_answers_with_their_arms_neighbours(app, versions):
    # /similar answered with the current version whoever asked, so the B arm's users saw
    # the A version's neighbours beside their own version's lists.
    env, client, v1, users = versions
    names = read_bundle(LocalStore(env["RECSYS_STORE"]), v1).item_ids.tolist()
    src, dst = SimilarLists(client, "pub"), SimilarLists(client, NS)
    got = [decode_list(src.read(v1, name)) for name in names]
    width = min(len(i) for i, _ in got)
    idx = np.stack([i[:width] for i, _ in got])
    scores = np.stack([s[:width] for _, s in got]).astype(np.float32)
    dst.write_shard(v1, "0", names, idx, scores)
    dst.write_shard(V2, "0", names, idx[:, ::-1], scores)  # V2: every item's list reversed
    item = names[0]
    plain = app.get(f"/similar?item_id={item}&k=3").get_json()
    assert (plain["model_version"], plain["experiment"], plain["arm"]) == (v1, None, None)
    exp = _start(client, "sim", V2)
    try:
        arms = set()
        for u in users[:20]:
            arm = exp.arm_for(u).name
            arms.add(arm)
            body = app.get(f"/similar?item_id={item}&k=3&user_id={u}").get_json()
            assert (body["experiment"], body["arm"], body["source"]) == ("sim", arm, "cache")
            want = V2 if arm == "B" else v1
            assert body["model_version"] == want
            assert _ids(body) == [names[i] for i in (idx[0, ::-1] if arm == "B" else idx[0])[:3]]
        assert arms == {"A", "B"}
        anonymous = app.get(f"/similar?item_id={item}&k=3").get_json()
        assert (anonymous["model_version"], anonymous["experiment"]) == (v1, None)
        bad = app.get(f"/similar?item_id={item}&user_id=a%00b")
        assert bad.status_code == 400 and "user_id" in bad.get_json()["error"]
    finally:
        Experiments(client, NS).stop("sim")
