"""Mixed negative sampling of the two-tower (TwoTowerConfig.uniform_negatives): the loss
against a NumPy softmax worked out on a tiny batch, B' = 0 leaving the old loss and batches
as they were, the uniform draws' logQ, and a fit with them still learning the taste blocks."""

from dataclasses import replace

import numpy as np
import tensorflow as tf

from models.topk import build_flat_index
from models.tower_data import prepare
from models.tower_fit import TowerBatches, TwoTowerRecommender, fit_tower, mixed_logq
from models.towers import retrieval_loss
from tests.models.test_two_tower import FAST, blocks

RNG = np.random.default_rng(3)


def unit(n: int, d: int = 4) -> np.ndarray:
    x = RNG.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(q, v, target, logq, t, vn=None, neg=None, neg_logq=None) -> float:
    """Row i: softmax over [the batch's items, then the uniform ones], logits s / t - log q,
    dropping columns of row i's own item other than its diagonal; minus log of the diagonal."""
    out = []
    for i in range(len(q)):
        cols = [(q[i] @ v[j] / t - logq[j]) for j in range(len(v))
                if j == i or target[j] != target[i]]
        if vn is not None:
            cols += [q[i] @ vn[j] / t - neg_logq[j] for j in range(len(vn))
                     if neg[j] != target[i]]
        pos = q[i] @ v[i] / t - logq[i]
        out.append(np.log(np.sum(np.exp(np.array(cols, np.float64)))) - pos)
    return float(np.mean(out))


def test_loss_without_uniform_negatives_is_the_in_batch_softmax():
    q, v = unit(5), unit(5)
    target = np.array([0, 1, 1, 2, 3], np.int32)  # rows 1 and 2 share their item
    logq = np.log(np.array([0.1, 0.3, 0.3, 0.2, 0.05], np.float32))
    got = float(retrieval_loss(q, v, target, logq, 0.1))
    assert np.isclose(got, reference(q, v, target, logq, 0.1), rtol=1e-5)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32))
    assert np.isclose(float(retrieval_loss(q, v, target, logq, 0.1, empty)), got, rtol=1e-6)


def test_uniform_negatives_join_the_softmax_except_a_draw_of_the_rows_own_item():
    q, v, vn = unit(4), unit(4), unit(3)
    target = np.array([0, 1, 2, 3], np.int32)
    neg = np.array([1, 7, 9], np.int32)  # item 1 is row 1's own: not its negative
    logq = mixed_logq(np.array([3, 1, 1, 5, 0, 0, 0, 0, 0, 0]), 4, 3)
    got = float(retrieval_loss(q, v, target, logq[target], 0.2,
                               (vn, neg, logq[neg])))
    want = reference(q, v, target, logq[target], 0.2, vn, neg, logq[neg])
    assert np.isclose(got, want, rtol=1e-5)
    # more negatives: the loss of each row can only grow
    assert got > float(retrieval_loss(q, v, target, logq[target], 0.2))


def test_mixed_logq_is_each_items_share_of_both_draws():
    counts = np.array([6, 3, 1, 0])  # 10 examples, 4 items
    # B' = 0: the old correction, log(count / examples), 1 for an item never a target
    np.testing.assert_allclose(mixed_logq(counts, 8, 0), np.log([0.6, 0.3, 0.1, 0.1]),
                               rtol=1e-6)
    # B = 8, B' = 4: expected count 8 p_i + 4 / 4 = 8 p_i + 1, over B: p_i + 1/8
    np.testing.assert_allclose(mixed_logq(counts, 8, 4),
                               np.log([0.6 + 0.125, 0.3 + 0.125, 0.1 + 0.125, 0.125]),
                               rtol=1e-6)


def test_batches_bring_uniform_draws_over_the_whole_catalogue_with_cold_items_by_tokens():
    train, users, items = blocks()
    data = prepare(train, users, items, FAST)
    ex_user, ex_pos = data.examples()
    old = TowerBatches(data, ex_user, ex_pos, replace(FAST, uniform_negatives=0))[0]
    assert "neg" not in old  # B' = 0: the batch as before
    cfg = replace(FAST, uniform_negatives=200)
    batches = TowerBatches(data, ex_user, ex_pos, cfg)
    b = batches[0]
    assert b["neg"].shape == (200,) and set(b["neg"]) == set(range(len(data.items)))
    np.testing.assert_array_equal(b["neg_keep"], data.has_events[b["neg"]])
    np.testing.assert_array_equal(b["neg_logq"], batches.logq[b["neg"]])
    cold = data.items.lookup(["20", "21"])
    n = len(ex_user)
    np.testing.assert_allclose(batches.logq[cold], np.log(200 / (64 * 22)), rtol=1e-6)
    share = np.bincount(data.seq[data.offsets[ex_user] + ex_pos], minlength=22) / n
    np.testing.assert_allclose(b["logq"], np.log(share[b["target"]] + 200 / (64 * 22)),
                               rtol=1e-6)


def test_tower_with_mixed_negatives_learns_block_tastes():
    train, users, items = blocks()
    cfg = replace(FAST, uniform_negatives=16, epochs=10, xla=False)
    model = fit_tower(prepare(train, users, items, cfg), cfg, cfg.epochs)[0]
    rec = TwoTowerRecommender(cfg)
    rec.model, rec.index = model, build_flat_index(model.item_vectors)
    got = rec.recommend(["0", "1"], [["0", "1", "2"], ["11", "12"]], 3, fresh=False)
    assert all(int(i) < 10 or i == "20" for i in got[0]), got
    assert all(10 <= int(i) < 20 or i == "21" for i in got[1]), got
    assert tf.reduce_all(tf.math.is_finite(model.item_vectors))
