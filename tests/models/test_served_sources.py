"""EASE and GraphSAGE inside `served` (issues 21, 22): the closed form and its table against
brute force, both as candidate sources and as features equal in the NumPy gathers and the TF
graph, the candidate pools by source, and (slow) a bundle with both serving the same lists in
the NumPy, LiteRT and TensorFlow runtimes."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from models.graphsage import GraphSAGEConfig
from models.peers import ease_weights
from models.served_ease import ease_table
from tests.models.test_features import (
    assert_features_equal_the_graphs,
    random_ranker,
    requests,
    served,  # noqa: F401 - the fixture
)

TINY_SAGE = GraphSAGEConfig(dim=8, hidden=8, history=6, user_fanout=3, item_fanout=3,
                            batch_size=64, validation=0.0, max_per_user=8)


def reference_ease(X: np.ndarray, l2: float) -> np.ndarray:
    """Steck's closed form with np.linalg.inv, as models.peers.EASE computed it before."""
    G = X.T @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("float64_max", [10_000, 10])  # the float64 and the float32 paths
def test_ease_weights_equal_the_inverse(monkeypatch, float64_max):
    import models.peers

    monkeypatch.setattr(models.peers, "EASE_FLOAT64_MAX", float64_max)
    rng = np.random.default_rng(0)
    X = (rng.random((60, 40)) < 0.2).astype(np.float32)
    got = ease_weights(sp.csr_matrix(X), 5.0)
    np.testing.assert_allclose(got, reference_ease(X.astype(np.float64), 5.0), atol=1e-5)
    with pytest.raises(ValueError, match="l2"):
        ease_weights(sp.csr_matrix(X), 0.0)


def test_ease_table_sums_to_the_ease_scores_and_keeps_the_largest_weights():
    rng = np.random.default_rng(1)
    n_users, n = 50, 30
    X = (rng.random((n_users, n)) < 0.25).astype(np.float64)
    X[:, 7] = 0  # an item without events: no row, no column
    u, i = np.nonzero(X)
    B = reference_ease(X, 3.0)
    idx, w = ease_table(u, i, n, 3.0, m=n, max_items=n)  # every weight kept: exact
    assert idx.shape == (n + 1, n) and (idx[n] == n).all() and not w[n].any()
    assert not w[7].any() and not (idx[:, :][w != 0] == 7).any()
    dense = np.zeros((n + 1, n + 1))
    np.add.at(dense, (np.repeat(np.arange(n + 1), n), idx.ravel()), w.ravel())
    np.testing.assert_allclose(dense[:n, :n], B, atol=1e-5)
    idx5, w5 = ease_table(u, i, n, 3.0, m=5, max_items=n)  # the 5 largest |B[i, j]| of row i
    for row in (0, 3, 12):
        want = np.sort(np.abs(B[row]))[::-1][:5]
        np.testing.assert_allclose(np.abs(w5[row]), want, atol=1e-5)
        np.testing.assert_allclose(w5[row], B[row, idx5[row]], atol=1e-5)


def test_ease_beyond_max_items_covers_the_most_used_items_only(caplog):
    rng = np.random.default_rng(2)
    X = (rng.random((80, 20)) < 0.3).astype(np.float32)
    X[:, :5] = 1  # the five items every user took
    u, i = np.nonzero(X)
    idx, w = ease_table(u, i, 20, 2.0, m=20, max_items=5)
    assert "covers the 5" in caplog.text
    assert not w[5:20].any()  # the others have no row
    assert set(idx[:5][w[:5] != 0].ravel()) <= set(range(5))  # ... nor column


def test_ease_is_a_candidate_source_and_a_feature_equal_in_the_graph(served):  # noqa: F811
    _, model = served
    histories, hist, utok, _ = requests(model)
    query = model.tower.user_vectors(hist, utok)
    sources = model.candidate_sources(query, histories)
    assert list(sources) == ["tower", "knn", "ease", "session", "popular"]
    # the EASE source is the top of the history's summed EASE weights (B of the table)
    ease = model.arrays().neighbours["ease"].matrix
    ease = ease.toarray() if sp.issparse(ease) else ease
    n = len(model.tower.data.items)
    for row, h in zip(sources["ease"], histories, strict=True):
        score = ease[h].sum(0)[:n]
        score[h] = 0
        want = [j for j in np.lexsort((np.arange(n), -score))[:model.config.n_ease]
                if score[j] > 0]
        assert list(row[:len(want)]) == want
    off = dataclasses.replace(model.config, ease_l2=None)
    from models.served import ServedModel

    plain = ServedModel.build(served[0].interactions, model.tower, served[0].items, off)
    assert "ease" not in plain.feature_names() and plain.tables.ease_idx is None


@pytest.fixture(scope="module")
def with_sage(served):  # noqa: F811
    """The `served` fixture's model with a tiny GraphSAGE (one epoch) and a ranker over its
    features."""
    from models.served import ServedModel
    from models.served_sage import fit_sage

    ds, base = served
    config = dataclasses.replace(base.config, graphsage=TINY_SAGE, n_graphsage=6)
    model = ServedModel.build(ds.interactions, base.tower, ds.items, config)
    model.with_sage(fit_sage(base.tower.data, ds.interactions, TINY_SAGE, 1))
    model.ranker = random_ranker(len(model.feature_names()), seed=6)
    return ds, model


@pytest.mark.slow
def test_graphsage_is_a_candidate_source_and_a_feature_equal_in_the_graph(with_sage):
    from models.topk import brute_force_topk

    _, model = with_sage
    assert model.feature_names()[-2:] == ("ease", "graphsage")
    histories, hist, utok, _ = requests(model)
    q = model.sage_query(hist, utok)
    sources = model.candidate_sources(model.tower.user_vectors(hist, utok), histories,
                                      sage_q=q)
    assert list(sources)[:2] == ["tower", "graphsage"]
    want, _ = brute_force_topk(q, model.sage.item_vectors, 6, histories)
    np.testing.assert_array_equal(sources["graphsage"], want)
    assert_features_equal_the_graphs(model)


def test_candidate_pools_name_each_source_and_the_pool_is_what_the_ranker_scores(served):  # noqa: F811
    from models.evaluation import Case
    from models.served_fit import ServedRecommender

    _, model = served
    rec = ServedRecommender(model.config)
    rec.model = model
    histories, hist, utok, _ = requests(model)
    ids = model.tower.data.items.ids
    cases = [Case(u, tuple(str(ids[i]) for i in h), frozenset(), False) for u, h in
             zip(["1", "2", "nobody", "3"], histories, strict=True)]
    pools = rec.candidate_pools(cases)
    assert set(pools) == {"tower", "knn", "ease", "session", "popular", "pool"}
    cand = model.candidates(model.tower.user_vectors(hist, utok), histories)
    for b, h in enumerate(histories):
        np.testing.assert_array_equal(pools["pool"][b], cand[b][cand[b] >= 0])
        union = set().union(*(set(pools[s][b]) for s in pools if s != "pool"))
        assert set(pools["pool"][b]) <= union and not union & set(h)
    as_ids = rec.candidate_pools(cases, ids=True)
    assert list(as_ids["ease"][1]) == [str(ids[i]) for i in pools["ease"][1]]


@pytest.mark.slow
def test_a_bundle_with_ease_and_graphsage_serves_alike_in_every_runtime(with_sage, tmp_path):
    """The bundle stores EASE as CSR rows and GraphSAGE's query side (g:*); NumPy, LiteRT
    (no TensorFlow) and the TF graph serve the same lists from it, and the export's own
    LiteRT check covers the two extra feature columns."""
    from models import served_bundle
    from models.served_export import export

    _, model = with_sage
    path = str(tmp_path / "bundle")
    summary = export(model, path)
    assert summary["litert_max_abs_diff"]["ranker"] < 2e-3
    with np.load(f"{path}/served.npz") as npz:
        assert {"t:ease_indptr", "g:item_vectors", "g:x_item", "g:u2_self"} <= set(npz.files)
    histories, _, utok, ctx = requests(model, seed=3)
    want = model.recommend_indices(histories, utok, ctx, 10)
    for runtime in ("numpy", "litert", "tf"):
        loaded = served_bundle.load(path, runtime=runtime)
        assert loaded.feature_names() == model.feature_names()
        I, S = loaded.recommend_indices(histories, utok, ctx, 10)
        np.testing.assert_array_equal(I, want[0], err_msg=runtime)
        np.testing.assert_allclose(S, want[1], atol=2e-3, err_msg=runtime)


def test_a_bundle_written_before_a_setting_existed_keeps_what_it_published():
    """served.json of an older bundle lacks `ease_l2`, the `rerank_*` and `fusion_*` fields:
    loading it must not switch on what later defaults turned on (its lists would change
    unretrained)."""
    from models.served import ServedConfig
    from models.served_bundle import config_from_json

    now = dataclasses.asdict(ServedConfig())
    old = {k: v for k, v in now.items() if k != "ease_l2" and not k.startswith(("rerank_",
                                                                                 "fusion_"))}
    loaded = config_from_json(old)
    assert loaded.ease_l2 is None and loaded.rerank_slots == 0
    assert loaded.fusion_fresh == loaded.fusion_warm == 0.0 < ServedConfig().fusion_fresh
    assert config_from_json(now) == ServedConfig()
