"""The nightly job with --model served: its lists are ServedModel.recommend_indices of the warm
users, and its bundle's SavedModels answer TF-Serving-shaped requests in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from infra.bundle import read_bundle
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models import served_bundle
from models.evaluation import event_order
from models.histories import history_matrix


@pytest.fixture(scope="module")
def served(published_served, tmp_path_factory):
    """(bundle, lists, the bundle's model on the TF graph, its served/ folder, input folder)."""
    store, redis_url, summary, root = published_served
    bundle = read_bundle(LocalStore(store), summary["version"])
    folder = bundle.extract("served", str(tmp_path_factory.mktemp("served")))  # verified
    model = served_bundle.load(folder, runtime="tf")
    return bundle, ServedLists.from_url(redis_url, "srv"), model, folder, root


def warm_histories(data: pd.DataFrame) -> dict[str, list[str]]:
    """Each user's distinct items in order of first event (the evaluation's warm history)."""
    first = event_order(data).drop_duplicates(["user_id", "item_id"])
    return {u: list(g) for u, g in first.groupby("user_id", sort=False)["item_id"]}


def feature_rows(root, users: list[str]) -> list[dict | None]:
    table = pd.read_parquet(root / "users.parquet").astype({"user_id": str})
    rows = {r["user_id"]: r for r in table.to_dict("records")}
    return [rows.get(u) for u in users]


def test_served_bundle_and_summary(published_served, served):
    bundle, lists, model, _, _ = served
    summary = published_served[2]
    assert summary["model"] == "served" and lists.current() == summary["version"]
    assert bundle.manifest["model"] == "served" and bundle.manifest["config"]["n_tower"] == 15
    files = set(bundle.manifest["files"])
    for name in ("user_tower", "item_embeddings", "ranker"):
        assert f"served/{name}/saved_model.pb" in files
    assert {"item_ids.json", "user_ids.json", "item_vectors.npy", "popular.json",
            "served/user_tower.tflite", "served/ranker.tflite"} <= files
    assert bundle.item_ids.tolist() == list(model.tower.data.items.ids)
    np.testing.assert_array_equal(bundle.item_vectors, model.tower.item_vectors)
    assert summary["users_published"] == len(bundle.user_ids) == 120


def test_published_lists_are_the_models_recommend_indices(published_served, served,
                                                          tiny_dataset):
    bundle, lists, model, _, root = served
    version = published_served[2]["version"]
    histories = warm_histories(tiny_dataset.interactions)
    users = [str(u) for u in bundle.user_ids[::12]]  # 10 users across the shards
    idx = model.history_indices([histories[u] for u in users])
    utok = model.user_tokens(feature_rows(root, users))
    assert utok.any()  # the users table reached the model
    I, S = model.recommend_indices(idx, utok, model.context(users, fresh=False), 10)
    for user, row, scores, hist in zip(users, I, S, idx, strict=True):
        got, got_scores = lists.get_list(version, user)
        keep = row >= 0
        assert got.tolist() == row[keep].tolist() and len(got) == 10
        np.testing.assert_allclose(got_scores, scores[keep], rtol=1e-3, atol=1e-3)
        assert not set(got.tolist()) & set(hist.tolist())  # seen items: excluded


REST = """
import json, sys
import tensorflow as tf
folder, requests = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name, body in requests.items():
    fn = tf.saved_model.load(f"{folder}/{name}").signatures[body["signature_name"]]
    specs = fn.structured_input_signature[1]
    rows = body["instances"]  # TF Serving's row format: one object per instance, or values
    if isinstance(rows[0], dict):  # when the signature has a single input
        inputs = {k: tf.constant([r[k] for r in rows], specs[k].dtype) for k in rows[0]}
    else:
        ((key, spec),) = specs.items()
        inputs = {key: tf.constant(rows, spec.dtype)}
    result = fn(**inputs)
    out[name] = {"predictions": [{k: v[r].numpy().tolist() for k, v in result.items()}
                                 for r in range(len(rows))]}
print(json.dumps(out))
"""


# Slow: TensorFlow loaded again in a child process. Fast loop: tests/models/test_served.py
# test_saved_models_in_a_fresh_process_score_like_the_graph (the same SavedModels, signatures).
@pytest.mark.slow
def test_saved_models_answer_tf_serving_rest_requests_in_a_fresh_process(served,
                                                                          tiny_dataset):
    _, _, model, folder, root = served
    users = ["3", "50", "no-such-user"]
    histories = [["", *h[-5:]] for h in (warm_histories(tiny_dataset.interactions).get(u, [])
                                         for u in users)]
    width = max(map(len, histories))
    item_ids = [h + [""] * (width - len(h)) for h in histories]  # "" pads anywhere
    rows = feature_rows(root, users)
    tokens = [model.tower.data.user_enc.row_tokens(r or {}) for r in rows]
    fwidth = max(map(len, tokens))
    features = [t + [""] * (fwidth - len(t)) for t in tokens]
    idx = model.history_indices(histories)
    hist, utok = history_matrix(idx, model.config.tower.history), model.user_tokens(rows)
    graph = model.get_runtime()
    query = graph.user_embedding(hist, utok)
    cand = model.candidates(query, idx)[:, :8]
    names = model.tower.data.items.ids
    context = model.context(users, fresh=False)
    common = [{"item_ids": i, "user_features": f} for i, f in zip(item_ids, features,
                                                                   strict=True)]
    requests = {
        "user_tower": {"signature_name": "serving_default", "instances": common},
        "ranker": {"signature_name": "serving_default", "instances": [
            {**c, "candidate_ids": [str(names[j]) for j in row], "context": ctx}
            for c, row, ctx in zip(common, cand, context.tolist(), strict=True)]},
        "item_embeddings": {"signature_name": "serving_default",
                            "instances": [str(names[j]) for j in cand[0]]},
    }
    run = subprocess.run([sys.executable, "-c", REST, folder, json.dumps(requests)],
                         capture_output=True, text=True, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose([p["query"] for p in got["user_tower"]["predictions"]], query,
                               atol=1e-5)
    np.testing.assert_allclose([p["scores"] for p in got["ranker"]["predictions"]],
                               graph.rank(hist, utok, cand.astype(np.int32), context), atol=1e-4)
    np.testing.assert_allclose([p["embeddings"] for p in got["item_embeddings"]["predictions"]],
                               model.tower.item_vectors[cand[0]], atol=1e-6)


def test_a_bad_served_config_fails_before_any_work(tmp_path):
    from batch.nightly import run

    with pytest.raises(ValueError, match=r"unknown field\(s\) \['dimension'\] in tower"):
        run(["--input=x.parquet", f"--store={tmp_path}", "--redis_url=redis://127.0.0.1:1/0",
             "--model=served", f"--served_config={json.dumps({'tower': {'dimension': 8}})}"])


@pytest.mark.parametrize("slots", [{"new_item_slots": -1},
                                   {"longtail_slots": 6, "new_item_slots": 5}])
def test_slot_counts_outside_a_top_10_fail_before_any_work(tmp_path, slots):
    from batch.nightly import run

    with pytest.raises(ValueError, match="together at most 10"):
        run(["--input=x.parquet", f"--store={tmp_path}", "--redis_url=redis://127.0.0.1:1/0",
             "--model=served", f"--served_config={json.dumps(slots)}"])
