"""models.features and models.runtimes.NumpyRuntime against references: the neighbour sums
and the candidate sources against brute force, the pair features, the user tower and the
ranker's scores against the TensorFlow graph the SavedModels carry."""

import numpy as np
import pytest

from models.features import (
    NeighbourMatrix,
    neighbour_sums,
    neighbour_top,
    pair_features,
    tower_top,
)
from models.topk import brute_force_topk


def random_table(rng, n, m):
    """A neighbour table as build_tables makes them: [n + 1, m], padding n with similarity 0,
    here with some repeated neighbours and some empty slots."""
    idx = rng.integers(0, n, (n, m))
    sim = rng.random((n, m)).astype(np.float32)
    empty = rng.random((n, m)) < 0.3
    idx[empty], sim[empty] = n, 0.0
    return (np.vstack([idx, np.full((1, m), n)]).astype(np.int32),
            np.vstack([sim, np.zeros((1, m), np.float32)]))


def brute_sums(idx, sim, history):
    acc = np.zeros(len(idx))
    for x in history:
        np.add.at(acc, idx[x], sim[x])
    return acc


HISTORIES = [np.array([3]), np.array([0, 5, 5, 9]), np.arange(10, 25), np.zeros(0, np.int64)]


@pytest.mark.parametrize("dense", [True, False])
def test_neighbour_sums_match_brute_force_over_each_window(dense):
    rng = np.random.default_rng(0)
    idx, sim = random_table(rng, 30, 6)
    got = neighbour_sums(NeighbourMatrix.build(idx, sim, dense), HISTORIES, window=6, recent=2)
    assert got.shape == (4, 3, 31) and got.dtype == np.float32
    for row, h in zip(got, HISTORIES, strict=True):
        for w, used in enumerate((h[-2:], h[-6:], h)):  # repeats count again
            np.testing.assert_allclose(row[w], brute_sums(idx, sim, used), atol=1e-5)


def test_tables_take_the_layout_their_fill_asks_for():
    rng = np.random.default_rng(1)
    idx, sim = random_table(rng, 30, 20)
    assert isinstance(NeighbourMatrix.build(idx, sim).matrix, np.ndarray)  # ~45% full
    sim[:, 1:] = 0.0  # one neighbour per item: ~3% full
    assert not isinstance(NeighbourMatrix.build(idx, sim).matrix, np.ndarray)


def test_neighbour_top_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 30
    idx, sim = random_table(rng, n, 6)
    sums = neighbour_sums(NeighbourMatrix.build(idx, sim), HISTORIES, 6, 2)
    got = neighbour_top(sums[:, 2], HISTORIES, 5)
    for row, h in zip(got, HISTORIES, strict=True):
        acc = brute_sums(idx, sim, h)[:n]
        acc[h] = 0
        want = [j for j in np.lexsort((np.arange(n), -acc))[:5] if acc[j] > 0]
        assert list(row[:len(want)]) == want and (row[len(want):] == -1).all()
    assert (got[3] == -1).all()  # no history, no neighbours


def test_tower_top_matches_brute_force_with_ties_and_short_catalogs():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(12, 4)).astype(np.float32)
    vectors[7] = vectors[2]  # a tie: the smaller index first
    query = rng.normal(size=(4, 4)).astype(np.float32)
    seen = [np.array([1]), np.array([0, 2]), np.arange(12), np.zeros(0, np.int64)]
    for k in (5, 15):
        got = tower_top(vectors, query, seen, k)
        want, _ = brute_force_topk(query, vectors, k, seen)
        np.testing.assert_array_equal(got, want)
    assert (got[2] == -1).all() and (got[3, 12:] == -1).all()


@pytest.fixture(scope="module")
def served():
    """A ServedModel with a tiny tower, EASE and a ranker of random weights."""
    from models.ranker import RankerConfig
    from models.served import ServedConfig, ServedModel
    from models.synthetic import generate
    from models.tower_data import prepare
    from models.tower_fit import fit_tower
    from models.two_tower import TwoTowerConfig

    ds = generate(n_users=80, n_items=40, seed=4, events_per_user=12)
    tc = TwoTowerConfig(dim=8, hidden=16, history=6, recent=2, validation=0.0)
    config = ServedConfig(tower=tc, ranker=RankerConfig(neighbours=8, session_seconds=86_400),
                          n_tower=8, n_knn=8, n_session=5, n_popular=5, candidates=20,
                          ease_l2=20.0, n_ease=8)
    tower = fit_tower(prepare(ds.interactions, ds.users, ds.items, tc), tc, 1)[0]
    model = ServedModel.build(ds.interactions, tower, ds.items, config)
    model.ranker = random_ranker(len(model.feature_names()))
    return ds, model


def random_ranker(F: int, seed: int = 5):
    """A ranker ensemble of random weights over F features."""
    from models.ranker import RankerModel

    rng = np.random.default_rng(seed)
    members = [[rng.normal(0, 0.5, s).astype(np.float32)
                for s in ((F, 6), (6,), (6, 4), (4,), (4, 1), (1,))] for _ in range(3)]
    return RankerModel(members, rng.normal(size=F).astype(np.float32),
                       rng.uniform(0.5, 2, F).astype(np.float32), 1)


def requests(model, seed=1):
    rng = np.random.default_rng(seed)
    n = len(model.tower.data.items)
    histories = [rng.choice(n, k, replace=False) for k in (1, 3, 9, 0)]
    from models.histories import history_matrix

    hist = history_matrix(histories, model.config.tower.history)
    utok = model.tower.data.user_matrix(["1", "2", "nobody", "3"])
    ctx = np.array([[1, 0], [0, 3.5], [0, 40], [1, 0]], np.float32)
    return histories, hist, utok, ctx


def test_pair_features_equal_the_graphs(served):
    _, model = served
    assert model.feature_names()[-1] == "ease"
    assert_features_equal_the_graphs(model)


def assert_features_equal_the_graphs(model):
    """ServedModel.features (NumPy gathers, EASE and GraphSAGE columns included) against
    models.feature_graph.features, column by column."""
    import tensorflow as tf

    from models.feature_graph import features, graph_tables
    from models.ranker import FEATURES

    histories, hist, utok, ctx = requests(model)
    query = model.tower.user_vectors(hist, utok)
    cand = model.candidates(query, histories, sage_q=model.sage_query(hist, utok))
    cand[0, -3:] = -1  # padding
    got = model.features(hist, utok, cand, ctx, query)
    # the plain FEATURES from models.features alone
    sums = model.neighbour_sums([row[row >= 0] for row in hist])
    plain = pair_features(model.tables, model.arrays().items, query, hist, utok, cand, ctx,
                          *sums[:2])
    np.testing.assert_array_equal(got[..., :len(FEATURES)], plain)
    want = features(graph_tables(model.tables, model.tower, model.sage), tf.constant(hist),
                    tf.constant(utok), tf.constant(cand.astype(np.int32)), tf.constant(ctx),
                    model.config.tower.recent).numpy()
    names = model.feature_names()
    assert got.shape == want.shape == (4, model.config.candidates, len(names))
    for f, name in enumerate(names):
        np.testing.assert_allclose(got[..., f], want[..., f], atol=1e-5, err_msg=name)
    zero = [name for f, name in enumerate(names) if not np.any(want[..., f])]
    assert zero == [], zero  # each column is compared on values that say something


def test_numpy_runtime_scores_like_the_graph(served):
    from models.runtimes import NumpyRuntime
    from models.served_graph import GraphRuntime

    _, model = served
    histories, hist, utok, ctx = requests(model, seed=2)
    graph, numpy_rt = GraphRuntime(model), NumpyRuntime(model)
    query = graph.user_embedding(hist, utok)
    np.testing.assert_allclose(numpy_rt.user_embedding(hist, utok), query, atol=1e-5)
    cand = model.candidates(query, histories)
    model.runtime = numpy_rt
    got = model.rank(hist, utok, cand, ctx)
    want = graph.rank(hist, utok, cand.astype(np.int32), ctx)
    valid = cand >= 0
    assert valid.sum() > 40 and np.isneginf(got[~valid]).all()
    np.testing.assert_allclose(got[valid], want[valid], atol=1e-4)
    assert np.std(want[valid]) > 0.01  # the scores differ between candidates


def test_recommend_indices_on_numpy_and_graph_runtimes_give_the_same_lists(served):
    from models.runtimes import NumpyRuntime
    from models.served_graph import GraphRuntime

    _, model = served
    histories = requests(model, seed=3)[0][:3]
    utok = model.tower.data.user_matrix(["1", "2", "3"])
    ctx = model.context(["1", "2", "3"], fresh=False)
    lists = {}
    for name, runtime in (("numpy", NumpyRuntime(model)), ("graph", GraphRuntime(model))):
        model.runtime = runtime
        lists[name] = model.recommend_indices(histories, utok, ctx, 10)
    np.testing.assert_array_equal(lists["numpy"][0], lists["graph"][0])
    np.testing.assert_allclose(lists["numpy"][1], lists["graph"][1], atol=1e-4)
    assert (lists["numpy"][0] >= 0).sum() == 30


def test_descending_orders_like_lexsort_on_ties_signs_and_infinities():
    from models.features import descending

    rng = np.random.default_rng(6)
    scores = rng.normal(size=(5, 40)).astype(np.float32)
    scores[:, 20:30] = scores[:, :10]  # ties
    scores[:, 30:33] = -np.inf
    scores[:, 33] = np.inf
    scores[0, :2] = [-0.0, 0.0]  # equal scores
    ids = np.stack([rng.permutation(40) - 1 for _ in range(5)])  # -1 included
    want = np.lexsort((ids, -scores), axis=1)
    np.testing.assert_array_equal(descending(scores, ids), want)
