"""/similar on a --model served version published by the real nightly job: an item without
events (in the items table only) has neighbours, from its item-tower embedding."""

import numpy as np
import pytest

from infra.bundle import read_bundle
from infra.store import LocalStore
from tests.functions.conftest import make_app


@pytest.fixture(scope="module")
def served(published_served):
    store, redis_url, summary, _ = published_served
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": "srv",
           "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None, "RECSYS_API_KEY": None,
           "RECSYS_ADMIN_KEY": None}
    return make_app(env).test_client(), read_bundle(LocalStore(store), summary["version"])


def test_a_new_item_is_answered_from_its_feature_embedding(served, tiny_dataset):
    app, bundle = served
    taken = set(tiny_dataset.interactions["item_id"].astype(str))
    new = [i for i in bundle.item_ids.tolist() if i not in taken]
    assert new, "the tiny items table has an item without events (the served vocabulary keeps it)"
    body = app.get(f"/similar?item_id={new[0]}&k=5").get_json()
    assert body["source"] == "cache" and len(body["items"]) == 5
    # No co-occurrence: the blend's embedding term alone ranks them (models/similar.py).
    V = bundle.item_vectors / np.linalg.norm(bundle.item_vectors, axis=1, keepdims=True)
    me = bundle.item_index[new[0]]
    cos = V @ V[me]
    cos[me] = -np.inf
    want = [str(bundle.item_ids[i]) for i in np.argsort(-cos, kind="stable")[:5]]
    assert [i["item_id"] for i in body["items"]] == want
    scores = [i["score"] for i in body["items"]]
    assert scores == pytest.approx([(1 + cos[bundle.item_index[i]]) / 2 for i in want], abs=1e-3)
