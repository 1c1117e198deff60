"""The serving chain on a real local 3-node Redis Cluster (issue 20): a real nightly publishes,
the functions (REDIS_URL=redis+cluster://...) answer warm users from their cached lists, take
events (de-duplicated, into the user's history and their bucket's stream), and when a node is
killed during reads every answer is still a 200 (the user's list if its node lives, else the
fallback), never a 500. `pytest -m cluster` runs them."""

from __future__ import annotations

import time

import pytest

from batch.nightly import run
from infra.bundle import read_bundle
from infra.redis.client import connect
from infra.redis.event_stream import EventStream
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from tests.functions.conftest import make_app

pytestmark = pytest.mark.cluster

NS = "fc"
KEY = {"X-API-Key": "secret"}


def _publish(url, dataset, root):
    path = root / "interactions.parquet"
    dataset.interactions.to_parquet(path)
    summary = run([f"--input={path}", f"--store={root / 'artifacts'}", f"--redis_url={url}",
                   f"--namespace={NS}", "--model=mf", "--epochs=2", "--dim=8", "--k=10",
                   "--shard_size=60", "--skip_gate"])
    return str(root / "artifacts"), summary


def _env(url, store):
    return {"REDIS_URL": url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": NS,
            "RECSYS_API_KEY": "secret", "RECSYS_ADMIN_KEY": "admin",
            "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None,
            "RECSYS_REDIS_TIMEOUT_S": "0.5", "RECSYS_REDIS_RETRY_S": "0.2"}


def test_serving_chain_and_a_node_killed_during_reads(own_redis_cluster, tiny_dataset,
                                                      tmp_path):
    url, procs = own_redis_cluster
    store, summary = _publish(url, tiny_dataset, tmp_path)
    bundle = read_bundle(LocalStore(store), summary["version"])
    app = make_app(_env(url, store)).test_client()
    lists = ServedLists(connect(url), NS)
    user = str(bundle.user_ids[0])
    body = app.get(f"/recommend?user_id={user}&k=5").get_json()
    cached, _ = lists.get_list(summary["version"], user)
    assert body["source"] == "cache" and body["model_version"] == summary["version"]
    assert [i["item_id"] for i in body["items"]] == [bundle.item_ids[i] for i in cached[:5]]
    events = [{"event_id": "c1", "user_id": "fresh-1", "item_id": str(bundle.item_ids[3]),
               "event_type": "click", "timestamp": 1_700_000_000}]
    for _ in range(2):  # the resend is skipped
        assert app.post("/events", json=events, headers=KEY).status_code == 200
    stream = EventStream(lists.r, NS)
    assert stream.history("fresh-1") == [str(bundle.item_ids[3])]
    assert sum(lists.r.xlen(s) for s in stream.keys.event_streams) == 1
    assert app.get("/health").get_json()["status"] == "ok"

    # Kill the node holding the most users' lists (not the pointer's), then read on.
    pointer_port = lists.r.get_node_from_key(lists.keys.current).port
    ports = {str(lists.r.get_node_from_key(lists.keys.user(summary["version"], str(u))).port)
             for u in bundle.user_ids}
    victim = next(p for p in procs if str(pointer_port) not in " ".join(p.args)
                  and any(port in p.args for port in ports))
    victim.kill()
    victim.wait()
    sources, started = [], time.monotonic()
    while time.monotonic() - started < 4:  # the cluster marks the node failed after 2 s
        for u in bundle.user_ids[:30]:
            r = app.get(f"/recommend?user_id={u}&k=5")
            assert r.status_code == 200, r.get_data(as_text=True)
            assert len(r.get_json()["items"]) == 5
            sources.append(r.get_json()["source"])
    assert "fallback" in sources or "popular" in sources, set(sources)
    assert app.get("/health").status_code in (200, 503)


def test_a_cluster_unreachable_at_start_is_a_503_not_a_crash(tmp_path):
    from infra.redis_server import free_port

    url = f"redis+cluster://127.0.0.1:{free_port()}"
    app = make_app(_env(url, str(tmp_path / "artifacts"))).test_client()
    r = app.get("/recommend?user_id=1")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
