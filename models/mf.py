"""Matrix factorisation with biases (the seed's §6.2 model) trained for top-K retrieval.

score(u, i) = p_u · q_i + b_u + b_i + g, L2 (λ = 0.01 by default) on the looked-up rows.
Objectives (`MFConfig.objective`): "logistic" (the default, implicit feedback: every observed
(user, item) pair is a positive weighted by log1p of its summed event weights, against
uniformly sampled negatives), "bpr" (implicit, pairwise: each positive above a sampled item
of the same user) and "explicit" (the seed's MSE on ratings: each pair's mean event weight,
e.g. its MovieLens rating, with no negatives).
Fresh users are folded in from their recent items (see `fold_in`), so the same item
vectors serve warm users (precomputed) and fresh ones (on demand):
query = [p_u, 1] and item = [q_i, b_i] make the score an inner product for Faiss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.finite import NonFiniteError, require_finite
from models.preprocess import Preprocessor
from models.vocab import Vocab, interaction_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MFConfig:
    """Hyperparameters of MF.

    Attributes:
        dim: embedding dimension.
        l2: L2 penalty on the embedding and bias rows of each batch.
        epochs: passes over the positives.
        batch_size: examples per step (positives and their negatives).
        learning_rate: Adam learning rate.
        negatives: sampled negatives per positive.
        fold_in_alpha: extra confidence of a fresh user's history items in the fold-in.
        fold_in_l2: ridge penalty of the fold-in.
        objective: "logistic", "bpr" or "explicit" (see the module docstring).
        seed: random seed.
    """

    dim: int = 32
    l2: float = 0.01
    epochs: int = 12
    batch_size: int = 4096
    learning_rate: float = 0.01
    negatives: int = 4
    fold_in_alpha: float = 20.0
    fold_in_l2: float = 1.0
    objective: str = "logistic"
    seed: int = 0


@dataclass
class MFModel:
    """A trained MF model: vocabularies, factors and biases as NumPy arrays."""

    users: Vocab
    items: Vocab
    user_factors: np.ndarray  # [num_users, dim]
    item_factors: np.ndarray  # [num_items, dim]
    user_bias: np.ndarray  # [num_users]
    item_bias: np.ndarray  # [num_items]
    global_bias: float
    pos_logit: float  # mean training logit of positives, the fold-in's target
    neg_logit: float  # mean training logit of sampled negatives
    config: MFConfig

    def item_vectors(self) -> np.ndarray:
        """Returns [num_items, dim + 1] float32: [q_i, b_i]."""
        return np.hstack([self.item_factors, self.item_bias[:, None]]).astype(np.float32)

    def user_vectors(self) -> np.ndarray:
        """Returns [num_users, dim + 1] float32: [p_u, 1]."""
        ones = np.ones((len(self.user_factors), 1), np.float32)
        return np.hstack([self.user_factors, ones]).astype(np.float32)

    def fold_in(self, histories: list[list[int]]) -> np.ndarray:
        """Query vectors for users known only by their items (weighted ridge, ALS-style).

        Solves min_p Σ_i c_i (y_i - b_i - p·q_i)² + λ|p|² with y_i = pos_logit, c_i = 1 + α
        for history items and y_i = neg_logit, c_i = 1 for the others.

        Args:
            histories: item indices per user; unknown items (index < 0) are ignored.

        Returns:
            [num_users, dim + 1] float32 query vectors [p, 1].
        """
        Q, b = self.item_factors.astype(np.float64), self.item_bias.astype(np.float64)
        a, lam = self.config.fold_in_alpha, self.config.fold_in_l2
        G = Q.T @ Q + lam * np.eye(Q.shape[1])
        g = Q.T @ (self.neg_logit - b)
        out = np.zeros((len(histories), Q.shape[1] + 1), np.float32)
        out[:, -1] = 1.0
        for n, hist in enumerate(histories):
            h = np.unique([i for i in hist if i >= 0])
            if len(h) == 0:
                continue
            Qh = Q[h]
            rhs = g + Qh.T @ ((1 + a) * (self.pos_logit - b[h]) - (self.neg_logit - b[h]))
            out[n, :-1] = np.linalg.solve(G + a * Qh.T @ Qh, rhs)
        return out


def train_mf(interactions: pd.DataFrame, config: MFConfig = MFConfig(),
             event_weights=None) -> MFModel:
    """Trains MF with biases with `config.objective` (implicit logistic by default).

    Args:
        interactions: the train side only (user_id, item_id, timestamp, ...).
        config: hyperparameters.
        event_weights: weight per event type; None uses the schema's defaults.

    Returns:
        The trained MFModel.

    Raises:
        NonFiniteError: a pair's weight is not finite (e.g. one event weight past float32's
            range), the loss stops being finite, or a trained parameter is NaN or inf: no
            model rather than one that serves empty lists.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    pre = Preprocessor.fit(interactions, event_weights)
    users, items = pre.users, pre.items
    pairs = pre.pairs(interactions)
    u, i = pairs.u.to_numpy(np.int32), pairs.i.to_numpy(np.int32)
    w = np.log1p(pairs.w.to_numpy(np.float32))  # diminishing returns of repeated events
    rng = np.random.default_rng(config.seed)
    reg = keras.regularizers.L2(config.l2)

    class MF(keras.Model):
        def __init__(self):
            super().__init__()
            init = keras.initializers.RandomNormal(stddev=0.05, seed=config.seed)
            self.p = keras.layers.Embedding(len(users), config.dim, embeddings_initializer=init)
            self.q = keras.layers.Embedding(len(items), config.dim, embeddings_initializer=init)
            self.bu = keras.layers.Embedding(len(users), 1, embeddings_initializer="zeros")
            self.bi = keras.layers.Embedding(len(items), 1, embeddings_initializer="zeros")
            self.g = self.add_weight(shape=(), initializer="zeros", name="global_bias")

        def call(self, uu, ii):
            pu, qi, bu, bi = self.p(uu), self.q(ii), self.bu(uu)[:, 0], self.bi(ii)[:, 0]
            logits = tf.reduce_sum(pu * qi, axis=1) + bu + bi + self.g
            penalty = reg(pu) + reg(qi) + reg(bu) + reg(bi)
            return logits, penalty / tf.cast(tf.shape(uu)[0], tf.float32)

    model = MF()
    opt = keras.optimizers.Adam(config.learning_rate)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    objective = config.objective
    if objective not in ("logistic", "bpr", "explicit"):
        raise ValueError(f"MFConfig.objective {objective!r}: use logistic, bpr or explicit")
    if objective == "explicit":  # target: each pair's mean event weight (its rating)
        df = pd.DataFrame({"u": users.lookup(interactions["user_id"]),
                           "i": items.lookup(interactions["item_id"]),
                           "w": interaction_weights(interactions, pre.event_weights)})
        mean_w = df.groupby(["u", "i"])["w"].mean()
        u = mean_w.index.get_level_values(0).to_numpy(np.int32)
        i = mean_w.index.get_level_values(1).to_numpy(np.int32)
        w = mean_w.to_numpy(np.float32)
        model.g.assign(float(w.mean()))
    _require_finite_weights(w, u, i, users, items)

    def step(uu, ii, y, sw):
        with tf.GradientTape() as tape:
            logits, penalty = model(uu, ii)
            if objective == "explicit":  # y = the rating
                loss = tf.reduce_mean(tf.square(logits - y))
            elif objective == "bpr":  # rows [0, n) positives, [n, 2n) their negatives
                pos, neg = tf.split(logits, 2)
                loss = -tf.reduce_mean(tf.math.log_sigmoid(pos - neg))
            else:
                loss = bce(y[:, None], logits[:, None], sample_weight=sw)
            loss += penalty
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function(reduce_retracing=True)
    def epoch_steps(uu, ii, y, sw, batches):
        """Every step of one epoch inside one graph: `batches` [steps, batch] row indices
        (-1 pads the last); no Python between the steps."""
        total = tf.constant(0.0)
        for n in tf.range(tf.shape(batches)[0]):
            b = batches[n]
            b = tf.boolean_mask(b, b >= 0)
            if objective == "bpr":
                b = tf.concat([b, b + tf.shape(uu)[0] // 2], 0)
            loss = step(tf.gather(uu, b), tf.gather(ii, b), tf.gather(y, b), tf.gather(sw, b))
            total += loss * tf.cast(tf.shape(b)[0], tf.float32)
        return total

    n_neg = 0 if objective == "explicit" else (1 if objective == "bpr" else config.negatives)
    for epoch in range(config.epochs):
        neg_i = rng.integers(0, len(items), len(u) * n_neg).astype(np.int32)
        uu = np.concatenate([u, np.repeat(u, n_neg)])
        ii = np.concatenate([i, neg_i])
        y = np.concatenate([w if objective == "explicit" else np.ones(len(u)),
                            np.zeros(len(neg_i))]).astype(np.float32)
        sw = np.concatenate([1.0 + w, np.ones(len(neg_i))]).astype(np.float32)
        order = rng.permutation(len(u) if objective == "bpr" else len(uu)).astype(np.int32)
        bs = config.batch_size
        batches = np.full(-(-len(order) // bs) * bs, -1, np.int32)
        batches[:len(order)] = order
        total = float(epoch_steps(uu, ii, y, sw, batches.reshape(-1, bs)))
        log.debug("mf epoch %d loss %.4f", epoch + 1, total / len(order))
        if not np.isfinite(total):  # stop here: every later step would only spread the NaN
            raise NonFiniteError(f"MF: the training loss is {total} at epoch {epoch + 1}; "
                                 f"nothing was exported. Check {_CHECK}")

    P, Q = model.p.embeddings.numpy(), model.q.embeddings.numpy()
    bu, bi = model.bu.embeddings.numpy()[:, 0], model.bi.embeddings.numpy()[:, 0]
    g = float(model.g.numpy())
    require_finite({"user_factors": P, "item_factors": Q, "user_bias": bu, "item_bias": bi,
                    "global_bias": g}, "MF", _CHECK)
    pos = np.einsum("nd,nd->n", P[u], Q[i]) + bu[u] + bi[i] + g
    neg_u = np.repeat(u, 1)
    neg_items = rng.integers(0, len(items), len(neg_u))
    neg = np.einsum("nd,nd->n", P[neg_u], Q[neg_items]) + bu[neg_u] + bi[neg_items] + g
    # Fold-in targets live in the (p·q + b_i) space: drop the user and global terms.
    pos_t = float(np.mean(pos - bu[u] - g))
    neg_t = float(np.mean(neg - bu[neg_u] - g))
    return MFModel(users, items, P, Q, bu, bi, g, pos_t, neg_t, config)


_CHECK = ("the input's weights and ratings (finite, 0..1000: docs/SCHEMA.md) and MFConfig's "
          "learning_rate and l2")


def _require_finite_weights(w: np.ndarray, u: np.ndarray, i: np.ndarray, users: Vocab,
                            items: Vocab) -> None:
    """Refuses pairs whose training weight (or rating target) is NaN or inf, naming one."""
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        n = bad[0]
        raise NonFiniteError(
            f"MF: {bad.size} (user, item) pair(s) have a non-finite training weight, e.g. "
            f"user {users.ids[u[n]]!r} item {items.ids[i[n]]!r}: each event's weight must be "
            "finite and >= 0 (summed per pair in float32, whose largest value is ~3.4e38); "
            "drop or fix those rows (docs/SCHEMA.md bounds `weight` to 0..1000)")
