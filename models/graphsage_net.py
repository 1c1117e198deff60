"""GraphSAGE as a Keras network: two SAGE layers with (weighted) mean aggregation over the
user–item graph, one set of weights per node type and layer, trained for retrieval.

    layer 0   x_item = item id vector (row 0: none, a cold item) + mean of its token vectors
              x_user = a learnt base vector + mean of the user's feature token vectors
    layer 1   h1_v = relu(x_v W_self + mean_{n in N(v)} x_n W_neigh + b)      (per node type)
    layer 2   h2_v = L2-normalise(h1_v W_self + mean_{n in N(v)} h1_n W_neigh + b)

A query is the layer-2 vector of a user node whose neighbours are the user's recent items
(no user id: a fresh user's vector comes from the items they touched); a candidate is the
layer-2 vector of an item node, over a sample of its users, each over a sample of their
items (models.graphsage_graph.sample_neighbours). The loss is the towers' in-batch sampled
softmax with logQ correction (models.towers.retrieval_loss). The weights leave Keras by name
(`GraphSAGENet.arrays`, the names of models.graphsage.ARRAYS). Imports Keras.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.graphsage import ARRAYS
from models.towers import retrieval_loss


def wmean(x, w):
    """Weighted mean x [..., n, d] with weights w [..., n] -> [..., d]; 0 when all w are 0."""
    return tf.reduce_sum(x * w[..., None], -2) / tf.maximum(tf.reduce_sum(w, -1), 1e-6)[..., None]


def mixer(tokens: np.ndarray, vocab: int) -> tf.SparseTensor:
    """[rows, vocab] sparse matrix whose product with a token table [vocab, d] gives each
    row's mean token vector (tokens [rows, T], 0 pads: a row without tokens gives zeros)."""
    rows, cols = np.nonzero(tokens > 0)
    per_row = np.maximum((tokens > 0).sum(1), 1)
    idx = np.stack([rows, tokens[rows, cols]], 1).astype(np.int64).reshape(-1, 2)
    sp = tf.SparseTensor(idx, (1.0 / per_row[rows]).astype(np.float32), (len(tokens), vocab))
    return tf.sparse.reorder(sp)


class GraphSAGENet(keras.Model):
    """The network of models.graphsage.GraphSAGEModel's arrays, trained on
    models.graphsage_fit.SageBatches.

    Args:
        item_tokens: [n_items, T] int32 feature tokens of every item (0 pads).
        user_tokens: [n_users, U] int32 feature tokens of the train users.
        n_item_tokens, n_user_tokens: token vocabulary sizes (with the 0 pad).
        config: a models.graphsage.GraphSAGEConfig (dim, hidden, temperature, l2).
    """

    def __init__(self, item_tokens: np.ndarray, user_tokens: np.ndarray, n_item_tokens: int,
                 n_user_tokens: int, config, **kwargs):
        super().__init__(**kwargs)
        c, n = config, len(item_tokens)
        self.config = c
        self.item_mix = mixer(item_tokens, n_item_tokens)
        self.user_mix = mixer(user_tokens, n_user_tokens)
        normal = keras.initializers.RandomNormal(0, 0.05)
        shapes = {"item_id": (n + 1, c.dim), "item_tok": (n_item_tokens, c.dim),
                  "user_tok": (n_user_tokens, c.dim), "user_x0": (c.dim,)}
        for layer, (d_in, d_out) in (("1", (c.dim, c.hidden)), ("2", (c.hidden, c.dim))):
            for t in "ui":
                shapes[f"{t}{layer}_self"] = (d_in, d_out)
                shapes[f"{t}{layer}_neigh"] = (d_in, d_out)
                shapes[f"{t}{layer}_b"] = (d_out,)
        assert set(shapes) == set(ARRAYS)
        self.w = {}
        for name, shape in shapes.items():
            init = ("zeros" if name.endswith("_b") else normal if len(shape) == 1
                    or name in ("item_id", "item_tok", "user_tok")
                    else keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal"))
            self.w[name] = self.add_weight(shape=shape, initializer=init, name=name)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    # layer 0 -------------------------------------------------------------------------
    def token_tables(self):
        """(item token means [n_items, d], user layer-0 vectors [n_users, d]) of this step:
        one sparse product each, so that a batch gathers rows instead of token vectors."""
        ti = tf.sparse.sparse_dense_matmul(self.item_mix, self.w["item_tok"])
        tu = tf.sparse.sparse_dense_matmul(self.user_mix, self.w["user_tok"])
        return ti, self.w["user_x0"] + tu

    def x_item(self, tables, idx, keep=None):
        """Layer-0 vectors [..., d] of items idx [...] (-1: none, gives garbage that the
        caller's zero weights drop); keep 0 hides the id (a cold item)."""
        ids1 = (idx + 1) if keep is None else (idx + 1) * keep
        return (tf.gather(tables[0], tf.maximum(idx, 0))
                + tf.gather(self.w["item_id"], tf.maximum(ids1, 0)))

    def x_user(self, tok):
        """Layer-0 vectors [..., d] of users with feature tokens tok [..., U] (a request's)."""
        m = tf.cast(tok > 0, tf.float32)
        return self.w["user_x0"] + wmean(tf.gather(self.w["user_tok"], tok), m)

    def sage(self, t: str, layer: str, h_self, h_neigh):
        """One SAGE layer of node type t ("u" or "i"): h_self [..., d_in], h_neigh [..., d_in]
        the (weighted) mean of the neighbours' vectors."""
        w = self.w
        out = (tf.tensordot(h_self, w[f"{t}{layer}_self"], 1)
               + tf.tensordot(h_neigh, w[f"{t}{layer}_neigh"], 1) + w[f"{t}{layer}_b"])
        return tf.nn.relu(out) if layer == "1" else tf.math.l2_normalize(out, axis=-1)

    # the two sides -----------------------------------------------------------------
    def query(self, tables, user_tok, hist, hist_users, hist_users_w):
        """User vectors [B, d] from user_tok [B, U], their items hist [B, H] (-1 pads) and a
        sample of each history item's users hist_users [B, H, S] (-1 pads) with weights."""
        hw = tf.cast(hist >= 0, tf.float32)
        xi = self.x_item(tables, hist)
        h1_u = self.sage("u", "1", self.x_user(user_tok), wmean(xi, hw))
        xn = tf.gather(tables[1], tf.maximum(hist_users, 0))
        h1_i = self.sage("i", "1", xi, wmean(xn, hist_users_w))
        return self.sage("u", "2", h1_u, wmean(h1_i, hw))

    def candidate(self, tables, target, keep, users, users_w, user_items, user_items_w):
        """Item vectors [B, d] of target [B] (keep 0: id hidden), from a sample of its users
        users [B, S] (weights users_w) and of their items user_items [B, S, S2]."""
        xi = self.x_item(tables, target, keep)
        xu = tf.gather(tables[1], tf.maximum(users, 0))
        h1_i = self.sage("i", "1", xi, wmean(xu, users_w))
        h1_u = self.sage("u", "1", xu, wmean(self.x_item(tables, user_items), user_items_w))
        return self.sage("i", "2", h1_i, wmean(h1_u, users_w))

    def call(self, batch):
        tables = self.token_tables()
        q = self.query(tables, batch["user_tok"], batch["hist"], batch["hist_users"],
                       batch["hist_users_w"])
        v = self.candidate(tables, batch["target"], batch["keep"], batch["users"],
                           batch["users_w"], batch["user_items"], batch["user_items_w"])
        return q, v

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            q, v = self(batch)
            loss = retrieval_loss(q, v, batch["target"], batch["logq"],
                                  self.config.temperature)
            rows = tf.gather(self.w["item_id"], (batch["target"] + 1) * batch["keep"])
            loss += self.config.l2 * tf.reduce_sum(tf.reduce_mean(rows * rows, 0))
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(batch["target"])[0])
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights by name (float32 NumPy copies)."""
        return {k: np.array(v.numpy(), np.float32) for k, v in self.w.items()}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for k, v in self.w.items():
            v.assign(arrays[k])
