"""The functions through functions-framework's test client, on a real published version and a
real redis-server."""

import json

import pytest

from tests.functions.conftest import make_app

KEY = {"X-API-Key": "secret"}
ADMIN = {"X-API-Key": "admin"}


def _items(body):
    return [i["item_id"] for i in body["items"]]


def test_warm_user_gets_the_cached_list(client, warm_user):
    app, summary = client
    r = app.get(f"/recommend?user_id={warm_user}&k=5")
    assert r.status_code == 200
    body = r.get_json()
    assert body["source"] == "cache" and body["model_version"] == summary["version"]
    assert len(body["items"]) == 5 and body["recommendation_id"] and body["next_cursor"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_pages_never_repeat_an_item(client, warm_user):
    app, _ = client
    seen, cursor, sources = [], None, set()
    for _ in range(8):  # 8 pages of 9 cross the 20-item nightly list into the fills
        url = f"/recommend?user_id={warm_user}&k=9" + (f"&cursor={cursor}" if cursor else "")
        body = app.get(url).get_json()
        seen += _items(body)
        sources |= {body["source"], *body["filled_by"]}
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and len(seen) > 20
    assert {"cache", "popular"} <= sources
    r = app.get(f"/recommend?user_id=someone-else&k=3&cursor={cursor or 'x'}")
    assert r.status_code == 400 and "cursor" in r.get_json()["error"]


def test_a_short_list_is_filled_by_the_next_sources(client, warm_user, tiny_dataset):
    app, _ = client
    body = app.post("/recommend", json={"user_id": warm_user, "k": 30}).get_json()
    assert body["source"] == "cache" and body["filled_by"] == ["popular"]
    assert len(body["items"]) == 30 and len(set(_items(body))) == 30
    assert body["items"][-1]["score"] is None  # popular items carry no score
    # With recent events, the on-demand ranking comes before popularity.
    item = tiny_dataset.interactions["item_id"].iloc[5]
    body = app.post("/recommend", json={"user_id": warm_user, "k": 30, "events": [item],
                                        "features": {"country": "JP"}}).get_json()
    assert body["filled_by"][0] == "on_demand" and item not in _items(body)


def test_fresh_user_ranks_on_demand_from_posted_events(client, tiny_dataset):
    app, _ = client
    items = tiny_dataset.interactions["item_id"].drop_duplicates().iloc[:3].tolist()
    events = [{"user_id": "brand-new", "item_id": i, "event_type": "click"} for i in items]
    assert app.post("/events", json={"events": events}).status_code == 401
    r = app.post("/events", json={"events": events}, headers=KEY)
    assert r.status_code == 200 and r.get_json()["stored"] == 3
    body = app.get("/recommend?user_id=brand-new&k=7").get_json()
    assert body["source"] == "on_demand" and len(body["items"]) == 7
    assert not {i["item_id"] for i in body["items"]} & set(items)


def test_items_touched_since_the_nightly_run_are_filtered(client, warm_user):
    app, _ = client
    top = _items(app.get(f"/recommend?user_id={warm_user}&k=3").get_json())
    event = {"user_id": warm_user, "item_id": top[0], "event_type": "view"}
    assert app.post("/events", json={"events": [event]}, headers=KEY).status_code == 200
    after = app.get(f"/recommend?user_id={warm_user}&k=3").get_json()
    assert after["source"] == "cache" and top[0] not in _items(after)
    assert _items(after)[:2] == top[1:]


def test_unavailable_and_excluded_items_never_come_back(client, warm_user):
    app, _ = client
    top = _items(app.get(f"/recommend?user_id={warm_user}&k=4").get_json())
    popular = _items(app.get("/recommend?user_id=nobody&k=2").get_json())
    assert app.post("/admin/items", json={"unavailable": [top[0], popular[0]]}).status_code == 401
    r = app.post("/admin/items", json={"unavailable": [top[0], popular[0]]}, headers=ADMIN)
    assert r.status_code == 200
    try:
        cached = _items(app.get(f"/recommend?user_id={warm_user}&k=4&exclude={top[1]}")
                        .get_json())
        assert not {top[0], top[1]} & set(cached)
        assert popular[0] not in _items(app.get("/recommend?user_id=nobody&k=2").get_json())
        fresh = _items(app.get(f"/recommend?user_id=new2&k=30&events={top[2]}").get_json())
        assert not {top[0], popular[0], top[2]} & set(fresh)
        assert app.get("/admin/items", headers=ADMIN).get_json()["unavailable"] == sorted(
            [top[0], popular[0]])
    finally:
        app.post("/admin/items", json={"available": [top[0], popular[0]]}, headers=ADMIN)
    assert top[0] in _items(app.get(f"/recommend?user_id={warm_user}&k=4").get_json())


def test_category_filter_applies_to_every_source(client, warm_user, tiny_dataset):
    app, _ = client
    categories = dict(zip(tiny_dataset.items.item_id, tiny_dataset.items.category, strict=True))
    app.post("/admin/items", json={"categories": categories}, headers=ADMIN)
    wanted = tiny_dataset.items.category.value_counts().index[0]
    for url in (f"/recommend?user_id={warm_user}&k=5&category={wanted}",
                "/recommend?user_id=nobody&k=5&category=" + wanted,
                f"/recommend?user_id=new3&k=5&events=1&category={wanted}"):
        body = app.get(url).get_json()
        assert body["items"] and {categories[i] for i in _items(body)} == {wanted}, url


def test_unknown_user_without_events_gets_popular(client):
    app, _ = client
    body = app.get("/recommend?user_id=nobody-at-all&k=3").get_json()
    assert body["source"] == "popular" and len(body["items"]) == 3


@pytest.mark.parametrize("query,message", [
    ("k=3", "user_id is required"),
    ("user_id=1&k=abc", "k must be an integer"),
    ("user_id=1&k=0", "k must be between 1 and"),
    ("user_id=1&k=101", "k must be between 1 and"),
    ("user_id=1&cursor=%25%25", "cursor is not valid"),
    ("user_id=" + "x" * 300, "longer than 256"),
])
def test_bad_requests_are_400_with_the_reason(client, query, message):
    app, _ = client
    r = app.get(f"/recommend?{query}")
    assert r.status_code == 400 and message in r.get_json()["error"]


@pytest.mark.parametrize("body,message", [
    ([1], "POST body must be a JSON object"),
    ({"user_id": {"a": 1}}, "user_id must be a string or a finite number"),
    ({"user_id": "1", "k": 2.5}, "k must be an integer"),
    ({"user_id": "1", "events": 3}, "events must be a list"),
    ({"user_id": "1", "features": [1]}, "features must be an object"),
])
def test_bad_post_bodies_are_400(client, body, message):
    app, _ = client
    r = app.post("/recommend", json=body)
    assert r.status_code == 400 and message in r.get_json()["error"]


def test_bad_events_are_reported_and_valid_ones_kept(client):
    app, _ = client
    r = app.post("/events", headers=KEY, json={"events": [
        {"user_id": "e1", "item_id": "1", "event_type": "view"},
        {"user_id": "e1", "event_type": "view"},
        {"user_id": "e1", "item_id": "2", "event_type": "levitate"},
        {"user_id": "e1", "item_id": "3", "timestamp": "yesterday-ish"},
        {"user_id": ["e1"], "item_id": "3"},
        "not an object"]})
    assert r.status_code == 400
    body = r.get_json()
    assert body["stored"] == 1
    assert body["rejected"] == [
        {"index": 1, "reason": "missing item_id"},
        {"index": 2, "reason": "unknown event_type"},
        {"index": 3, "reason": "unparseable timestamp"},
        {"index": 4, "reason": "user_id must be a string or a finite number"},
        {"index": 5, "reason": "event must be a JSON object"}]


def test_a_resent_event_is_stored_once(client):
    app, _ = client
    event = {"user_id": "r1", "item_id": "4", "event_type": "purchase", "event_id": "ev-1",
             "recommendation_id": "abc"}
    first = app.post("/events", json={"events": [event]}, headers=KEY).get_json()
    again = app.post("/events", json=[event], headers=KEY).get_json()
    assert (first["stored"], again["stored"], again["duplicates"]) == (1, 0, 1)
    # Without an id, the same content (timestamp included) is the same event.
    plain = {"user_id": "r1", "item_id": "5", "timestamp": 1_750_000_000}
    ids = [app.post("/events", json=[plain], headers=KEY).get_json() for _ in range(2)]
    assert ids[0]["event_ids"] == ids[1]["event_ids"] and ids[1]["duplicates"] == 1


def test_health_names_the_version(client):
    app, summary = client
    r = app.get("/health")
    assert r.status_code == 200 and r.get_json()["model_version"] == summary["version"]
    assert r.get_json()["status"] == "ok" and r.get_json()["on_demand"] is True


def _metrics(app) -> dict[str, float]:
    """GET /metrics as {'name{labels}': value}."""
    r = app.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    samples = (line.rsplit(" ", 1) for line in r.get_data(as_text=True).splitlines()
               if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def test_metrics_count_sources_hits_and_events(client, warm_user):
    # The metrics are the process's: what other tests counted is there too, so this test
    # compares the figures before and after its own two requests.
    app, _ = client
    before = _metrics(app)
    app.get(f"/recommend?user_id={warm_user}&k=2")
    app.post("/events", json=[{"user_id": "m", "item_id": "1"}], headers=KEY)
    after = _metrics(app)

    def added(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    latency = 'recsys_request_seconds_{}{{{}path="recommend",source="cache"}}'
    assert added(latency.format("bucket", 'le="+Inf",')) == added(latency.format("count", "")) == 1
    assert added(latency.format("sum", "")) > 0
    assert added('recsys_recommendations_total{source="cache"}') == 1
    assert added('recsys_cache_lookups_total{result="hit"}') == 1
    assert added('recsys_cache_lookups_total{result="miss"}') == 0
    assert added('recsys_events_total{result="stored"}') == 1
    assert added('recsys_events_total{result="rejected"}') == 0
    assert added('recsys_requests_total{code="200",path="recommend"}') == 1


def test_one_json_log_line_per_request(client, warm_user, capsys):
    app, summary = client
    capsys.readouterr()
    body = app.get(f"/recommend?user_id={warm_user}&k=2").get_json()
    app.get("/recommend?k=2")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["status"], x["source"]) for x in lines] == [(200, "cache"), (400, "-")]
    assert lines[0]["version"] == summary["version"] and lines[0]["latency_ms"] > 0
    assert lines[0]["recommendation_id"] == body["recommendation_id"]
    assert lines[0]["message"] == "GET recommend 200" and lines[0]["severity"] == "INFO"


def test_openapi_document_is_served(client):
    app, _ = client
    doc = app.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and {"/recommend", "/events", "/health"} <= set(
        doc["paths"])


def test_keys_are_configurable(served_env, warm_user):
    read = {"X-API-Key": "read-key-0123456789abcdef"}
    app = make_app({**served_env, "RECSYS_RECOMMEND_KEY": read["X-API-Key"]}).test_client()
    assert app.get(f"/recommend?user_id={warm_user}").status_code == 401
    assert app.get(f"/recommend?user_id={warm_user}", headers=read).status_code == 200
    open_app = make_app({**served_env, "RECSYS_API_KEY": None, "RECSYS_ADMIN_KEY": None})
    client = open_app.test_client()
    assert client.post("/events", json=[{"user_id": "o", "item_id": "1"}]).status_code == 200
    r = client.post("/admin/items", json={"unavailable": ["1"]})
    assert r.status_code == 403 and "RECSYS_ADMIN_KEY" in r.get_json()["error"]


def test_each_function_alone_also_serves_metrics_and_openapi(served_env, warm_user):
    app = make_app(served_env, target="recommend").test_client()
    assert app.get(f"/?user_id={warm_user}").get_json()["source"] == "cache"
    assert app.get("/openapi.json").get_json()["openapi"].startswith("3.")
    assert "recsys_request_seconds" in app.get("/metrics").get_data(as_text=True)
