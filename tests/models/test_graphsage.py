"""GraphSAGE on tiny data with obvious answers: two taste blocks whose items carry the block's
genre (items 20, 21: features but no events, cold items), its sampler, its layers and its
LiteRT export."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models.graphsage import GraphSAGEConfig, GraphSAGEModel
from models.graphsage_graph import Graph, sample_neighbours
from models.tower_data import prepare

FAST = GraphSAGEConfig(dim=8, hidden=16, history=8, user_fanout=4, item_fanout=4, epochs=8,
                       batch_size=64, learning_rate=0.02, validation=0.0, max_per_user=None)


def blocks(n_users=60, seed=0):
    """Even users like items 0-9 (genre A), odd users 10-19 (genre B); 20 (A) and 21 (B) are
    in the items table without events."""
    rng = np.random.default_rng(seed)
    rows = [(str(u), str(i), 1000 * u + t, "click" if t % 2 else "view")
            for u in range(n_users)
            for t, i in enumerate(rng.choice(np.arange(10 * (u % 2), 10 * (u % 2) + 10), 6,
                                             replace=False))]
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type"])
    items = pd.DataFrame({"item_id": [str(i) for i in range(22)],
                          "genres": ["A" if i < 10 or i == 20 else "B" for i in range(22)],
                          "created_ts": 0})
    users = pd.DataFrame({"user_id": [str(u) for u in range(n_users)],
                          "side": ["left" if u % 2 == 0 else "right" for u in range(n_users)]})
    return train, users, items


def test_sampler_takes_every_neighbour_up_to_the_fanout_and_samples_beyond():
    # node 0: neighbours 5, 6 (weights 1, 2); node 1: 7 neighbours 10..16; node 2: none
    indptr = np.array([0, 2, 9, 9])
    nbrs = np.array([5, 6, *range(10, 17)])
    w = np.array([1, 2, *range(3, 10)], np.float32)
    rng = np.random.default_rng(0)
    out, ow = sample_neighbours(indptr, nbrs, w, np.array([[0, 1, 2, -1]]), 4, rng)
    assert out.shape == ow.shape == (1, 4, 4)
    assert out[0, 0].tolist() == [5, 6, -1, -1] and ow[0, 0].tolist() == [1, 2, 0, 0]
    assert set(out[0, 1]) <= set(range(10, 17)) and (ow[0, 1] == out[0, 1] - 7).all()
    assert (out[0, 2:] == -1).all() and (ow[0, 2:] == 0).all()
    many, _ = sample_neighbours(indptr, nbrs, w, np.ones(2000, np.int64), 4, rng)
    assert set(many.ravel()) == set(range(10, 17))  # every neighbour can be drawn


def test_graph_weights_edges_as_mf_and_both_orientations_agree():
    train, users, items = blocks(4)
    train = pd.concat([train, train.iloc[[0]].assign(event_type="purchase", timestamp=1)])
    data = prepare(train, users, items, FAST)
    g = Graph.build(data, train)
    u0, i0 = 0, data.items.lookup([train.iloc[0]["item_id"]])[0]
    row = g.user_items[g.user_indptr[u0]:g.user_indptr[u0 + 1]]
    w = g.user_w[g.user_indptr[u0]:g.user_indptr[u0 + 1]][row == i0][0]
    first = 1.0 if train.iloc[0]["event_type"] == "view" else 2.0
    assert w == pytest.approx(np.log1p(first + 5.0))  # view/click + purchase, summed
    assert g.user_w.sum() == pytest.approx(g.item_w.sum()) and len(g.user_items) == 24
    a = g.adjacency("item").toarray()
    assert np.allclose(a.sum(1)[data.has_events], 1.0)
    assert not data.has_events[data.items.lookup(["20", "21"])].any()
    assert (a[~data.has_events] == 0).all()  # items without events have no edges


@pytest.fixture(scope="module")
def trained():
    from models.graphsage_fit import fit_graphsage

    train, users, items = blocks()
    data = prepare(train, users, items, FAST)
    graph = Graph.build(data, train)
    model, _ = fit_graphsage(data, graph, FAST, FAST.epochs)
    return model, graph


def test_an_unseen_users_vector_comes_from_their_items(trained):
    model, _ = trained
    idx = model.data.items.lookup
    a = model.queries(["new"], [idx(["1", "3", "5"])])
    # the mean over the neighbours: order does not matter, the same items give the same vector
    assert np.allclose(a, model.queries(["other"], [idx(["5", "1", "3"])]), atol=1e-6)
    assert a.shape == (1, FAST.dim) and np.allclose(np.linalg.norm(a), 1.0)
    # a fresh user of block A is closer to A's items, the cold A item above the cold B item
    scores = (a @ model.item_vectors.T)[0]
    assert scores[idx(["0", "2", "4"])].min() > scores[idx(["10", "12", "14"])].max()
    assert scores[idx(["20"])[0]] > scores[idx(["21"])[0]]
    b = model.queries(["new"], [idx(["11", "13"])])
    assert ((b @ model.item_vectors.T)[0][idx(["21"])[0]]
            > (b @ model.item_vectors.T)[0][idx(["20"])[0]])


def test_keras_layers_with_whole_neighbourhoods_equal_the_numpy_model(trained):
    from models.graphsage_net import GraphSAGENet

    model, g = trained
    d = model.data
    net = GraphSAGENet(d.item_tokens, d.user_tokens, d.item_enc.size, d.user_enc.size, FAST)
    net.set_arrays(model.arrays)
    tables = net.token_tables()
    hist = np.array([[-1, -1, 0, 2, 4, 6, 8, 1], [-1] * 7 + [12]], np.int32)
    big = 64  # above every degree: the sample is the whole neighbourhood
    hu, hw = sample_neighbours(g.item_indptr, g.item_users, g.item_w, hist, big,
                               np.random.default_rng(0))
    tok = d.user_tokens[:2]
    q = net.query(tables, tok, hist, hu, hw).numpy()
    assert q.shape == (2, FAST.dim)
    assert np.allclose(q, model.user_vectors(hist, tok), atol=1e-5)
    target = np.arange(len(d.items), dtype=np.int32)
    keep = d.has_events.astype(np.int32)
    users, uw = sample_neighbours(g.item_indptr, g.item_users, g.item_w, target, big,
                                  np.random.default_rng(0))
    ui, uiw = sample_neighbours(g.user_indptr, g.user_items, g.user_w, users, big,
                                np.random.default_rng(0))
    v = net.candidate(tables, target, keep, users, uw, ui, uiw).numpy()
    assert np.allclose(v, model.item_vectors, atol=1e-5)  # cold items: tokens alone


def test_litert_export_matches_the_model(trained):
    from ai_edge_litert.interpreter import Interpreter

    from models.graphsage_export import check_litert, export_litert

    model, _ = trained
    lite = export_litert(model)
    run = Interpreter(model_content=lite).get_signature_runner()
    hist = np.full((1, FAST.history), -1, np.int32)
    hist[0, -3:] = model.data.items.lookup(["1", "3", "5"])
    tok = model.data.user_matrix(["0"])
    got = run(item_idx=hist, user_tok=tok)["query"]
    assert np.allclose(got, model.user_vectors(hist, tok), atol=1e-4)
    bad = GraphSAGEModel(model.data, {**model.arrays, "u2_b": model.arrays["u2_b"] + 1.0},
                         model.config, 0, model.x_item, model.h1_item, model.item_vectors)
    with pytest.raises(ValueError, match="LiteRT GraphSAGE query differs"):
        check_litert(lite, bad)


def test_registry_runs_graphsage_under_the_evaluation_protocol():
    from evaluation.registry import resolve_models
    from models.graphsage_fit import GraphSAGERecommender

    factory = resolve_models(["graphsage"])["graphsage"]
    rec = factory()
    assert isinstance(rec, GraphSAGERecommender) and rec.name == "graphsage"
    train, users, items = blocks()
    rec.config = replace(FAST, epochs=2)
    rec.fit(train, users, items)
    lists = rec.recommend(["0", "new"], [["0", "2"], ["11"]], 5, fresh=False)
    assert [len(x) for x in lists] == [5, 5]
    assert not {"0", "2"} & set(lists[0]) and "11" not in lists[1]
