"""The served pipeline on tiny synthetic data: the contract of its lists, its candidate
sources against brute force, and the exported bundle in fresh processes (SavedModels through
TensorFlow, LiteRT without it) scoring like the in-process graph."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from models import served_bundle
from models.histories import history_matrix
from models.ranker import RankerConfig
from models.runtimes import LiteRTRuntime
from models.served import ServedConfig
from models.served_export import check_litert, export
from models.served_fit import ServedRecommender, fit_served
from models.served_graph import ServedModule
from models.two_tower import TwoTowerConfig

TINY = ServedConfig(
    tower=TwoTowerConfig(dim=8, hidden=16, epochs=2, history=10, recent=3, patience=1),
    ranker=RankerConfig(hidden=(8,), neighbours=20, epochs=3, members=2),
    windows=(0.8, 0.9), n_tower=15, n_knn=15, n_session=10, n_popular=10, candidates=40,
    tower_epochs=None,  # the picking path; later windows take the fixed one
    ease_l2=50.0, n_ease=10)  # EASE on (off by default): its table rides every bundle test


@pytest.fixture(scope="module")
def fitted(tiny_dataset):
    ds = tiny_dataset
    return ds, fit_served(ds.interactions, ds.users, ds.items, TINY)


@pytest.fixture(scope="module")
def bundle(fitted, tmp_path_factory):
    _, model = fitted
    path = str(tmp_path_factory.mktemp("served") / "bundle")
    return path, export(model, path)


def requests(model, n=6, seed=0):
    rng = np.random.default_rng(seed)
    items = model.tower.data.items
    histories = [list(items.ids[rng.choice(len(items), k, replace=False)])
                 for k in rng.integers(1, 12, n)]
    users = [str(u) for u in rng.integers(1, 130, n)]  # some beyond the users table
    return users, histories


def test_lists_keep_the_contract(fitted):
    ds, model = fitted
    rec = ServedRecommender(TINY)
    rec.model = model
    users, histories = requests(model)
    for fresh in (False, True):
        lists = rec.recommend(users, histories, 10, fresh)
        for ranked, hist in zip(lists, histories, strict=True):
            assert 0 < len(ranked) <= 10 and len(set(ranked)) == len(ranked)
            assert not set(ranked) & set(hist)


def test_exclusions_are_applied_after_ranking(fitted):
    _, model = fitted
    users, histories = requests(model, 2)
    idx = model.history_indices(histories)
    utok, ctx = model.tower.data.user_matrix(users), model.context(users, True)
    old = model.config  # the ranker's order: the exposure re-rank (on by default) re-orders
    model.config = dataclasses.replace(old, rerank_slots=0)  # (test_rules_rerank.py has it)
    try:
        I, S = model.recommend_indices(idx, utok, ctx, 5)
        banned = [I[0, :2], np.zeros(0, np.int64)]
        I2, _ = model.recommend_indices(idx, utok, ctx, 5, exclude=banned)
    finally:
        model.config = old
    assert not set(I2[0]) & set(I[0, :2]) and list(I2[0, :3]) == list(I[0, 2:5])
    assert list(I2[1]) == list(I[1]) and (np.diff(S, axis=1) <= 0).all()


@pytest.mark.parametrize("affinity", ["tower", "ranker"])
def test_longtail_slot_holds_a_tail_item(fitted, affinity):
    _, model = fitted
    users, histories = requests(model)
    idx = model.history_indices(histories)
    old = model.config
    model.config = dataclasses.replace(old, longtail_slots=1, longtail_affinity=affinity)
    try:
        I, _ = model.recommend_indices(idx, model.tower.data.user_matrix(users),
                                       model.context(users, False), 10)
    finally:
        model.config = old
    head = model.head_items()
    assert all(r[9] >= 0 and not head[r[9]] for r in I if (r >= 0).sum() == 10)


def test_new_item_slot_holds_an_item_without_events(fitted):
    _, model = fitted
    users, histories = requests(model)
    idx = model.history_indices(histories)
    utok, ctx = model.tower.data.user_matrix(users), model.context(users, True)
    I0, _ = model.recommend_indices(idx, utok, ctx, 40)
    new = np.zeros(len(model.tower.data.items), bool)
    below = I0[:, 12:20]
    new[below[below >= 0]] = True  # pretend these had no train event
    old = model.config
    model.config, model.new_items = dataclasses.replace(old, new_item_slots=1), lambda: new
    try:
        I, _ = model.recommend_indices(idx, utok, ctx, 10)
    finally:
        model.config = old
        del model.new_items
    rows = [r for r in range(len(I0)) if I0[r, 12] >= 0]
    assert rows
    for r in rows:
        assert list(I[r, :9]) == list(I0[r, :9]) and new[I[r, 9]]


def test_candidates_exclude_the_history_and_include_recent_hits(fitted):
    _, model = fitted
    histories = [np.array([0, 1, 2]), np.array([int(model.popular[0])])]
    hist = history_matrix(histories, TINY.tower.history)
    query = model.get_runtime().user_embedding(hist, model.user_tokens([None, None]))
    cand = model.candidates(query, histories)
    assert cand.shape == (2, TINY.candidates)
    assert not set(cand[0]) & {0, 1, 2} and model.popular[0] in cand[0]
    assert model.popular[0] not in cand[1] and model.popular[1] in cand[1]


LOADER = """
import json, sys, numpy as np, tensorflow as tf
path, req = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name in ("user_tower", "item_embeddings", "ranker"):
    m = tf.saved_model.load(f"{path}/{name}")
    out[name] = sorted(m.signatures)
m = tf.saved_model.load(f"{path}/user_tower")
out["query"] = m.signatures["serving_default"](
    item_ids=tf.constant(req["items"]), user_features=tf.constant(req["features"]))[
    "query"].numpy().tolist()
m = tf.saved_model.load(f"{path}/ranker")
out["scores"] = m.signatures["serving_default"](
    item_ids=tf.constant(req["items"]), user_features=tf.constant(req["features"]),
    candidate_ids=tf.constant(req["candidates"]),
    context=tf.constant(req["context"], tf.float32))["scores"].numpy().tolist()
m = tf.saved_model.load(f"{path}/item_embeddings")
out["vectors"] = m.signatures["serving_default"](item_ids=tf.constant(req["candidates"][0]))[
    "embeddings"].numpy().tolist()
print(json.dumps(out))
"""


def test_saved_models_in_a_fresh_process_score_like_the_graph(fitted, bundle):
    _, model = fitted
    path, summary = bundle
    assert {"user_tower", "item_embeddings", "ranker", "user_tower.tflite", "ranker.tflite",
            "served.npz", "served.json"} <= set(summary["files"])
    users, histories = requests(model, 3, seed=1)
    enc = model.tower.data.user_enc
    feats = [enc.row_tokens(r or {}) for r in (model.tower.data.users_table.set_index(
        "user_id").reindex(users).reset_index().to_dict("records"))]
    width = max(map(len, histories))
    items = [["", *h, *[""] * (width - len(h))] for h in histories]  # "" pads anywhere
    fwidth = max(1, max(map(len, feats)))
    features = [f + [""] * (fwidth - len(f)) for f in feats]
    idx = model.history_indices(histories)
    hist, utok = history_matrix(idx, TINY.tower.history), model.tower.data.user_matrix(users)
    ctx = model.context(users, False)
    cand = model.candidates(model.get_runtime().user_embedding(hist, utok), idx)[:, :12]
    cand_ids = [[str(model.tower.data.items.ids[c]) for c in row] for row in cand]
    req = {"items": items, "features": features, "candidates": cand_ids,
           "context": ctx.tolist()}
    run = subprocess.run([sys.executable, "-c", LOADER, path, json.dumps(req)],
                         capture_output=True, text=True, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert "serving_default" in got["user_tower"] and "user_embedding_idx" in got["user_tower"]
    assert {"serving_default", "rank_idx"} <= set(got["ranker"])
    assert {"serving_default", "all_item_embeddings", "item_tower"} <= set(
        got["item_embeddings"])
    np.testing.assert_allclose(got["query"], model.get_runtime().user_embedding(hist, utok),
                               atol=1e-5)
    want = model.rank(hist, utok, cand, ctx)  # NumPy features and MLP, the batch's path
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got["scores"], want, atol=1e-4)
    np.testing.assert_allclose(got["vectors"], model.tower.item_vectors[cand[0]], atol=1e-6)


LITE = """
import json, sys, numpy as np
from models import served_bundle
model = served_bundle.load(sys.argv[1], runtime="litert")
req = json.loads(sys.argv[2])
idx = model.history_indices(req["histories"])
I, S = model.recommend_indices(idx, model.user_tokens(req["features"]),
                               model.context(req["users"], True), 10)
print(json.dumps({"tf": "tensorflow" in sys.modules, "I": I.tolist(), "S": S.tolist()}))
"""


def test_litert_bundle_serves_the_same_lists_without_tensorflow(fitted, bundle):
    _, model = fitted
    path, summary = bundle
    assert max(summary["litert_max_abs_diff"].values()) < 2e-3
    users, histories = requests(model, 4, seed=2)
    rows = model.tower.data.users_table.set_index("user_id").reindex(users)
    features = [{k: v for k, v in r.items() if isinstance(v, str)}
                for r in rows.reset_index().to_dict("records")]
    req = {"users": users, "histories": histories, "features": features}
    run = subprocess.run([sys.executable, "-c", LITE, path, json.dumps(req)], cwd=".",
                         capture_output=True, text=True, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["tf"] is False
    I, S = model.recommend_indices(model.history_indices(histories),
                                   model.user_tokens(features), model.context(users, True), 10)
    assert got["I"] == I.tolist()
    np.testing.assert_allclose(got["S"], S, atol=2e-3)


def test_a_bundle_from_before_the_numpy_features_still_serves(fitted, bundle):
    """Its ranker.tflite computes the features itself (item_idx, user_tok, candidates,
    context): functions updated before the next nightly serve it, with the same lists."""
    import tensorflow as tf

    _, model = fitted
    path, _ = bundle
    old = ServedModule(model, ("rank_lite",))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [old.rank_lite.get_concrete_function()], old)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    lite = served_bundle.load(path, runtime="litert")
    legacy = LiteRTRuntime(f"{path}/user_tower.tflite", converter.convert())
    assert legacy.ranks_requests and not lite.runtime.ranks_requests
    users, histories = requests(model, 4, seed=5)
    args = (lite.history_indices(histories), lite.user_tokens([None] * 4),
            lite.context(users, True), 10)
    I, S = lite.recommend_indices(*args)
    lite.runtime = legacy
    I2, S2 = lite.recommend_indices(*args)
    np.testing.assert_array_equal(I2, I)
    np.testing.assert_allclose(S2, S, atol=2e-3)


def test_bundle_round_trip_and_a_broken_conversion_is_caught(fitted, bundle):
    _, model = fitted
    path, _ = bundle
    loaded = served_bundle.load(path, runtime="tf")
    users, histories = requests(model, 3, seed=3)
    args = (model.history_indices(histories), model.tower.data.user_matrix(users),
            model.context(users, False), 8)
    np.testing.assert_array_equal(loaded.recommend_indices(*args)[0],
                                  model.recommend_indices(*args)[0])
    lite = served_bundle.load(path, runtime="litert").runtime
    r = loaded.ranker  # a ranker whose scores are shifted, against the bundle's LiteRT files
    shifted = [[*r.members[0][:-1], r.members[0][-1] + 1.0], *r.members[1:]]
    loaded.ranker = dataclasses.replace(r, members=shifted)
    loaded.runtime = None
    with pytest.raises(ValueError, match="LiteRT ranker differs"):
        check_litert(loaded, lite)


TABLES = ("knn", "sess", "ease")  # EASE is on in TINY
PADDED = tuple(f"{n}_{p}" for n in TABLES for p in ("idx", "sim"))


def _same_matrix(got, want) -> None:
    import scipy.sparse as sp

    assert got.shape == want.shape
    np.testing.assert_array_equal(sp.csr_matrix(got).toarray(), sp.csr_matrix(want).toarray())


def test_bundle_stores_the_neighbour_tables_as_sparse_rows_and_loads_them_exactly(fitted,
                                                                                    bundle):
    """Issue 16: served.npz holds the kNN and session tables as CSR rows (padded to M
    columns they were 95% of a 20,000-item bundle, and the on-demand cold start read them
    all); the NumPy and LiteRT runtimes score from matrices built from those rows, the TF
    graph gets the padded tables back as they were."""
    _, model = fitted
    path, _ = bundle
    with np.load(f"{path}/served.npz") as npz:
        names = set(npz.files)
    assert not names & {f"t:{k}" for k in PADDED}
    assert {f"t:{n}_{p}" for n in TABLES for p in ("indptr", "indices", "data")} <= names
    light = served_bundle.load(path, runtime="numpy")
    assert all(getattr(light.tables, k) is None for k in PADDED)  # no padded copy in memory
    for name in TABLES:
        _same_matrix(light.arrays().neighbours[name].matrix,
                     model.arrays().neighbours[name].matrix)
    graph = served_bundle.load(path, runtime="tf")
    for k in PADDED:
        np.testing.assert_array_equal(getattr(graph.tables, k), getattr(model.tables, k))
    users, histories = requests(model, 4, seed=7)
    args = (model.history_indices(histories), model.tower.data.user_matrix(users),
            model.context(users, False), 10)
    for loaded in (light, graph):
        np.testing.assert_array_equal(loaded.recommend_indices(*args)[0],
                                      model.recommend_indices(*args)[0])


def test_a_bundle_with_padded_neighbour_tables_still_loads(fitted, bundle, tmp_path):
    """A bundle written before the tables were stored sparse (t:knn_idx and the like, no
    neighbour_width): functions updated before the next nightly still serve it."""
    import shutil

    _, model = fitted
    path, _ = bundle
    old = str(tmp_path / "old")
    shutil.copytree(path, old)
    with np.load(f"{path}/served.npz") as npz:
        arrays = {k: npz[k] for k in npz.files
                  if not k.startswith(tuple(f"t:{n}_" for n in TABLES))}
    arrays.update({f"t:{k}": getattr(model.tables, k) for k in PADDED})
    np.savez(f"{old}/served.npz", **arrays)
    with open(f"{old}/served.json") as f:
        meta = json.load(f)
    del meta["neighbour_width"]
    with open(f"{old}/served.json", "w") as f:
        json.dump(meta, f)
    users, histories = requests(model, 4, seed=8)
    args = (model.history_indices(histories), model.tower.data.user_matrix(users),
            model.context(users, False), 10)
    want = model.recommend_indices(*args)
    for runtime in ("numpy", "litert"):
        loaded = served_bundle.load(old, runtime=runtime)
        np.testing.assert_array_equal(loaded.tables.knn_idx, model.tables.knn_idx)
        I, S = loaded.recommend_indices(*args)
        np.testing.assert_array_equal(I, want[0])
        np.testing.assert_allclose(S, want[1], atol=2e-3)


def test_the_on_demand_bundle_honours_the_guards_fallback(fitted, bundle, tmp_path):
    """A bundle whose served.json sends fresh users to the popular source (the guard of
    models.served_guard) serves them that source's list on the LiteRT path, without
    TensorFlow, as the NumPy model does: the source's list first, then the ranker's order."""
    _, model = fitted
    path = str(tmp_path / "bundle")
    shutil.copytree(bundle[0], path)
    with open(os.path.join(path, "served.json")) as f:
        meta = json.load(f)
    with open(os.path.join(path, "served.json"), "w") as f:
        json.dump({**meta, "fallback": {"fresh": "popular"}}, f)
    users, histories = requests(model, 4, seed=3)
    req = {"users": users, "histories": histories, "features": [{}] * len(users)}
    run = subprocess.run([sys.executable, "-c", LITE, path, json.dumps(req)], cwd=".",
                         capture_output=True, text=True, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["tf"] is False
    idx = model.history_indices(histories)
    popular = [[int(i) for i in model.popular if i not in h] for h in idx]
    assert [row[:len(p)] for row, p in zip(got["I"], popular, strict=True)] == popular
    assert all(-1 not in row for row in got["I"])  # the ranker's candidates fill the rest
    model.fallback = {"fresh": "popular"}
    try:
        I, _ = model.recommend_indices(idx, model.user_tokens([{}] * len(users)),
                                       model.context(users, True), 10)
    finally:
        model.fallback = {}
    assert I.tolist() == got["I"]


def test_score_fusion_reorders_its_segment_only_and_travels_in_the_bundle(fitted, bundle,
                                                                         tmp_path):
    """ServedConfig.fusion_fresh (models.rules.fuse) re-orders the fresh users' lists and
    leaves the warm users' (fusion_warm 0) as the ranker's; served.json carries the setting,
    so the on-demand path (LiteRT, no TensorFlow) serves the same fused lists."""
    _, model = fitted
    users, histories = requests(model, 6, seed=5)
    idx = model.history_indices(histories)
    utok = model.user_tokens([{}] * len(users))
    old = model.config
    plain = dataclasses.replace(old, rerank_slots=0)  # the ranker's order, no promotions
    fused = dataclasses.replace(plain, fusion_fresh=3.0)
    got = {}
    try:
        for name, config in (("plain", plain), ("fused", fused)):
            model.config = config
            for fresh in (False, True):
                got[name, fresh] = model.recommend_indices(idx, utok,
                                                           model.context(users, fresh), 10)
    finally:
        model.config = old
    np.testing.assert_array_equal(got["fused", False][0], got["plain", False][0])
    assert got["fused", True][0].tolist() != got["plain", True][0].tolist()
    path = str(tmp_path / "bundle")
    shutil.copytree(bundle[0], path)
    with open(os.path.join(path, "served.json")) as f:
        meta = json.load(f)
    meta["config"].update(rerank_slots=0, fusion_fresh=3.0)
    with open(os.path.join(path, "served.json"), "w") as f:
        json.dump(meta, f)
    req = {"users": users, "histories": histories, "features": [{}] * len(users)}
    run = subprocess.run([sys.executable, "-c", LITE, path, json.dumps(req)], cwd=".",
                         capture_output=True, text=True, check=True)
    lite = json.loads(run.stdout.strip().splitlines()[-1])
    assert lite["tf"] is False and lite["I"] == got["fused", True][0].tolist()


@pytest.mark.parametrize("bad", [{"fusion_fresh": -1.0}, {"fusion_warm": float("inf")},
                                 {"fusion_source": "ease"}, {"fusion_kind": "sum"}])
def test_config_rejects_bad_fusion_values(bad):
    with pytest.raises(ValueError, match="fusion"):
        ServedConfig(**{"ease_l2": None, **bad})
