"""The ranker's features against NumPy references, and its training on a known signal."""

import numpy as np
import pandas as pd
import pytest

from models.evaluation import ndcg_at_k
from models.feature_graph import features, graph_tables
from models.histories import history_matrix
from models.ranker import (
    FEATURES,
    ITEM_STATS,
    RankerConfig,
    RankerModel,
    RankingData,
    build_tables,
    ndcg_of_scores,
    neighbour_table,
    net_scores,
    score,
    segment_lift,
)
from models.ranker_fit import train_ranker
from models.schema import SECONDS_PER_DAY
from models.tower_data import prepare
from models.tower_fit import fit_tower
from models.two_tower import TwoTowerConfig


@pytest.mark.parametrize("alpha", [0.5, 0.7])
def test_neighbour_table_matches_brute_force_cosine(alpha):
    rng = np.random.default_rng(0)
    X = (rng.random((30, 12)) < 0.3).astype(float)
    rows, cols = np.nonzero(X)
    idx, sim = neighbour_table(rows, cols, 12, 4, alpha)
    n = X.sum(0)  # row i: the history item, |G_i|^alpha; column j: the neighbour
    cos = (X.T @ X) / np.maximum(np.outer(n ** alpha, n ** (1 - alpha)), 1e-12)
    np.fill_diagonal(cos, 0)
    for i in range(12):
        order = np.lexsort((np.arange(12), -cos[i]))[:4]
        order = order[cos[i, order] > 0]
        np.testing.assert_array_equal(idx[i, :len(order)], order)
        np.testing.assert_allclose(sim[i, :len(order)], cos[i, order], rtol=1e-5)
        assert (idx[i, len(order):] == 12).all()  # padding points at the zero row
    assert (idx[12] == 12).all() and (sim[12] == 0).all()


def test_segment_lift_matches_its_formula_and_skips_small_segments():
    rng = np.random.default_rng(3)
    X = (rng.random((40, 6)) < 0.4).astype(float)
    X[:20, 0] = 1  # token 1's users all took item 0
    rows, cols = np.nonzero(X)
    user_tok = np.zeros((40, 2), np.int32)
    user_tok[:20, 0] = 1
    user_tok[20:, 0] = 2
    user_tok[:3, 1] = 3  # a segment of 3 users: below min_users, no row
    cfg = RankerConfig(segment_min_users=5, segment_prior=4.0)
    seg_row, lift = segment_lift(rows, cols, user_tok, 6, 4, cfg)
    assert seg_row[0] == 0 and seg_row[3] == 0 and sorted(seg_row[1:3]) == [1, 2]
    assert lift.shape == (3, 7) and (lift[0] == 0).all() and (lift[:, 6] == 0).all()
    p = (X.sum(0) + 1) / (40 + 6)
    for tok, members in ((1, slice(0, 20)), (2, slice(20, 40))):
        want = np.log((X[members].sum(0) + 4 * p) / (20 + 4) / p)
        np.testing.assert_allclose(lift[seg_row[tok], :6], want, rtol=1e-5)
    assert lift[seg_row[1], 0] > 0 > lift[seg_row[2], 0]
    capped = segment_lift(rows, cols, user_tok, 6, 4,
                          RankerConfig(segment_min_users=5, segment_max_cells=7))
    assert capped[1].shape == (2, 7) and (capped[0] > 0).sum() == 1


@pytest.fixture(scope="module")
def setup():
    from models.synthetic import generate

    ds = generate(n_users=80, n_items=40, seed=4, events_per_user=10)
    cfg = TwoTowerConfig(dim=8, hidden=16, history=6, recent=2, validation=0.0)
    tower = fit_tower(prepare(ds.interactions, ds.users, ds.items, cfg), cfg, 1)[0]
    tables = build_tables(ds.interactions, tower, ds.items,
                          RankerConfig(neighbours=5, session_seconds=86_400))
    return ds, tower, tables


def test_tables_count_events_in_windows_before_now(setup):
    ds, tower, tables = setup
    items = tower.data.items
    t = ds.interactions
    recent = t[t["timestamp"] >= tables.now - 7 * 86_400]
    want = np.log1p(recent["item_id"].value_counts().reindex(items.ids).fillna(0).to_numpy())
    np.testing.assert_allclose(tables.item_stats[:-1, ITEM_STATS.index("pop_7d")], want,
                               rtol=1e-6)
    assert (tables.item_stats[-1] == 0).all() and len(tables.item_stats) == len(items) + 1


def test_features_match_a_numpy_reference(setup):
    import tensorflow as tf

    ds, tower, tables = setup
    rng = np.random.default_rng(1)
    n = len(tower.data.items)
    histories = [rng.choice(n, k, replace=False) for k in (1, 3, 9)]
    hist = history_matrix(histories, 6)
    utok = tower.data.user_matrix(["1", "2", "nobody"])
    cand = rng.integers(0, n, (3, 7)).astype(np.int32)
    cand[0, -1] = -1
    ctx = np.array([[1, 0], [0, 3.5], [0, 40]], np.float32)
    got = features(graph_tables(tables, tower), tf.constant(hist), tf.constant(utok),
                   tf.constant(cand), tf.constant(ctx), 2).numpy()
    assert got.shape == (3, 7, len(FEATURES))
    col = {f: got[..., i] for i, f in enumerate(FEATURES)}
    q = tower.user_vectors(hist, utok)
    c = np.where(cand < 0, n, cand)
    np.testing.assert_allclose(col["tower"], np.einsum("bd,bcd->bc", q, tables.item_vectors[c]),
                               atol=1e-5)
    for b, h in enumerate(histories):
        kept = h[-6:]
        for name, idx, sim in (("knn", tables.knn_idx, tables.knn_sim),
                               ("session", tables.sess_idx, tables.sess_sim)):
            for suffix, used in (("", kept), ("_recent", kept[-2:])):
                want = [sum(sim[x][idx[x] == j].sum() for x in used) for j in c[b]]
                np.testing.assert_allclose(col[name + suffix][b], want, atol=1e-5)
        toks = tables.item_tokens
        want = [np.mean([np.isin(toks[j][toks[j] > 0], toks[x][toks[x] > 0]).sum()
                         / max((toks[j] > 0).sum(), 1) for x in kept]) for j in c[b]]
        np.testing.assert_allclose(col["token_affinity"][b], want, atol=1e-5)
        np.testing.assert_allclose(col["history_pop"][b], tables.item_stats[kept, 0].mean(),
                                   rtol=1e-5)
        np.testing.assert_allclose(col["history_len"][b], np.log1p(len(kept)), rtol=1e-6)
    np.testing.assert_allclose(col["pop_all"], tables.item_stats[c, 0])
    rows = tables.seg_row[utok]
    for b in range(3):
        have = rows[b][rows[b] > 0]
        want = tables.seg_lift[have][:, c[b]].mean(0) if len(have) else np.zeros(7)
        np.testing.assert_allclose(col["segment_lift"][b], want, atol=1e-5)
    assert (rows[2] == 0).all() and np.abs(col["segment_lift"][:2]).max() > 0
    np.testing.assert_allclose(col["fresh"][:, 0], [1, 0, 0])
    idle = np.log1p(ctx[:, 1])[:, None]
    np.testing.assert_allclose(col["days_idle"], np.broadcast_to(idle, (3, 7)), rtol=1e-6)
    age = np.expm1(tables.item_stats[c, ITEM_STATS.index("age_first")])
    np.testing.assert_allclose(col["new_since_visit"],
                               np.log1p(np.maximum(ctx[:, 1:2] - age, 0)), atol=1e-4)


def test_ndcg_of_scores_agrees_with_the_protocol():
    rng = np.random.default_rng(2)
    y = rng.random((5, 12)) < 0.3
    mask = np.ones_like(y)
    mask[:, -2:] = False
    y &= mask
    n_truth = y.sum(1) + 2  # two truth items outside the candidates
    scores = rng.random((5, 12))
    got = ndcg_of_scores(scores, RankingData(np.zeros((5, 12, 1)), y & mask, mask, n_truth))
    want = []
    for r in range(5):
        order = [j for j in np.argsort(-scores[r], kind="stable") if mask[r, j]]
        truth = {f"c{j}" for j in np.flatnonzero(y[r] & mask[r])} | {"x1", "x2"}
        want.append(ndcg_at_k([f"c{j}" for j in order], frozenset(truth)))
    assert got == pytest.approx(np.mean(want))


def test_ranker_learns_which_feature_marks_the_truth():
    rng = np.random.default_rng(3)

    def part(n):
        X = rng.normal(size=(n, 20, 3)).astype(np.float32)
        y = X[..., 1] > 1.0  # the middle feature decides
        return RankingData(X, y, np.ones(y.shape, bool), np.maximum(y.sum(1), 1))

    model = train_ranker([part(60), part(30)], RankerConfig(hidden=(8,), epochs=30, members=2,
                                                            learning_rate=0.01,
                                                            select_epochs=True))
    test = part(40)
    assert ndcg_of_scores(score(model, test.X), test) > 0.9
    assert len(model.members) == 2 and 1 <= model.epochs <= 30


def test_scores_come_a_bounded_number_of_rows_at_a_time_and_match_one_call():
    """The ensemble's [members, rows, hidden] intermediates stay bounded: one call on every
    list at once kept ~0.45 GB of TensorFlow memory for the rest of the nightly."""
    rng = np.random.default_rng(1)
    sizes = (3, 8, 4, 1)
    model = RankerModel([[w for a, b in zip(sizes[:-1], sizes[1:], strict=True)
                          for w in (rng.normal(size=(a, b)), rng.normal(size=b))]
                         for _ in range(3)],
                        rng.normal(size=3).astype(np.float32), np.ones(3, np.float32), 1)
    net, seen = model.network(), []

    def spy(X):
        seen.append(len(X))
        return net(X)

    X = rng.normal(size=(7, 10, 3)).astype(np.float32)
    got = net_scores(spy, X, rows=16)
    assert max(seen) <= 16 and sum(seen) == 70
    np.testing.assert_allclose(got, net(X).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(score(model, X), got, rtol=1e-6, atol=1e-6)
    assert net_scores(spy, X[:0]).shape == (0, 10)


def test_release_age_comes_from_created_ts_else_year_else_the_first_event(setup):
    ds, tower, _ = setup
    now, ids = tower.data.now, list(tower.data.items.ids)

    def stats(items):
        got = build_tables(ds.interactions, tower, items, RankerConfig(neighbours=3))
        return {name: got.item_stats[:-1, ITEM_STATS.index(name)]
                for name in ("age_release", "age_first")}

    by_year = stats(ds.items.assign(year=2000).drop(columns="created_ts"))["age_release"]
    mid_2000 = (2000 - 1970 + 0.5) * 365.25 * SECONDS_PER_DAY
    np.testing.assert_allclose(by_year, np.log1p((now - mid_2000) / SECONDS_PER_DAY), rtol=1e-5)

    days = 2.0 * np.arange(len(ids))  # item k was released 2k days before `now`
    created = now - days * SECONDS_PER_DAY
    created[0] = now + 5 * SECONDS_PER_DAY  # a release date after `now` counts as `now`
    created[1] = np.nan  # unknown: the first event's age stands in
    both = stats(pd.DataFrame({"item_id": ids, "created_ts": created, "year": 1990}))
    np.testing.assert_allclose(both["age_release"][2:], np.log1p(days[2:]), rtol=1e-5)
    assert both["age_release"][0] == 0
    assert both["age_release"][1] == both["age_first"][1] > 0

    unknown = stats(None)
    np.testing.assert_allclose(unknown["age_release"], unknown["age_first"])
