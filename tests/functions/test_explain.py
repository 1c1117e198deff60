"""`/recommend?explain=true` on versions published by the real nightly job: each item's reason
comes from the served ranker's features, and is faithful: taking the named history item out of
the user's history lowers the item's kNN/session feature by the named contribution."""

import numpy as np
import pytest

from infra.bundle import read_bundle
from infra.store import LocalStore
from models.histories import csr_rows
from models.kinds.served import load_model
from models.reasons import item_features
from tests.functions.conftest import make_app

KINDS = {"because_you_took", "popular_in_your_segment", "new", "trending", "popular", "taste"}
FEATURES_OF = {"country": "JP", "age_bucket": "25-34"}


@pytest.fixture(scope="module")
def served(published_served):
    store, redis_url, summary, _ = published_served
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": "srv",
           "RECSYS_API_KEY": "secret", "RECSYS_ADMIN_KEY": "admin",
           "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None}
    bundle = read_bundle(LocalStore(store), summary["version"])
    return make_app(env).test_client(), bundle, load_model(bundle, "numpy")


def _history(bundle, user: str) -> np.ndarray:
    row = bundle.user_ids.tolist().index(user)
    return csr_rows(bundle.array("history_indptr.npy"), bundle.array("history_items.npy"),
                    np.array([row]))[0]


def test_every_item_has_a_reason_and_the_named_history_item_is_faithful(served):
    app, bundle, model = served
    index = bundle.item_index
    checked = 0
    for user in bundle.user_ids.tolist()[:40]:
        body = app.get(f"/recommend?user_id={user}&k=10&explain=true").get_json()
        assert body["source"] == "cache"
        assert all(i["reason"]["reason"] in KINDS for i in body["items"])
        # What the ranker's kNN/session features read: the last tower.history items.
        history = _history(bundle, user)[-model.config.tower.history:]
        context = model.context([user], fresh=False)[0]
        tok = model.user_tokens([None])[0]
        for item in body["items"]:
            why = item["reason"]
            if why["reason"] != "because_you_took":
                continue
            c, h = index[item["item_id"]], index[why["history_item"]]
            assert h in history.tolist()  # named from the user's own history
            col = model.feature_names().index(why["feature"])
            with_h = item_features(model, history, tok, context, np.array([c]))[0, col]
            without = item_features(model, history[history != h], tok, context,
                                    np.array([c]))[0, col]
            assert why["value"] == pytest.approx(with_h, abs=1e-3)  # the ranker's feature
            assert without < with_h  # faithful: the feature falls without the named item
            assert with_h - without == pytest.approx(why["contribution"], abs=1e-3)
            checked += 1
    assert checked >= 5, "too few kNN/session reasons to check"


def test_a_fresh_users_reasons_name_the_posted_events(served):
    app, bundle, _ = served
    events = bundle.item_ids[:3].tolist()
    body = app.post("/recommend", json={"user_id": "explain-fresh", "k": 8, "events": events,
                                        "features": FEATURES_OF, "explain": True}).get_json()
    named = {i["reason"].get("history_item") for i in body["items"]} - {None}
    assert named and named <= set(events)
    plain = app.post("/recommend", json={"user_id": "explain-fresh", "k": 8, "events": events,
                                         "features": FEATURES_OF}).get_json()
    assert [i["item_id"] for i in plain["items"]] == [i["item_id"] for i in body["items"]]
    assert all("reason" not in i for i in plain["items"])  # no explain, no cost


def test_mf_items_get_plain_reasons_and_a_bad_flag_is_a_400(client, warm_user):
    app, _ = client
    body = app.get(f"/recommend?user_id={warm_user}&k=30&explain=1").get_json()
    reasons = [i["reason"]["reason"] for i in body["items"]]
    assert set(reasons) <= {"taste", "popular", "trending"} and "taste" in reasons
    r = app.get(f"/recommend?user_id={warm_user}&explain=maybe")
    assert r.status_code == 400 and r.get_json()["error"].startswith("explain")


def test_each_item_is_explained_by_the_source_that_listed_it(served):
    """A warm user's list (10 items) topped up by popular items: the listed ones from the
    nightly's history, the popular ones as popular (or trending, or new), never a history
    item's neighbour."""
    app, bundle, _ = served
    user = bundle.user_ids.tolist()[3]
    body = app.get(f"/recommend?user_id={user}&k=25&explain=true").get_json()
    assert body["source"] == "cache" and body["filled_by"] == ["popular"]
    history = {str(bundle.item_ids[i]) for i in _history(bundle, user)}
    for item in body["items"]:
        why = item["reason"]
        if item["score"] is None:
            assert why["reason"] in {"popular", "trending", "new"}, item
        elif why["reason"] == "because_you_took":
            assert why["history_item"] in history
