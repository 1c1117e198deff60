"""SavedModel export of MF: the canonical artifact, loadable by TF Serving.

Signatures (the first two take `item_ids`: [batch, history] tf.string, "" as padding):
- `user_embedding` -> {"query": [batch, dim + 1]}: the fold-in of MFModel.fold_in, solved
  by conjugate gradients so that the graph uses only ops LiteRT has built in.
- `user_embedding_idx` (`item_idx`: [1, HISTORY] int32, -1 as padding:
  models.histories.history_matrix) -> {"query"}: the same from item indices; converted at
  export to `user_tower.tflite`, which the functions run with the light LiteRT interpreter
  instead of importing TensorFlow.
- `serving_default` -> {"item_ids": [batch, k] tf.string, "scores": [batch, k]}: top-k by
  brute force with the history excluded (TF Serving's REST `instances` format works on it).
- `item_embeddings` (no input) -> {"item_ids": [num_items], "embeddings": [num_items, dim + 1]}.

Importing this module imports TensorFlow: the functions never do (models.kinds.mf reads
HISTORY from models.histories and runs the LiteRT file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from models.finite import max_abs_diff, require_finite
from models.histories import HISTORY, history_matrix

if TYPE_CHECKING:
    from models.mf import MFModel


class MFServing(tf.Module):
    """MF's fold-in and brute-force top-k as TensorFlow signatures (see the module docstring).

    The fold-in solves (G + alpha * Q_h^T Q_h) p = g + sum_h Q_h * h_term over the history's
    distinct items h, where G = Q^T Q + l2 I and g = Q^T (neg_logit - b) come from the whole
    catalog (computed once here) and h_term = (1 + alpha) (pos_logit - b) - (neg_logit - b).

    Args:
        model: the trained MF model.
        k: list length of `recommend` (at most the number of items).
    """

    def __init__(self, model: MFModel, k: int):
        super().__init__()
        Q = model.item_factors.astype(np.float64)
        b = model.item_bias.astype(np.float64)
        cfg = model.config
        self.n_items, self.k = len(model.items), min(k, len(model.items))
        self.alpha, self.cg_iterations = float(cfg.fold_in_alpha), 2 * Q.shape[1]
        ids = tf.constant([str(x) for x in model.items.ids])
        self.ids = ids
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(ids, tf.range(self.n_items, dtype=tf.int64)), -1)
        self.Q = tf.constant(Q, tf.float32)
        self.G = tf.constant(Q.T @ Q + cfg.fold_in_l2 * np.eye(Q.shape[1]), tf.float32)
        self.g = tf.constant(Q.T @ (model.neg_logit - b), tf.float32)
        # Per item: the right-hand-side term a history item adds to the fold-in.
        self.h = tf.constant((1 + cfg.fold_in_alpha) * (model.pos_logit - b)
                             - (model.neg_logit - b), tf.float32)
        self.xb = tf.constant(model.item_vectors())

    def _presence(self, idx):
        # one_hot of -1 is all zeros; max over the history counts duplicates once.
        return tf.reduce_max(tf.one_hot(idx, self.n_items, dtype=tf.float32), axis=1)

    def _query(self, idx):
        """Fold-in from [batch, history] item indices (-1 = none): only the history's rows of
        Q are touched, so the cost does not grow with the catalog."""
        idx = tf.cast(idx, tf.int32)
        valid = idx >= 0
        pos = tf.range(tf.shape(idx)[1])
        earlier = pos[None, :] < pos[:, None]  # [h, h]: j before i
        repeat = tf.reduce_any(tf.equal(idx[:, :, None], idx[:, None, :])
                               & earlier[None] & valid[:, None, :], axis=2)
        w = tf.cast(valid & ~repeat, tf.float32)  # each distinct item once
        safe = tf.maximum(idx, 0)
        Qh = tf.gather(self.Q, safe)  # [batch, history, dim]
        Qw = Qh * w[:, :, None]
        A = self.G + self.alpha * tf.matmul(Qw, Qh, transpose_a=True)
        rhs = self.g + tf.reduce_sum(Qw * tf.gather(self.h, safe)[:, :, None], axis=1)
        p = _conjugate_gradients(A, rhs, iterations=self.cg_iterations)
        p = tf.where(tf.reduce_sum(w, axis=1, keepdims=True) > 0, p, tf.zeros_like(p))
        return tf.concat([p, tf.ones_like(p[:, :1])], axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_ids")])
    def user_embedding(self, item_ids):
        return {"query": self._query(self.table.lookup(item_ids))}

    @tf.function(input_signature=[tf.TensorSpec([1, HISTORY], tf.int32, name="item_idx")])
    def user_embedding_idx(self, item_idx):
        return {"query": self._query(item_idx)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="item_ids")])
    def recommend(self, item_ids):
        idx = self.table.lookup(item_ids)
        presence = self._presence(idx)
        scores = tf.matmul(self._query(idx), self.xb, transpose_b=True)
        scores = tf.where(presence > 0, tf.constant(-np.inf, tf.float32), scores)
        top = tf.math.top_k(scores, k=self.k)
        return {"item_ids": tf.gather(self.ids, top.indices), "scores": top.values}

    @tf.function(input_signature=[])
    def item_embeddings(self):
        return {"item_ids": self.ids, "embeddings": self.xb}


def export_mf(model: MFModel, path: str, k: int = 100) -> bytes:
    """Writes `model` as a SavedModel at `path` (a local directory).

    Args:
        model: the trained MF model.
        path: output directory; created.
        k: list length of the `serving_default` signature.

    Returns:
        The LiteRT (TFLite) flatbuffer of the `user_embedding_idx` signature.

    Raises:
        NonFiniteError: a factor or bias is NaN or inf (nothing is written).
    """
    require_finite({"item_factors": model.item_factors, "item_bias": model.item_bias,
                    "pos_logit": model.pos_logit, "neg_logit": model.neg_logit}, "MF export",
                   "the training (models.mf.train_mf refuses such a model)")
    module = MFServing(model, k)
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.recommend,
        "user_embedding": module.user_embedding,
        "user_embedding_idx": module.user_embedding_idx,
        "item_embeddings": module.item_embeddings,
    })
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.user_embedding_idx.get_concrete_function()], module)
    return converter.convert()


def _conjugate_gradients(A, b, iterations: int):
    """Solves A x = b for SPD A [batch, d, d], b [batch, d] with built-in ops only."""
    x = tf.zeros_like(b)
    r = p = b
    rs = tf.reduce_sum(r * r, axis=1, keepdims=True)
    for _ in range(iterations):
        Ap = tf.squeeze(tf.matmul(A, p[:, :, None]), 2)
        alpha = rs / (tf.reduce_sum(p * Ap, axis=1, keepdims=True) + 1e-20)
        x, r = x + alpha * p, r - alpha * Ap
        rs_new = tf.reduce_sum(r * r, axis=1, keepdims=True)
        p = r + rs_new / (rs + 1e-20) * p
        rs = rs_new
    return x


def check_tower(tflite: bytes, model: MFModel, n_checks: int = 8, seed: int = 0,
                atol: float = 1e-3) -> float:
    """Runs the LiteRT tower on random histories against MFModel.fold_in.

    Returns:
        The largest absolute difference.

    Raises:
        ValueError: when it exceeds `atol` (the conversion changed the scores), or
            (NonFiniteError) when either side returns NaN or inf.
    """
    from ai_edge_litert.interpreter import Interpreter

    run = Interpreter(model_content=tflite).get_signature_runner()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n_checks):
        hist = rng.choice(len(model.items), rng.integers(1, min(HISTORY, len(model.items)) + 1))
        got = run(item_idx=history_matrix([hist], HISTORY))["query"]
        worst = max(worst, max_abs_diff(got, model.fold_in([list(hist)]), "LiteRT user tower"))
    if worst > atol:
        raise ValueError(f"LiteRT user tower differs from the model by {worst:.2e} > {atol}")
    return worst
