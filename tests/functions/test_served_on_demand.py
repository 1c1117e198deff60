"""Functions serving a --model served bundle: a fresh user's on-demand answer is the model's own
ServedModel.recommend_indices for the same history and features (batch/online parity), the
live filters are its exclusions, and no TensorFlow is imported."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from infra.bundle import read_bundle
from infra.store import LocalStore
from models import served_bundle
from tests.functions.conftest import make_app

KEY = {"X-API-Key": "secret"}
ADMIN = {"X-API-Key": "admin"}
FEATURES = {"country": "JP", "age_bucket": "25-34"}


@pytest.fixture(scope="module")
def served_env(published_served):
    store, redis_url, _, _ = published_served
    return {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": "srv",
            "RECSYS_API_KEY": "secret", "RECSYS_ADMIN_KEY": "admin",
            "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None}


@pytest.fixture(scope="module")
def app(served_env):
    return make_app(served_env).test_client()


@pytest.fixture(scope="module")
def models(published_served, tmp_path_factory):
    """The published bundle's model on LiteRT (the functions' runtime) and on the TF graph."""
    store, _, summary, _ = published_served
    bundle = read_bundle(LocalStore(store), summary["version"])
    folder = bundle.extract("served", str(tmp_path_factory.mktemp("served")))
    return (served_bundle.load(folder, runtime="litert"),
            served_bundle.load(folder, runtime="tf"), bundle.item_ids)


def _answer(model, history: list[str], features, k: int, exclude=(), user="fresh"):
    I, S = model.recommend_indices(
        model.history_indices([history]), model.user_tokens([features]),
        model.context([user], fresh=True), k,
        [model.history_indices([list(exclude)])[0]])
    keep = I[0] >= 0
    return I[0][keep], S[0][keep]


def _post_history(app, user: str, items: list[str]) -> None:
    events = [{"user_id": user, "item_id": i, "event_type": "click"} for i in items]
    assert app.post("/events", json={"events": events}, headers=KEY).get_json()["stored"] == len(
        items)


def test_fresh_user_on_demand_equals_the_models_answer(app, models, tiny_dataset):
    lite, graph, item_ids = models
    items = tiny_dataset.interactions["item_id"].drop_duplicates().tolist()
    _post_history(app, "parity-1", items[:3])
    body = app.post("/recommend", json={"user_id": "parity-1", "k": 10, "events": [items[3]],
                                        "features": FEATURES}).get_json()
    assert body["source"] == "on_demand" and body["filled_by"] == []
    got = [i["item_id"] for i in body["items"]]
    I, S = _answer(lite, items[:4], FEATURES, 10)
    assert got == item_ids[I].tolist() and len(got) == 10
    np.testing.assert_allclose([i["score"] for i in body["items"]], S, atol=6e-5)
    assert got == item_ids[_answer(graph, items[:4], FEATURES, 10)[0]].tolist()  # TF graph
    assert not set(got) & set(items[:4])
    other = app.post("/recommend", json={"user_id": "parity-1", "k": 10, "events": [items[3]],
                                         "features": {"country": "US"}}).get_json()
    assert [i["item_id"] for i in other["items"]] == item_ids[
        _answer(lite, items[:4], {"country": "US"}, 10)[0]].tolist()


def test_live_filters_are_the_models_exclusions(app, models, tiny_dataset):
    lite, _, item_ids = models
    items = tiny_dataset.interactions["item_id"].drop_duplicates().tolist()
    history = items[5:9]
    _post_history(app, "parity-2", history)
    full = item_ids[_answer(lite, history, None, 12)[0]].tolist()
    gone, excluded = full[0], full[2]
    assert app.post("/admin/items", json={"unavailable": [gone]}, headers=ADMIN).status_code == 200
    try:
        first = app.get(f"/recommend?user_id=parity-2&k=4&exclude={excluded}").get_json()
        page1 = [i["item_id"] for i in first["items"]]
        assert page1 == item_ids[_answer(lite, history, None, 4, [gone, excluded])[0]].tolist()
        assert page1 == [i for i in full if i not in (gone, excluded)][:4]  # ranked, then cut
        second = app.get(f"/recommend?user_id=parity-2&k=4&exclude={excluded}"
                         f"&cursor={first['next_cursor']}").get_json()
        page2 = [i["item_id"] for i in second["items"]]
        assert second["source"] == "on_demand"
        assert page2 == item_ids[_answer(lite, history, None, 4,
                                         [gone, excluded, *page1])[0]].tolist()
    finally:
        app.post("/admin/items", json={"available": [gone]}, headers=ADMIN)


def test_features_alone_rank_a_user_without_history(app, models):
    lite, _, item_ids = models
    body = app.post("/recommend", json={"user_id": "features-only", "k": 5,
                                        "features": FEATURES}).get_json()
    assert body["source"] == "on_demand"
    assert [i["item_id"] for i in body["items"]] == item_ids[
        _answer(lite, [], FEATURES, 5)[0]].tolist()
    plain = app.get("/recommend?user_id=nobody-at-all&k=5").get_json()
    assert plain["source"] == "popular"  # neither history nor features


def test_warm_user_gets_the_nightly_list(app, published_served, tiny_dataset):
    from infra.redis.lists import ServedLists

    _, redis_url, summary, _ = published_served
    user = str(tiny_dataset.interactions["user_id"].iloc[0])
    items, _ = ServedLists.from_url(redis_url, "srv").get_list(summary["version"], user)
    body = app.get(f"/recommend?user_id={user}&k=5").get_json()
    bundle_items = read_bundle(LocalStore(published_served[0]), summary["version"]).item_ids
    assert body["source"] == "cache" and body["model_version"] == summary["version"]
    assert [i["item_id"] for i in body["items"]] == bundle_items[items[:5]].tolist()
    health = app.get("/health").get_json()
    assert health["on_demand"] is True and health["items"] == len(bundle_items)


def test_served_bundle_paths_import_no_tensorflow(served_env, tiny_dataset):
    user = str(tiny_dataset.interactions["user_id"].iloc[0])
    code = textwrap.dedent(f"""
        import json, sys
        import functions_framework
        app = functions_framework.create_app("router", "functions/main.py").test_client()
        cached = app.get("/recommend?user_id={user}&k=3").get_json()["source"]
        fresh = app.post("/recommend", json={{"user_id": "no-tf", "k": 3, "events": ["1", "2"],
                                              "features": {{"country": "JP"}}}}).get_json()
        heavy = sorted(m for m in ("tensorflow", "keras", "apache_beam") if m in sys.modules)
        print(json.dumps([cached, fresh["source"], len(fresh["items"]), heavy]))
    """)
    env = {k: v for k, v in served_env.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": ""}, text=True,
                         capture_output=True, check=True, cwd=".").stdout
    assert json.loads(out.splitlines()[-1]) == ["cache", "on_demand", 3, []]
