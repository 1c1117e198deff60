"""The ranker's members trained together in one stacked step learn what each would learn
alone, in the plain one-member loop below (the trainer before the members were stacked), with
either loss of RankerConfig.loss."""

import numpy as np
import pytest

from models.ranker import RankerConfig, RankingData
from models.ranker_fit import fit_members


def mlp(w, mean, std, X):
    """One member: X [..., F] -> scores [...], ReLU between the layers."""
    import tensorflow as tf

    h = (X - mean) / std
    for k in range(0, len(w), 2):
        h = tf.tensordot(h, w[k], 1) + w[k + 1]
        if k + 2 < len(w):
            h = tf.nn.relu(h)
    return h[..., 0]


def one_member(train: RankingData, config: RankerConfig, epochs: int, seed: int) -> list:
    """One MLP, one step per batch: its own initial weights and case order from `seed`;
    "positive": each truth item's -log(e^s_p / (e^s_p + sum over non-truth e^s_n)), averaged
    over the list's truth items."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    valid = train.X[train.mask]
    mean, std = valid.mean(0), np.maximum(valid.std(0), 1e-3)
    sizes = [train.X.shape[-1], *config.hidden, 1]
    w = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w += [tf.Variable(rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)),
              tf.Variable(np.zeros(b, np.float32))]
    adam = keras.optimizers.Adam(config.learning_rate)
    keep = train.y.sum(1) > 0
    X, y, m = train.X[keep], train.y[keep].astype(np.float32), train.mask[keep]
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for lo in range(0, len(X), config.batch_size):
            b = order[lo:lo + config.batch_size]
            with tf.GradientTape() as tape:
                logits = tf.where(m[b], mlp(w, mean.astype(np.float32),
                                            std.astype(np.float32), X[b]), -1e9)
                target = y[b] / y[b].sum(1, keepdims=True)
                if config.loss == "positive":
                    neg = tf.reduce_logsumexp(tf.where(y[b] > 0, -1e9, logits), 1)[:, None]
                    own = logits - tf.reduce_logsumexp(tf.stack(
                        [logits, tf.broadcast_to(neg, logits.shape)]), 0)
                    loss = -tf.reduce_mean(tf.reduce_sum(target * own, 1))
                else:
                    loss = -tf.reduce_mean(tf.reduce_sum(target * tf.nn.log_softmax(logits),
                                                         1))
                loss += config.l2 * tf.add_n([tf.reduce_sum(v * v) for v in w[::2]])
            adam.apply(tape.gradient(loss, w), w)
    return [v.numpy() for v in w]


@pytest.mark.parametrize("loss", ["listwise", "positive"])
def test_stacked_members_learn_what_each_learns_alone(loss):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 12, 4)).astype(np.float32)
    y = X[..., 2] > 0.8
    mask = np.ones(y.shape, bool)
    mask[:, -2:] = False  # padding slots
    data = RankingData(X, y & mask, mask, np.maximum(y.sum(1), 1))
    config = RankerConfig(hidden=(6, 3), batch_size=8, learning_rate=0.01, loss=loss)
    model = fit_members(data, config, 3, [5, 9])[0]
    assert len(model.members) == 2 and model.epochs == 3
    for got, seed in zip(model.members, (5, 9), strict=True):
        want = one_member(data, config, 3, seed)
        assert [g.shape for g in got] == [v.shape for v in want]
        # the output bias shifts every score of a list alike, which the softmax ignores: its
        # gradient is rounding noise (that Adam scales up), so it is left out
        for g, v in zip(got[:-1], want[:-1], strict=True):
            np.testing.assert_allclose(g, v, rtol=1e-4, atol=1e-5)
    assert not np.allclose(model.members[0][0], model.members[1][0])


def test_the_two_losses_train_differently_and_a_bad_name_is_refused():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 10, 3)).astype(np.float32)
    y = X[..., 0] > 0.3  # several positives per list: the losses differ only then
    data = RankingData(X, y, np.ones(y.shape, bool), np.maximum(y.sum(1), 1))
    got = [fit_members(data, RankerConfig(hidden=(4,), batch_size=8, loss=loss), 2, [1])[0]
           for loss in ("listwise", "positive")]
    assert not np.allclose(got[0].members[0][0], got[1].members[0][0])
    with pytest.raises(ValueError, match="RankerConfig.loss"):
        RankerConfig(loss="pairwise")
