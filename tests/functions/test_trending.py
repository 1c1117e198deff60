"""GET|POST /trending and the fresh users' trending fallback, on a version published by the real
nightly job: events posted to /events show in /trending within a minute; through
functions-framework's test client (and the real HTTP server for the burst) and redis-server."""

import json
import time
import urllib.request

import pytest
import redis

from functions.trending import MIN_ITEMS

KEY = {"X-API-Key": "secret"}
ADMIN = {"X-API-Key": "admin"}


def _items(body):
    return [i["item_id"] for i in body["items"]]


@pytest.fixture
def clean_trend(published):
    """No trending counters in the namespace before the test (other tests of the session post
    events too) nor after it (they expect the nightly's popular list as the fallback)."""
    r = redis.Redis.from_url(published[1])

    def clean():
        for key in r.scan_iter("pub:trend:*"):
            r.delete(key)

    clean()
    yield
    clean()


def _post(app, events):
    r = app.post("/events", json={"events": events}, headers=KEY)
    assert r.status_code == 200, r.get_json()


def test_trending_ranks_the_windows_events_under_the_filters(client, tiny_dataset, clean_trend):
    app, summary = client
    items = tiny_dataset.interactions["item_id"].drop_duplicates().astype(str).tolist()
    _post(app, [{"user_id": f"t{n}", "item_id": items[n % 3], "event_type": "click"}
                for n in range(3 * 4)] + [{"user_id": "t0", "item_id": items[0],
                                            "event_type": "purchase"}])
    time.sleep(5.1)  # the instance reuses a window's answer for TTL_S seconds
    body = app.get("/trending?window=15m&k=5").get_json()
    assert body["window"] == "15m" and body["source"] == "trending"
    top = _items(body)
    assert top[0] == items[0] and set(top[1:3]) == set(items[1:3])  # ties: the smaller id
    assert top[1:3] == sorted(top[1:3]) and body["filled_by"] == ["popular"]
    assert body["items"][0]["score"] > body["items"][1]["score"] == body["items"][2]["score"]
    assert body["items"][3]["score"] is None  # popular items fill
    assert app.get("/trending?k=5").get_json()["window"] == "1h"  # the default
    body = app.post("/trending", json={"window": "24h", "k": 3, "exclude": [items[0]]}).get_json()
    assert _items(body)[:2] == top[1:3]
    assert app.post("/admin/items", json={"unavailable": [items[1]]},
                    headers=ADMIN).status_code == 200
    try:
        assert items[1] not in _items(app.get("/trending?window=15m&k=3").get_json())
    finally:
        app.post("/admin/items", json={"available": [items[1]]}, headers=ADMIN)


@pytest.mark.parametrize("query, field", [("window=7m", "window"), ("window=*", "window"),
                                          ("k=0", "k"), ("k=x", "k"),
                                          ("category=NoSuchCategory", "category")])
def test_bad_input_is_a_400_naming_the_field(client, query, field):
    app, _ = client
    r = app.get(f"/trending?{query}")
    assert r.status_code == 400 and r.get_json()["error"].startswith(field)


def test_fresh_users_fallback_follows_trending_once_enough_items_trend(client, tiny_dataset,
                                                                       clean_trend):
    app, summary = client
    before = _items(app.get("/recommend?user_id=nobody-fresh&k=5").get_json())
    counts = tiny_dataset.interactions["item_id"].astype(str).value_counts()
    rare = counts.index[::-1][:MIN_ITEMS].tolist()  # the least popular: far from the top 5
    _post(app, [{"user_id": f"f{n}-{m}", "item_id": item, "event_type": "click"}
                for n, item in enumerate(rare) for m in range(MIN_ITEMS - n)])
    time.sleep(5.1)
    body = app.get("/recommend?user_id=nobody-fresh&k=5").get_json()
    assert body["source"] == "popular" and _items(body) == rare[:5] != before


@pytest.mark.slow
def test_a_burst_of_events_shows_in_trending_within_60_seconds(live_server, tiny_dataset,
                                                                clean_trend):
    """Through the real server (its own pointer and trending caches): a burst on an item no
    one engaged with lately tops /trending?window=15m within 60 s."""
    url, _, _ = live_server
    item = str(tiny_dataset.interactions["item_id"].value_counts().index[-1])
    events = [{"user_id": f"b{n}", "item_id": item, "event_type": "click"} for n in range(50)]
    req = urllib.request.Request(url + "/events", json.dumps({"events": events}).encode(),
                                 {"X-API-Key": "secret", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.load(r)["stored"] == 50
    sent, top = time.monotonic(), None
    while time.monotonic() - sent < 60:
        with urllib.request.urlopen(url + "/trending?window=15m&k=1", timeout=30) as r:
            top = json.load(r)["items"][0]["item_id"]
        if top == item:
            break
        time.sleep(0.5)
    assert top == item, "the burst did not reach /trending within 60 s"
    assert time.monotonic() - sent < 60
