"""The served model in TensorFlow: the module its SavedModels and LiteRT files are written
from (`ServedModule`), and `GraphRuntime`, that module run batched, the reference the NumPy
and LiteRT runtimes (models.runtimes) are checked against.

    ServedModule(model, ("user_embedding_idx", "score_lite"))   the signatures asked for
    GraphRuntime(model).user_embedding(hist, user_tok), .score(X), .rank(...), .features(...)

Importing this module imports TensorFlow; the serving paths never do (models.runtimes).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from models.feature_graph import features, graph_tables

if TYPE_CHECKING:
    from models.served import ServedModel

# The signatures that take item ids and "column=value" tokens: they need hash tables, which
# LiteRT does not have.
STRING_SIGNATURES = {"user_embedding", "rank", "item_embeddings", "item_tower"}


class ServedModule(tf.Module):
    """The user tower, the item tower, the graph's ranking features and the MLP ensemble.

    `*_idx` signatures take int32 item indices (histories [B, H] right-aligned, -1 pads) and
    user token ids [B, U]; the others take item ids ("" pads, oldest first) and user feature
    tokens "column=value" (TokenEncoder), as TF Serving's REST `instances` carry them.
    `score_idx` scores features [B, C, F] (models.features) with the MLP ensemble alone.
    `*_lite` are the [1, ...] versions converted to LiteRT; `rank_lite` is the ranker.tflite
    of bundles written before models.features (LiteRTRuntime still reads it).

    Args:
        model: the served model.
        signatures: names of the tf.functions to attach (None: all of `signature_table()`).
    """

    def __init__(self, model: ServedModel, signatures: tuple[str, ...] | None = None):
        super().__init__()
        c, data = model.config, model.tower.data
        self.history, self.user_width = c.tower.history, data.user_enc.width
        self.candidates, self.recent, self.heads = c.candidates, c.tower.recent, c.tower.heads
        self.n_features = len(model.feature_names())
        # The Keras networks (models.towers.TwoTower, models.ranker_net.RankerNet) run inside
        # the signatures, held where the module does not track them: a tracked Keras layer
        # brings its own serving signature, which layers of several inputs cannot trace. The
        # module tracks their tf.Variables (under Keras' own: tracking those, the LiteRT
        # conversion read uninitialised memory), which the SavedModels and LiteRT files store.
        nets = SimpleNamespace(tables=graph_tables(model.tables, model.tower, model.sage),
                               tower=model.tower.network(),
                               ranker=model.ranker.network() if model.ranker else None)
        self._nets = nets
        self.net_variables = [v.value for net in (nets.tower, nets.ranker) if net is not None
                              for v in net.variables]
        self.ids = tf.constant([str(x) for x in data.items.ids])
        self.vectors = tf.constant(model.tower.item_vectors)
        if set(signatures or STRING_SIGNATURES) & STRING_SIGNATURES:
            self.items = _lookup([str(x) for x in data.items.ids], range(len(data.items)), -1)
            self.user_tokens = _lookup(list(data.user_enc.vocab), data.user_enc.vocab.values(),
                                       0)
            self.item_tokens = _lookup(list(data.item_enc.vocab), data.item_enc.vocab.values(),
                                       0)
        table = self.signature_table()
        for name in signatures or table:
            fn, spec = table[name]
            setattr(self, name, tf.function(fn, input_signature=spec))

    def signature_table(self) -> dict[str, tuple]:
        """Signature name -> (method, input specs)."""
        H, U, C, F = self.history, self.user_width, self.candidates, self.n_features
        i32, f32, s = tf.int32, tf.float32, tf.string

        def idx(b):
            return [tf.TensorSpec([b, H], i32, "item_idx"), tf.TensorSpec([b, U], i32, "user_tok")]

        def ranked(b, c):
            return [*idx(b), tf.TensorSpec([b, c], i32, "candidates"),
                    tf.TensorSpec([b, 2], f32, "context")]

        strings = [tf.TensorSpec([None, None], s, "item_ids"),
                   tf.TensorSpec([None, None], s, "user_features")]
        return {
            "user_embedding": (self._user_embedding, strings),
            "user_embedding_idx": (self._user_embedding_idx, idx(None)),
            "user_embedding_lite": (self._user_embedding_idx, idx(1)),
            "rank": (self._rank, [*strings, tf.TensorSpec([None, None], s, "candidate_ids"),
                                  tf.TensorSpec([None, 2], f32, "context")]),
            "rank_idx": (self._rank_idx, ranked(None, None)),
            "rank_lite": (self._rank_idx, ranked(1, C)),
            "score_idx": (self._score, [tf.TensorSpec([None, None, F], f32, "features")]),
            "score_lite": (self._score, [tf.TensorSpec([1, C, F], f32, "features")]),
            "features_idx": (self._features, ranked(None, None)),
            "item_embeddings": (self._item_embeddings, [tf.TensorSpec([None], s, "item_ids")]),
            "all_item_embeddings": (self._all_item_embeddings, []),
            "item_tower": (self._item_tower, [tf.TensorSpec([None, None], s, "item_features")]),
        }

    # -- index inputs ---------------------------------------------------------------------
    def _query(self, item_idx, user_tok):
        return self._nets.tower.users(item_idx, user_tok, self._nets.tables["history_table"])

    def _user_embedding_idx(self, item_idx, user_tok):
        return {"query": self._query(item_idx, user_tok)}

    def _features(self, item_idx, user_tok, candidates, context):
        return features(self._nets.tables, item_idx, user_tok, candidates, context, self.recent)

    def _mlp(self, X):
        return self._nets.ranker(X)

    def _score(self, X):
        return {"scores": self._mlp(X)}

    def _rank_idx(self, item_idx, user_tok, candidates, context):
        return {"scores": self._mlp(self._features(item_idx, user_tok, candidates, context))}

    # -- string inputs --------------------------------------------------------------------
    def _to_idx(self, item_ids, user_features):
        """Item ids -> [B, H] right-aligned indices (known items move right, in order; then
        the last H), "column=value" tokens -> [B, U] token ids."""
        H, U = self.history, self.user_width
        idx = self.items.lookup(item_ids)
        width = tf.shape(idx)[1]
        key = tf.cast(idx >= 0, tf.int32) * (width + 1) + tf.range(width)[None, :]
        idx = tf.gather(idx, tf.argsort(key, axis=1, stable=True), batch_dims=1)
        idx = tf.concat([tf.fill([tf.shape(idx)[0], H], -1), idx], 1)[:, -H:]
        tok = self.user_tokens.lookup(user_features)
        return idx, tf.concat([tok, tf.zeros([tf.shape(tok)[0], U], tf.int32)], 1)[:, :U]

    def _user_embedding(self, item_ids, user_features):
        return {"query": self._query(*self._to_idx(item_ids, user_features))}

    def _rank(self, item_ids, user_features, candidate_ids, context):
        cand = self.items.lookup(candidate_ids)
        scores = self._mlp(self._features(*self._to_idx(item_ids, user_features), cand,
                                          context))
        return {"scores": tf.where(cand >= 0, scores, -1e9)}

    def _item_embeddings(self, item_ids):
        idx = self.items.lookup(item_ids)
        vec = tf.gather(self.vectors, tf.maximum(idx, 0))
        return {"embeddings": tf.where((idx >= 0)[:, None], vec, 0.0)}

    def _all_item_embeddings(self):
        return {"item_ids": self.ids, "embeddings": self.vectors}

    def _item_tower(self, item_features):
        """New items from their feature tokens alone (no id row)."""
        tok = self.item_tokens.lookup(item_features)
        return {"embeddings": self._nets.tower.items(tf.zeros_like(tok[:, 0]), tok)}


def _lookup(keys: list[str], values, default: int) -> tf.lookup.StaticHashTable:
    keys, values = (keys, list(values)) if len(keys) else ([""], [default])
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string),
                                               tf.constant(np.asarray(values, np.int32)))
    return tf.lookup.StaticHashTable(init, default)


class GraphRuntime:
    """The user tower and the ranker in TensorFlow, batched: a `ServedModule`.

    Args:
        model: the served model.
        batch_size: rows per call of the graph.
    """

    def __init__(self, model: ServedModel, batch_size: int = 256):
        self.module = ServedModule(model, ("user_embedding_idx", "rank_idx", "features_idx",
                                           "score_idx"))
        self.batch_size = batch_size

    def _batched(self, fn, *arrays) -> np.ndarray:
        b = self.batch_size
        return np.concatenate([np.asarray(fn(*(a[lo:lo + b] for a in arrays)))
                               for lo in range(0, len(arrays[0]), b)])

    def user_embedding(self, hist: np.ndarray, user_tok: np.ndarray) -> np.ndarray:
        """[B, d] query vectors of hist [B, H] and user_tok [B, U]."""
        return self._batched(lambda *a: self.module.user_embedding_idx(*a)["query"],
                             hist, user_tok)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores [B, C] of features X [B, C, F]."""
        return self._batched(lambda x: self.module.score_idx(x)["scores"], X)

    def rank(self, hist, user_tok, cand, context) -> np.ndarray:
        """Scores [B, C] from the graph's own features (the SavedModel's rank_idx)."""
        return self._batched(lambda *a: self.module.rank_idx(*a)["scores"],
                             hist, user_tok, cand, context)

    def features(self, hist, user_tok, cand, context) -> np.ndarray:
        """The graph's features [B, C, F] (models.feature_graph.features)."""
        return self._batched(self.module.features_idx, hist, user_tok, cand, context)
