"""The two towers as Keras layers, and the network that trains them for retrieval.

    UserTower  hist [B, H] item indices (right-aligned, -1 pads), user_tok [B, U] (0 pads),
               table [n_items + 1, d] (TwoTower.history_table)
               -> [mean of history item vectors, mean of the last `recent`, mean of user
                   tokens, log1p(len) / 4] -> Dense relu -> Dense -> L2 normalise -> [B, d]
    ItemTower  ids1 [B] item index + 1 (0 = none: a cold item, or id dropout in training),
               tokens [B, T] (0 pads)
               -> [id vector, mean(MHA(tokens) + tokens), mean(tokens)] -> Dense relu
               -> Dense -> L2 normalise -> [B, d]
    TwoTower   both, its `train_step` the in-batch sampled softmax with logQ correction, mixed
               with uniformly drawn negatives when the batch brings them (`retrieval_loss`).

The weights leave Keras by their exported names (`TwoTower.arrays`, the bundle's `w:*`
arrays that models.runtimes reads) and come back with `TwoTower.set_arrays`. Imports Keras.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

# exported name -> (tower, layer attribute, weight index); "wq".."wo" are the attention's
ARRAYS = {"item_tok": ("items", "tokens", 0), "item_id": ("items", "ids", 0),
          "i_w1": ("items", "hidden", 0), "i_b1": ("items", "hidden", 1),
          "i_w2": ("items", "out", 0), "i_b2": ("items", "out", 1),
          "hist_id": ("users", "ids", 0), "user_tok": ("users", "tokens", 0),
          "u_w1": ("users", "hidden", 0), "u_b1": ("users", "hidden", 1),
          "u_w2": ("users", "out", 0), "u_b2": ("users", "out", 1)}
ATTENTION = ("wq", "wk", "wv", "wo")  # keras MultiHeadAttention's weights, in its order
ID_ROWS, TOKEN_ROWS = ("item_id", "hist_id"), ("item_tok", "user_tok")  # rows keyed by vocab


def masked_mean(x, mask):
    """x [..., n, d], mask [..., n] bool -> [..., d]."""
    m = tf.cast(mask, x.dtype)[..., None]
    return tf.reduce_sum(x * m, -2) / tf.maximum(tf.reduce_sum(m, -2), 1.0)


def _embedding(rows: int, dim: int, name: str):
    return keras.layers.Embedding(rows, dim, name=name,
                                  embeddings_initializer=keras.initializers.RandomNormal(0, 0.05))


def _dense(units: int, name: str, activation=None):
    """Dense with kernel ~ N(0, 1 / fan_in)."""
    return keras.layers.Dense(units, activation=activation, name=name, kernel_initializer=(
        keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal")))


class ItemTower(keras.layers.Layer):
    """Item vectors from an id embedding and self-attention over the item's feature tokens."""

    def __init__(self, n_items: int, n_tokens: int, dim: int, hidden: int, heads: int,
                 **kwargs):
        super().__init__(**kwargs)
        self.tokens = _embedding(n_tokens, dim, "item_tok")
        self.ids = _embedding(n_items + 1, dim, "item_id")
        self.attention = keras.layers.MultiHeadAttention(
            heads, dim // heads, use_bias=False, name="attention",
            kernel_initializer=keras.initializers.RandomNormal(0, 1 / math.sqrt(dim)))
        self.hidden = _dense(hidden, "hidden", "relu")
        self.out = _dense(dim, "out")

    def token_means(self, tokens):
        """[B, d] mean token vector of tokens [B, T] (the history table's item part)."""
        return masked_mean(self.tokens(tokens), tokens > 0)

    def call(self, ids1, tokens):
        t = self.tokens(tokens)  # [B, T, d]
        mask = tokens > 0
        o = self.attention(t, t, attention_mask=mask[:, None, :]) + t
        x = tf.concat([self.ids(ids1), masked_mean(o, mask), masked_mean(t, mask)], 1)
        return tf.math.l2_normalize(self.out(self.hidden(x)), axis=1)


class UserTower(keras.layers.Layer):
    """Query vectors from a history of items (no user id: a fresh user needs none)."""

    def __init__(self, n_items: int, n_tokens: int, dim: int, hidden: int, recent: int,
                 **kwargs):
        super().__init__(**kwargs)
        self.ids = _embedding(n_items + 1, dim, "hist_id")
        self.ids.build()  # TwoTower.history_table reads its rows whole
        self.tokens = _embedding(n_tokens, dim, "user_tok")
        self.hidden = _dense(hidden, "hidden", "relu")
        self.out = _dense(dim, "out")
        self.recent = recent

    def call(self, hist, user_tok, table):
        he = tf.gather(table, hist + 1)  # padding -1 -> the zero row
        m = tf.cast(hist >= 0, tf.float32)
        n = tf.reduce_sum(m, 1, keepdims=True)
        h_all = tf.reduce_sum(he, 1) / tf.maximum(n, 1.0)
        n_rec = tf.reduce_sum(m[:, -self.recent:], 1, keepdims=True)
        h_rec = tf.reduce_sum(he[:, -self.recent:], 1) / tf.maximum(n_rec, 1.0)
        ue = masked_mean(self.tokens(user_tok), user_tok > 0)
        x = tf.concat([h_all, h_rec, ue, tf.math.log1p(n) / 4.0], 1)
        return tf.math.l2_normalize(self.out(self.hidden(x)), axis=1)


class TwoTower(keras.Model):
    """Both towers over one item universe; trained with in-batch sampled softmax.

    Args:
        item_tokens: [n_items, T] int32 feature tokens of every item.
        n_item_tokens, n_user_tokens: token vocabulary sizes (with the 0 pad).
        config: a TwoTowerConfig (dim, hidden, heads, recent, temperature, l2).
    """

    def __init__(self, item_tokens: np.ndarray, n_item_tokens: int, n_user_tokens: int,
                 config, **kwargs):
        super().__init__(**kwargs)
        n, c = len(item_tokens), config
        self.config = c
        self.item_tokens = tf.constant(item_tokens, tf.int32)
        self.items = ItemTower(n, n_item_tokens, c.dim, c.hidden, c.heads, name="items")
        self.users = UserTower(n, n_user_tokens, c.dim, c.hidden, c.recent, name="users")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32),
             np.zeros(1, np.int32), np.ones(1, np.int32))  # builds every weight
        self._queries = self._items_fn = None

    def history_table(self):
        """[n_items + 1, d]: row 0 (padding) is zero, row i + 1 = id vector + mean token
        vector of item i."""
        te = self.items.token_means(self.item_tokens)
        return tf.concat([tf.zeros_like(te[:1]), self.users.ids.embeddings[1:] + te], 0)

    def call(self, hist, user_tok, target, keep):
        """(queries [B, d], vectors [B, d] of the target items, whose ids are hidden where
        keep is 0)."""
        q = self.users(hist, user_tok, self.history_table())
        return q, self.items((target + 1) * keep, tf.gather(self.item_tokens, target))

    def train_step(self, data):
        """One Adam step on a batch of models.tower_fit.TowerBatches."""
        hist, user_tok, target, keep, logq = (data[k] for k in ("hist", "user_tok", "target",
                                                                 "keep", "logq"))
        neg = data.get("neg")  # the batch's uniform negatives [B'] (mixed negative sampling)
        with tf.GradientTape() as tape:
            q, v = self(hist, user_tok, target, keep)
            rows = [self.items.ids((target + 1) * keep), self.users.ids(hist + 1)]
            uniform = None
            if neg is not None:
                neg_ids1 = (neg + 1) * data["neg_keep"]
                uniform = (self.items(neg_ids1, tf.gather(self.item_tokens, neg)), neg,
                           data["neg_logq"])
                rows.append(self.items.ids(neg_ids1))
            loss = retrieval_loss(q, v, target, logq, self.config.temperature, uniform)
            loss += self.config.l2 * tf.add_n([tf.reduce_sum(tf.reduce_mean(r * r, 0))
                                               for r in rows])
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(target)[0])
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def queries(self, hist: np.ndarray, user_tok: np.ndarray) -> np.ndarray:
        """[B, d] float32 query vectors of hist [B, H] and user_tok [B, U] (NumPy)."""
        if self._queries is None:
            self._queries = tf.function(lambda h, u: self.users(h, u, self.history_table()),
                                        reduce_retracing=True)
        return self._queries(hist, user_tok).numpy()

    def item_vectors(self, has_events: np.ndarray, batch: int = 4096) -> np.ndarray:
        """[n_items, d] float32 vectors of every item; items without events (has_events
        False) from their tokens alone."""
        if self._items_fn is None:
            self._items_fn = tf.function(lambda i, t: self.items(i, t), reduce_retracing=True)
        n = len(has_events)
        ids1 = np.where(has_events, np.arange(1, n + 1), 0).astype(np.int32)
        tokens = self.item_tokens.numpy()
        out = [self._items_fn(ids1[lo:lo + batch], tokens[lo:lo + batch]).numpy()
               for lo in range(0, n, batch)]
        return np.concatenate(out).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights by their exported names (float32 NumPy copies)."""
        out = {name: getattr(getattr(self, tower), layer).get_weights()[k]
               for name, (tower, layer, k) in ARRAYS.items()}
        d = self.config.dim
        for name, w in zip(ATTENTION, self.items.attention.get_weights(), strict=True):
            out[name] = w.reshape(d, d)  # [d, heads, dh] or (wo) [heads, dh, d]
        return out

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads weights by their exported names (shapes as `arrays` gives them)."""
        for tower, layer in {(t, n) for t, n, _ in ARRAYS.values()}:
            target = getattr(getattr(self, tower), layer)
            names = sorted((k for k, (t, n, _) in ARRAYS.items() if (t, n) == (tower, layer)),
                           key=lambda k: ARRAYS[k][2])
            target.set_weights([arrays[k] for k in names])
        attention = self.items.attention
        attention.set_weights([np.reshape(arrays[k], w.shape) for k, w in
                               zip(ATTENTION, attention.get_weights(), strict=True)])


def retrieval_loss(q, v, target, logq, temperature: float, uniform=None):
    """Sampled softmax: each query's own item against the batch's other items (in-batch
    negatives) and, with `uniform`, against extra items drawn uniformly from the catalogue
    (mixed negative sampling, Yang et al. 2020), all in one softmax; every logit (the
    positive's too) is corrected by the log of its item's sampling probability (logq). An
    item equal to the query's own (a duplicate target, or a uniform draw of it) is not
    counted as a negative.

    Args:
        q, v: [B, d] unit query and item vectors; target: [B] item indices; logq: [B].
        temperature: divides the cosine scores.
        uniform: None, or (vectors [B', d], item indices [B'], logq [B']) of the uniform
            negatives, shared by every query of the batch.

    Returns:
        The mean cross-entropy of the positives (scalar).
    """
    logits = tf.matmul(q, v, transpose_b=True) / temperature - logq[None, :]
    same = tf.equal(target[:, None], target[None, :])
    other = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(target)[0]) > 0))
    logits = tf.where(other, -1e9, logits)
    if uniform is not None:
        vn, neg, neg_logq = uniform
        extra = tf.matmul(q, vn, transpose_b=True) / temperature - neg_logq[None, :]
        logits = tf.concat([logits, tf.where(tf.equal(target[:, None], neg[None, :]), -1e9,
                                             extra)], 1)
    labels = tf.range(tf.shape(target)[0])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
