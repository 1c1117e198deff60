"""GET|POST /similar on a version published by the real nightly job (MF on tiny data), through
functions-framework's test client and a real redis-server."""

import numpy as np
import pytest
import redis

from infra.bundle import read_bundle
from infra.redis.codec import decode_list
from infra.redis.similar import SimilarLists
from infra.store import open_store

ADMIN = {"X-API-Key": "admin"}


def _items(body):
    return [i["item_id"] for i in body["items"]]


@pytest.fixture(scope="module")
def item(tiny_dataset):
    return str(tiny_dataset.interactions["item_id"].value_counts().index[0])


def test_the_nightly_published_every_items_neighbours_with_the_lists(published):
    store, url, summary = published
    bundle = read_bundle(open_store(store), summary["version"], with_users=False)
    similar = SimilarLists(redis.Redis.from_url(url), "pub")
    assert summary["similar_items"] == len(bundle.item_ids) == similar.count(summary["version"])
    idx, _ = decode_list(similar.read(summary["version"], str(bundle.item_ids[0])))
    assert len(idx) > 0 and 0 not in idx.tolist()  # never the item itself


def test_an_items_cached_neighbours_page_without_repeats(client, item):
    app, summary = client
    body = app.get(f"/similar?item_id={item}&k=4").get_json()
    assert body["source"] == "cache" and body["model_version"] == summary["version"]
    assert len(body["items"]) == 4 and item not in _items(body)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    seen, cursor = _items(body), body["next_cursor"]
    for _ in range(30):  # through the nightly's neighbours into the on-demand embedding ones
        body = app.get(f"/similar?item_id={item}&k=7&cursor={cursor}").get_json()
        seen += _items(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and item not in seen
    r = app.get(f"/similar?item_id=another&k=3&cursor={body['next_cursor'] or 'x'}")
    assert r.status_code in (400, 404)


def test_filters_apply_as_for_recommend(client, item):
    app, _ = client
    first = _items(app.get(f"/similar?item_id={item}&k=6").get_json())
    body = app.post("/similar", json={"item_id": item, "k": 6, "exclude": first[:2]}).get_json()
    assert not set(first[:2]) & set(_items(body))
    r = app.post("/admin/items", json={"unavailable": [first[2]]}, headers=ADMIN)
    assert r.status_code == 200
    try:
        assert first[2] not in _items(app.get(f"/similar?item_id={item}&k=6").get_json())
    finally:
        app.post("/admin/items", json={"available": [first[2]]}, headers=ADMIN)
    r = app.get(f"/similar?item_id={item}&category=NoSuchCategory")
    assert r.status_code == 400 and r.get_json()["error"].startswith("category:")


@pytest.mark.parametrize("query, field", [("", "item_id"), ("item_id=1&k=0", "k"),
                                          ("item_id=1&k=abc", "k"), ("item_id=1&k=101", "k"),
                                          ("item_id=" + "x" * 300, "item_id"),
                                          ("item_id=1&cursor=forged.sig", "cursor")])
def test_bad_input_is_a_400_naming_the_field(client, query, field):
    app, _ = client
    r = app.get(f"/similar?{query}")
    assert r.status_code == 400 and field in r.get_json()["error"]


def test_an_unknown_item_is_a_404(client):
    app, _ = client
    r = app.get("/similar?item_id=never-seen-item")
    assert r.status_code == 404 and r.is_json
    assert "item_id" in r.get_json()["error"] and "never-seen-item" in r.get_json()["error"]


def test_missing_neighbours_come_from_the_item_embeddings(client, published, item):
    """A version whose neighbours are not in Redis (published before /similar, or its key
    gone) answers from the bundle's item vectors: the same as the nightly's embedding part."""
    app, summary = client
    store, url, _ = published
    r = redis.Redis.from_url(url)
    key = SimilarLists(r, "pub").keys.similar(summary["version"], item)
    saved = r.dump(key)
    r.delete(key)
    try:
        body = app.get(f"/similar?item_id={item}&k=5").get_json()
    finally:
        r.restore(key, 0, saved)
    assert body["source"] == "on_demand" and len(body["items"]) == 5
    bundle = read_bundle(open_store(store), summary["version"], with_users=False)
    V = bundle.item_vectors[:, :-1]  # MF: [q_i, b_i]
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    me = bundle.item_index[item]
    cos = V @ V[me]
    cos[me] = -np.inf
    assert _items(body) == [str(bundle.item_ids[i]) for i in np.argsort(-cos, kind="stable")[:5]]


def test_answers_are_counted_under_their_endpoint(client, item):
    """/similar and /trending record their requests and latency by path and source, as
    /recommend does (functions/metrics.py, labels from infra/monitoring/catalogue.py)."""
    from functions.metrics import sample

    app, _ = client

    def count(path, code):
        return sample("recsys_requests_total", {"path": path, "code": code}) or 0.0

    before = count("similar", "200"), count("similar", "404"), count("trending", "200")
    app.get(f"/similar?item_id={item}")
    app.get("/similar?item_id=no-such-item")
    app.get("/trending")
    assert (count("similar", "200"), count("similar", "404"), count("trending", "200")) == (
        before[0] + 1, before[1] + 1, before[2] + 1)
    assert sample("recsys_request_seconds_count", {"path": "similar", "source": "cache"}) >= 1
    page = app.get("/metrics").get_data(as_text=True)
    assert 'recsys_requests_total{code="200",path="similar"}' in page


def _over(prop: dict) -> list:
    """Values one step past each limit of a documented parameter."""
    return ([("x" * (prop["maxLength"] + 1))] if "maxLength" in prop else []) + (
        [prop["maximum"] + 1] if "maximum" in prop else []) + (
        [prop["minimum"] - 1] if "minimum" in prop else []) + (
        ["not-" + prop["enum"][0]] if "enum" in prop else [])


def test_the_documented_limits_are_the_enforced_ones(client, item):
    from urllib.parse import urlencode

    app, _ = client
    doc = app.get("/openapi.json").get_json()
    wrong = []
    for path, base in (("/similar", {"item_id": item}), ("/trending", {})):
        for p in doc["paths"][path]["get"]["parameters"]:
            for value in _over(p["schema"]):
                r = app.get(f"{path}?{urlencode({**base, p['name']: value})}")
                if r.status_code != 400 or p["name"] not in r.get_json()["error"]:
                    wrong.append(f"{path} {p['name']}={str(value)[:20]}: {r.status_code}")
    assert not wrong, wrong
