"""The functions through functions-framework's test client, on a real published version."""

import functions_framework
import pytest

SOURCE = "functions/main.py"


@pytest.fixture(scope="module")
def client(published):
    store, redis_url, summary = published
    mp = pytest.MonkeyPatch()
    mp.setenv("REDIS_URL", redis_url.rsplit("/", 1)[0] + "/1")
    mp.setenv("RECSYS_STORE", store)
    mp.setenv("RECSYS_NAMESPACE", "pub")
    mp.setenv("RECSYS_API_KEY", "secret")
    yield functions_framework.create_app("router", SOURCE).test_client(), summary
    mp.undo()


def test_warm_user_gets_the_cached_list(client, tiny_dataset):
    app, summary = client
    user = tiny_dataset.interactions["user_id"].iloc[0]
    r = app.get(f"/recommend?user_id={user}&k=5")
    assert r.status_code == 200
    body = r.get_json()
    assert body["source"] == "cache" and body["model_version"] == summary["version"]
    assert len(body["items"]) == 5 and body["recommendation_id"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_fresh_user_ranks_on_demand_from_posted_events(client, tiny_dataset):
    app, _ = client
    items = tiny_dataset.interactions["item_id"].drop_duplicates().iloc[:3].tolist()
    events = [{"user_id": "brand-new", "item_id": i, "event_type": "click"} for i in items]
    assert app.post("/events", json={"events": events}).status_code == 401
    r = app.post("/events", json={"events": events}, headers={"X-API-Key": "secret"})
    assert r.status_code == 200 and r.get_json()["stored"] == 3
    body = app.get("/recommend?user_id=brand-new&k=7").get_json()
    assert body["source"] == "on_demand" and len(body["items"]) == 7
    assert not {i["item_id"] for i in body["items"]} & set(items)


def test_events_in_the_request_also_rank_on_demand(client, tiny_dataset):
    app, _ = client
    item = tiny_dataset.interactions["item_id"].iloc[0]
    body = app.get(f"/recommend?user_id=other-new&k=4&events={item}").get_json()
    assert body["source"] == "on_demand"
    assert item not in {i["item_id"] for i in body["items"]}


def test_unknown_user_without_events_gets_popular(client):
    app, _ = client
    body = app.get("/recommend?user_id=nobody-at-all&k=3").get_json()
    assert body["source"] == "popular" and len(body["items"]) == 3


@pytest.mark.parametrize("query,message", [
    ("k=3", "user_id is required"),
    ("user_id=1&k=abc", "k must be an integer"),
    ("user_id=1&k=0", "k must be between 1 and"),
])
def test_bad_requests_are_400_with_the_reason(client, query, message):
    app, _ = client
    r = app.get(f"/recommend?{query}")
    assert r.status_code == 400 and message in r.get_json()["error"]


def test_bad_events_are_reported_and_valid_ones_kept(client):
    app, _ = client
    r = app.post("/events", headers={"X-API-Key": "secret"}, json={"events": [
        {"user_id": "e1", "item_id": "1", "event_type": "view"},
        {"user_id": "e1", "event_type": "view"},
        {"user_id": "e1", "item_id": "2", "event_type": "levitate"}]})
    assert r.status_code == 400
    body = r.get_json()
    assert body["stored"] == 1
    assert body["rejected"] == [{"index": 1, "reason": "missing item_id"},
                                {"index": 2, "reason": "unknown event_type"}]


def test_health_names_the_version(client):
    app, summary = client
    r = app.get("/health")
    assert r.status_code == 200 and r.get_json()["model_version"] == summary["version"]
