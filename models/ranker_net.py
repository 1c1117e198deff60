"""The ranker's MLP ensemble as a Keras model, its members stacked: one layer holds every
member's weights ([M, in, out]), so one step trains them all (models.ranker_fit), each from
its own seed's initial weights and its own order of cases, as if alone (about half the time
of one member after the other: the steps are small).

    RankerNet  (features -> ...hidden relu -> 1) x M on standardised features; the score is
               the members' mean; its train_step the members' losses over each case's
               candidates against its truth (RankerConfig.loss)

Imports Keras: models.ranker imports this module only when it scores in TF.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


class StackedDense(keras.layers.Layer):
    """M dense layers applied side by side: h [M or 1, n, in] -> [M, n, out].

    Args:
        kernels: [M, in, out] initial kernels (each member's own draw).
        activation: "relu" or None.
    """

    def __init__(self, kernels: np.ndarray, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        m, a, b = kernels.shape
        self.kernel = self.add_weight(shape=(m, a, b), initializer=lambda *_, **__: kernels,
                                      name="kernel")
        self.bias = self.add_weight(shape=(m, 1, b), initializer="zeros", name="bias")
        self.activation = keras.activations.get(activation)

    def call(self, h):
        return self.activation(tf.matmul(h, self.kernel) + self.bias)


class RankerNet(keras.Model):
    """The ensemble: X [..., F] -> the members' mean score [...].

    Args:
        members: per member, [W0, b0, W1, b1, ..., W_out [h, 1], b_out [1]] (RankerModel's).
        mean, std: [F] feature standardisation.
        l2: L2 penalty on the kernels (training).
        loss: "listwise" (softmax over a case's candidates against its truth spread evenly)
            or "positive" (each truth item's softmax against the case's other items not in
            its truth: positives do not compete with each other); see RankerConfig.loss.
    """

    def __init__(self, members: list[list[np.ndarray]], mean: np.ndarray, std: np.ndarray,
                 l2: float = 0.0, loss: str = "listwise", **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = tf.constant(mean, tf.float32), tf.constant(std, tf.float32)
        self.l2, self.size, self.loss_kind = l2, len(members), loss
        n = len(members[0]) // 2
        self.dense = [StackedDense(np.stack([m[2 * k] for m in members]).astype(np.float32),
                                   "relu" if k + 1 < n else None, name=f"dense_{k}")
                      for k in range(n)]
        for k, layer in enumerate(self.dense):
            layer.bias.assign(np.stack([m[2 * k + 1] for m in members])[:, None, :])
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def member_scores(self, X):
        """[M, n] each member's scores of X [..., F] flattened to n rows."""
        h = tf.reshape((X - self.mean) / self.std, [1, -1, tf.shape(X)[-1]])
        for layer in self.dense:
            h = layer(h)
        return h[..., 0]

    def call(self, X):
        scores = self.member_scores(X)  # [M, n]
        return tf.reshape(tf.reduce_mean(scores, 0), tf.shape(X)[:-1])

    def train_step(self, data):
        """One Adam step on a batch of RankingBatches: the members' list losses summed."""
        x, y, mask = (tf.transpose(data[k], [1, 0, *range(2, data[k].shape.rank)])
                      for k in ("X", "y", "mask"))  # [M, B, C, ...]
        with tf.GradientTape() as tape:
            h = tf.reshape((x - self.mean) / self.std, [self.size, -1, tf.shape(x)[-1]])
            for layer in self.dense:
                h = layer(h)
            logits = tf.where(mask, tf.reshape(h, tf.shape(mask)), -1e9)
            target = y / tf.reduce_sum(y, -1, keepdims=True)
            if self.loss_kind == "positive":  # -log(e^s_p / (e^s_p + sum_negatives e^s_n))
                negatives = tf.reduce_logsumexp(tf.where(y > 0, -1e9, logits), -1,
                                                keepdims=True)
                per_list = tf.reduce_sum(target * tf.nn.softplus(negatives - logits), -1)
            else:
                per_list = -tf.reduce_sum(target * tf.nn.log_softmax(logits), -1)
            loss = tf.reduce_sum(tf.reduce_mean(per_list, -1))  # members' sum
            loss += self.l2 * tf.add_n([tf.reduce_sum(d.kernel * d.kernel) for d in self.dense])
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def members(self) -> list[list[np.ndarray]]:
        """Per member, [W0, b0, ...] NumPy (RankerModel's layout)."""
        arrays = [(d.kernel.numpy(), d.bias.numpy()) for d in self.dense]
        return [[a for W, b in arrays for a in (W[j], b[j, 0])] for j in range(self.size)]
