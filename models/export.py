"""SavedModel export of MF: the canonical artifact, loadable by TF Serving.

Signatures (all take `item_ids`: [batch, history] tf.string, "" as padding):
- `user_embedding` -> {"query": [batch, dim + 1]}: the fold-in of MFModel.fold_in.
- `serving_default` -> {"item_ids": [batch, k] tf.string, "scores": [batch, k]}: top-k by
  brute force with the history excluded (TF Serving's REST `instances` format works on it).
- `item_embeddings` (no input) -> {"item_ids": [num_items], "embeddings": [num_items, dim + 1]}.
"""

from __future__ import annotations

import numpy as np

from models.mf import MFModel


def export_mf(model: MFModel, path: str, k: int = 100) -> None:
    """Writes `model` as a SavedModel at `path` (a local directory).

    Args:
        model: the trained MF model.
        path: output directory; created.
        k: list length of the `serving_default` signature.
    """
    import tensorflow as tf

    Q = model.item_factors.astype(np.float64)
    b = model.item_bias.astype(np.float64)
    cfg = model.config
    G = Q.T @ Q + cfg.fold_in_l2 * np.eye(Q.shape[1])
    g = Q.T @ (model.neg_logit - b)
    # Per item: the right-hand-side term a history item adds to the fold-in.
    h_term = (1 + cfg.fold_in_alpha) * (model.pos_logit - b) - (model.neg_logit - b)
    n_items = len(model.items)
    k = min(k, n_items)

    class MFServing(tf.Module):
        def __init__(self):
            super().__init__()
            ids = tf.constant([str(x) for x in model.items.ids])
            self.ids = ids
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(ids, tf.range(n_items, dtype=tf.int64)), -1)
            self.Q = tf.constant(Q)
            self.G = tf.constant(G)
            self.g = tf.constant(g)
            self.h = tf.constant(h_term)
            self.xb = tf.constant(model.item_vectors())

        def _presence(self, item_ids):
            idx = self.table.lookup(item_ids)
            hot = tf.one_hot(tf.where(idx >= 0, idx, n_items), n_items + 1, dtype=tf.float64)
            return tf.reduce_max(hot, axis=1)[:, :n_items]  # [batch, n_items], duplicates once

        def _query(self, presence):
            A = self.G + cfg.fold_in_alpha * tf.einsum("bi,id,ie->bde", presence, self.Q, self.Q)
            rhs = self.g + tf.linalg.matvec(self.Q, presence * self.h, transpose_a=True)
            p = tf.linalg.solve(A, rhs[:, :, None])[:, :, 0]
            p = tf.where(tf.reduce_sum(presence, axis=1, keepdims=True) > 0, p, tf.zeros_like(p))
            p = tf.cast(p, tf.float32)
            return tf.concat([p, tf.ones_like(p[:, :1])], axis=1)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_ids")])
        def user_embedding(self, item_ids):
            return {"query": self._query(self._presence(item_ids))}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_ids")])
        def recommend(self, item_ids):
            presence = self._presence(item_ids)
            scores = tf.matmul(self._query(presence), self.xb, transpose_b=True)
            scores = tf.where(presence > 0, tf.constant(-np.inf, tf.float32), scores)
            top = tf.math.top_k(scores, k=k)
            return {"item_ids": tf.gather(self.ids, top.indices), "scores": top.values}

        @tf.function(input_signature=[])
        def item_embeddings(self):
            return {"item_ids": self.ids, "embeddings": self.xb}

    module = MFServing()
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.recommend,
        "user_embedding": module.user_embedding,
        "item_embeddings": module.item_embeddings,
    })
