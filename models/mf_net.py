"""MF's Keras side: the network (`MFNet`), one row per objective of how it trains
(`OBJECTIVES`: its loss and its negative sampling), and the positives it trains on
(`positives`, a tf.data.Dataset reshuffled each epoch).

    net = MFNet(n_users, n_items, config, objective); net.compile(Adam, loss=objective.loss)
    net.fit(positives(...))   via models.training.fit_early_stopping (no early stopping here)

Each step draws its own negatives (`MFNet.with_negatives`) before Keras's train_step.
Imports Keras: models.mf imports this module when it trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops


def bpr_loss(y_true, logits):
    """Pairwise (BPR): each positive above its own sampled item. The batch's rows [0, n) are
    the positives, [n, 2n) their negatives in the same order (`MFBatches` with `paired`)."""
    pos, neg = ops.split(logits, 2)
    return -ops.mean(ops.log_sigmoid(pos - neg))


@dataclass(frozen=True)
class Objective:
    """How an MF objective trains.

    Attributes:
        loss: a Keras loss of (targets [B, 1], logits [B, 1]) with sample weights [B].
        negatives: items drawn uniformly per positive in each step, the negatives (None:
            MFConfig.negatives); a batch holds its positives, then their negatives in the
            same order (target 0, weight 1).
        rating: a positive's target is its pair's mean event weight (its rating); else 1.
        weighted: a positive's sample weight is 1 + log1p(its pair's summed event weights);
            else 1.
    """

    loss: object
    negatives: int | None
    rating: bool = False
    weighted: bool = False


OBJECTIVES = {
    "logistic": Objective(keras.losses.BinaryCrossentropy(from_logits=True), None,
                          weighted=True),
    "bpr": Objective(bpr_loss, 1),
    "explicit": Objective(keras.losses.MeanSquaredError(), 0, rating=True),
}


class MFNet(keras.Model):
    """logit(u, i) = p_u · q_i + b_u + b_i + g; the L2 penalty l2 * (the squared sum of the
    batch's looked-up rows) / B is added as a loss.

    Args:
        n_users, n_items: rows of the user and item tables.
        config: an MFConfig (dim, l2, seed).
        negatives: items drawn per positive in each training step (see `with_negatives`).
    """

    def __init__(self, n_users: int, n_items: int, config, negatives: int, **kwargs):
        super().__init__(**kwargs)
        init = keras.initializers.RandomNormal(stddev=0.05, seed=config.seed)
        self.p = keras.layers.Embedding(n_users, config.dim, embeddings_initializer=init)
        self.q = keras.layers.Embedding(n_items, config.dim, embeddings_initializer=init)
        self.bu = keras.layers.Embedding(n_users, 1, embeddings_initializer="zeros")
        self.bi = keras.layers.Embedding(n_items, 1, embeddings_initializer="zeros")
        self.g = self.add_weight(shape=(), initializer="zeros", name="global_bias")
        for layer in (self.p, self.q, self.bu, self.bi):  # every weight before the optimizer
            layer.build()
        self.built = True
        self.l2, self.n_items, self.negatives = config.l2, n_items, negatives
        self.draws = keras.random.SeedGenerator(config.seed)

    def call(self, inputs):
        """inputs {"user": [B], "item": [B]} int32 -> logits [B, 1]."""
        u, i = inputs["user"], inputs["item"]
        pu, qi, bu, bi = self.p(u), self.q(i), self.bu(u), self.bi(i)
        squares = sum(ops.sum(ops.square(x)) for x in (pu, qi, bu, bi))
        self.add_loss(self.l2 * squares / ops.cast(ops.shape(u)[0], "float32"))
        return ops.sum(pu * qi, axis=1, keepdims=True) + bu + bi + self.g

    def with_negatives(self, x, y, sample_weight):
        """The batch of positives [P] followed by `negatives` rows per positive: the same
        users, in the same order, with items drawn uniformly, target 0 and weight 1."""
        k = self.negatives
        if k == 0:
            return x, y, sample_weight
        u = x["user"]
        items = keras.random.randint((ops.shape(u)[0] * k,), 0, self.n_items, "int32",
                                     seed=self.draws)
        rows = {"user": ops.concatenate([u, ops.tile(u, [k])]),
                "item": ops.concatenate([x["item"], items])}
        return (rows, ops.concatenate([y, ops.zeros_like(ops.tile(y, [k, 1]))]),
                ops.concatenate([sample_weight, ops.ones_like(ops.tile(sample_weight, [k]))]))

    def train_step(self, data):
        return super().train_step(self.with_negatives(*data))

    def arrays(self) -> dict[str, np.ndarray]:
        """The trained parameters as NumPy: user_factors, item_factors, user_bias,
        item_bias, global_bias."""
        return {"user_factors": self.p.embeddings.numpy(),
                "item_factors": self.q.embeddings.numpy(),
                "user_bias": self.bu.embeddings.numpy()[:, 0],
                "item_bias": self.bi.embeddings.numpy()[:, 0],
                "global_bias": float(self.g.numpy())}


def positives(u: np.ndarray, i: np.ndarray, w: np.ndarray, objective: Objective,
              batch_size: int, seed: int):
    """The positive pairs as a tf.data.Dataset of batches, reshuffled each epoch.

    Args:
        u, i: [n] int32 user and item rows of the observed pairs.
        w: [n] float32 the pairs' rating (objective.rating) or log1p summed event weight.
        objective: its targets and weights.
        batch_size: positives per batch.
        seed: the shuffle's seed.

    Returns:
        batches of ({"user": [B], "item": [B]}, targets [B, 1], sample weights [B]).
    """
    import tensorflow as tf

    target = w if objective.rating else np.ones(len(u), np.float32)
    weight = 1.0 + w if objective.weighted else np.ones(len(u), np.float32)
    pairs = ({"user": u, "item": i}, target[:, None], weight)
    n = len(u)
    rng = tf.random.Generator.from_seed(seed)

    def epoch(_):  # a new order each time Keras iterates the dataset (each epoch)
        return tf.data.Dataset.from_tensor_slices(
            tf.argsort(rng.uniform([n]))).batch(batch_size)

    return (tf.data.Dataset.range(1).flat_map(epoch)
            .map(lambda rows: tf.nest.map_structure(lambda a: tf.gather(a, rows), pairs))
            .apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
            .prefetch(tf.data.AUTOTUNE))
