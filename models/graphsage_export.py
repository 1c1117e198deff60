"""GraphSAGE's query side as LiteRT: a fresh user's vector from their items on demand, run
without TensorFlow (ai_edge_litert), as the towers' user_tower.tflite.

    user_embedding(item_idx [1, H] int32, -1 pads (models.histories.history_matrix),
                   user_tok [1, U] int32, 0 pads (TowerData.user_matrix))
        -> {"query": [1, dim]}

The layer-0 and layer-1 item tables (GraphSAGEModel.x_item, h1_item, over every item's full
neighbourhood) are constants of the file, so a request gathers the history's rows and runs
the user node's two SAGE layers (models.graphsage.GraphSAGEModel.user_vectors); the item
vectors it is scored against are GraphSAGEModel.item_vectors (a Faiss index). Imports
TensorFlow: the functions never do.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.finite import max_abs_diff, require_finite
from models.graphsage import GraphSAGEModel


class GraphSAGEServing(tf.Module):
    """The user node's layers over constant item tables (see the module docstring)."""

    def __init__(self, model: GraphSAGEModel):
        super().__init__()
        w, c = model.arrays, model.config
        self.history, self.width = c.history, model.data.user_enc.width
        pad = lambda a: tf.constant(np.vstack([np.zeros((1, a.shape[1]), np.float32), a]))  # noqa: E731
        self.x_item, self.h1_item = pad(model.x_item), pad(model.h1_item)
        self.w = {k: tf.constant(w[k]) for k in ("user_tok", "user_x0", "u1_self", "u1_neigh",
                                                 "u1_b", "u2_self", "u2_neigh", "u2_b")}
        self.user_embedding = tf.function(self._query, input_signature=[
            tf.TensorSpec([1, self.history], tf.int32, name="item_idx"),
            tf.TensorSpec([1, self.width], tf.int32, name="user_tok")])

    def _query(self, item_idx, user_tok):
        w = self.w
        rows = tf.maximum(item_idx + 1, 0)  # -1 -> the zero row
        valid = tf.cast(item_idx >= 0, tf.float32)[..., None]
        n = tf.maximum(tf.reduce_sum(valid, 1), 1e-6)
        mean_x = tf.reduce_sum(tf.gather(self.x_item, rows), 1) / n
        mean_h1 = tf.reduce_sum(tf.gather(self.h1_item, rows), 1) / n
        m = tf.cast(user_tok > 0, tf.float32)[..., None]
        tok = tf.reduce_sum(tf.gather(w["user_tok"], user_tok) * m, 1) / tf.maximum(
            tf.reduce_sum(m, 1), 1e-6)
        h1 = tf.nn.relu(tf.matmul(w["user_x0"][None, :] + tok, w["u1_self"])
                        + tf.matmul(mean_x, w["u1_neigh"]) + w["u1_b"])
        out = tf.matmul(h1, w["u2_self"]) + tf.matmul(mean_h1, w["u2_neigh"]) + w["u2_b"]
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(out * out, 1, keepdims=True), 1e-24))
        return {"query": out / norm}


def export_litert(model: GraphSAGEModel, n_checks: int = 8, atol: float = 1e-3) -> bytes:
    """The LiteRT flatbuffer of `model`'s query side, checked against the NumPy model.

    Raises:
        NonFiniteError: a weight or item table is NaN or inf (nothing is returned).
        ValueError: the LiteRT file's vectors differ from the model's by more than `atol`.
    """
    require_finite({**model.arrays, "x_item": model.x_item, "h1_item": model.h1_item},
                   "GraphSAGE export", "the training (fit_graphsage refuses such a model)")
    module = GraphSAGEServing(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.user_embedding.get_concrete_function()], module)
    lite = converter.convert()
    check_litert(lite, model, n_checks, atol)
    return lite


def check_litert(lite: bytes, model: GraphSAGEModel, n_checks: int = 8, atol: float = 1e-3,
                 seed: int = 0) -> float:
    """Max |LiteRT - NumPy| over `n_checks` random histories (empty, short, full).

    Raises:
        ValueError: the difference exceeds `atol`.
    """
    from ai_edge_litert.interpreter import Interpreter

    run = Interpreter(model_content=lite).get_signature_runner()
    rng, n, H = np.random.default_rng(seed), len(model.data.items), model.config.history
    hist = np.full((n_checks, H), -1, np.int32)
    for r in range(n_checks):
        length = min(H, (r * H) // max(n_checks - 1, 1))
        hist[r, H - length:] = rng.integers(0, n, length)
    user_tok = np.zeros((n_checks, model.data.user_enc.width), np.int32)
    if model.data.user_tokens.size:
        user_tok = model.data.user_tokens[rng.integers(0, len(model.data.user_tokens),
                                                       n_checks)]
    got = np.concatenate([run(item_idx=hist[r:r + 1], user_tok=user_tok[r:r + 1])["query"]
                          for r in range(n_checks)])
    diff = max_abs_diff(got, model.user_vectors(hist, user_tok), "GraphSAGE LiteRT query")
    if diff > atol:
        raise ValueError(f"LiteRT GraphSAGE query differs from the model by {diff:.2g} > {atol}")
    return diff
