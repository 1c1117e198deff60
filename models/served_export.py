"""The served model's bundle folder: the SavedModels TF Serving loads, their LiteRT
conversions the on-demand function runs, and the check that LiteRT scores like the graph.

    export(model, path)     served.npz/json (ServedModel.save), user_tower/, item_embeddings/,
                            ranker/ (SavedModels), user_tower.tflite, ranker.tflite
    serving_module(model)   the tf.Module all of them are written from (and GraphRuntime runs)
    check_litert(model, lite)
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from models.finite import max_abs_diff, require_finite
from models.runtimes import GraphRuntime, LiteRTRuntime
from models.served import ServedModel, model_arrays
from models.histories import history_matrix

SAVED_MODELS = {  # folder -> signatures; the first is `serving_default` (strings, REST)
    "user_tower": ("user_embedding", "user_embedding_idx"),
    "item_embeddings": ("item_embeddings", "all_item_embeddings", "item_tower"),
    "ranker": ("rank", "rank_idx", "score_idx"),
}

STRING_SIGNATURES = {"user_embedding", "rank", "item_embeddings", "item_tower"}


def serving_module(model: ServedModel, signatures=None):
    """The tf.Module every TensorFlow path runs and the SavedModels are written from.

    `*_idx` signatures take int32 item indices (histories [B, H] right-aligned, -1 pads) and
    user token ids [B, U]; the others take item ids ("" pads, oldest first) and user feature
    tokens "column=value" (TokenEncoder), as TF Serving's REST `instances` carry them.
    `score_idx` scores features [B, C, F] (models.features) with the MLP ensemble alone.
    `*_lite` are the [1, ...] versions converted to LiteRT.

    Args:
        model: the served model.
        signatures: names of the functions to attach (None: all).
    """
    import tensorflow as tf

    from models.feature_graph import features, graph_tables
    from models.ranker import FEATURES

    H, U = model.config.tower.history, model.tower.data.user_enc.width
    C, R, data = model.config.candidates, model.config.tower.recent, model.tower.data
    F = len(FEATURES)
    t = graph_tables(model.tables, model.tower)
    # The Keras networks run in the closures below, untracked (a tracked Keras model brings
    # its own serving signature, which models of several inputs cannot trace); the module
    # tracks their tf.Variables, which the SavedModels and LiteRT files store.
    tower = model.tower.network()  # models.towers.TwoTower
    ranker = model.ranker.network() if model.ranker else None  # models.ranker_net.RankerNet
    m = tf.Module()
    m.net_variables = [v.value for net in (tower, ranker) if net is not None
                       for v in net.variables]
    if set(signatures or STRING_SIGNATURES) & STRING_SIGNATURES:  # LiteRT has no hash tables
        m.items = _lookup([str(x) for x in data.items.ids], np.arange(len(data.items)), -1)
        m.user_tokens = _lookup(list(data.user_enc.vocab), list(data.user_enc.vocab.values()),
                                0)
        m.item_tokens = _lookup(list(data.item_enc.vocab), list(data.item_enc.vocab.values()),
                                0)
    ids, vectors = tf.constant([str(x) for x in data.items.ids]), model.tower.item_vectors

    def query(item_idx, user_tok):
        return tower.users(item_idx, user_tok, t["history_table"])

    def mlp(X):
        return ranker(X)

    def scores(item_idx, user_tok, candidates, context):
        return mlp(features(t, item_idx, user_tok, candidates, context, R))

    def to_idx(item_ids, user_features):
        idx = m.items.lookup(item_ids)  # known items move right, in order; then the last H
        width = tf.shape(idx)[1]
        key = tf.cast(idx >= 0, tf.int32) * (width + 1) + tf.range(width)[None, :]
        idx = tf.gather(idx, tf.argsort(key, axis=1, stable=True), batch_dims=1)
        idx = tf.concat([tf.fill([tf.shape(idx)[0], H], -1), idx], 1)[:, -H:]
        tok = m.user_tokens.lookup(user_features)
        return idx, tf.concat([tok, tf.zeros([tf.shape(tok)[0], U], tf.int32)], 1)[:, :U]

    def rank(item_ids, user_features, candidate_ids, context):
        cand = m.items.lookup(candidate_ids)
        return {"scores": tf.where(cand >= 0, scores(*to_idx(item_ids, user_features), cand,
                                                       context), -1e9)}

    def item_embeddings(item_ids):
        idx = m.items.lookup(item_ids)
        vec = tf.gather(vectors, tf.maximum(idx, 0))
        return {"embeddings": tf.where((idx >= 0)[:, None], vec, 0.0)}

    def item_tower_fn(item_features):  # new items from their feature tokens alone
        tok = m.item_tokens.lookup(item_features)
        return {"embeddings": tower.items(tf.zeros_like(tok[:, 0]), tok)}

    i32, f32, s = tf.int32, tf.float32, tf.string

    def spec(shape, dtype, name):
        return tf.TensorSpec(shape, dtype, name=name)

    def idx_specs(b):
        return [spec([b, H], i32, "item_idx"), spec([b, U], i32, "user_tok")]

    def rank_specs(b, c):
        return [*idx_specs(b), spec([b, c], i32, "candidates"), spec([b, 2], f32, "context")]

    strings = [spec([None, None], s, "item_ids"), spec([None, None], s, "user_features")]
    functions = {
        "user_embedding": (lambda a, b: {"query": query(*to_idx(a, b))}, strings),
        "user_embedding_idx": (lambda a, b: {"query": query(a, b)}, idx_specs(None)),
        "user_embedding_lite": (lambda a, b: {"query": query(a, b)}, idx_specs(1)),
        "rank": (rank, [*strings, spec([None, None], s, "candidate_ids"),
                        spec([None, 2], f32, "context")]),
        "rank_idx": (lambda *a: {"scores": scores(*a)}, rank_specs(None, None)),
        "score_idx": (lambda x: {"scores": mlp(x)}, [spec([None, None, F], f32, "features")]),
        "score_lite": (lambda x: {"scores": mlp(x)}, [spec([1, C, F], f32, "features")]),
        # the ranker.tflite of bundles written before models.features (LiteRTRuntime reads it)
        "rank_lite": (lambda *a: {"scores": scores(*a)}, rank_specs(1, C)),
        "features_idx": (lambda *a: features(t, *a, R), rank_specs(None, None)),
        "item_embeddings": (item_embeddings, [spec([None], s, "item_ids")]),
        "all_item_embeddings": (lambda: {"item_ids": ids, "embeddings": tf.constant(vectors)},
                                []),
        "item_tower": (item_tower_fn, [spec([None, None], s, "item_features")]),
    }
    for name in signatures or functions:
        fn, sig = functions[name]
        setattr(m, name, tf.function(fn, input_signature=sig))
    return m


def _lookup(keys: list[str], values, default: int):
    import tensorflow as tf

    keys, values = (keys, list(values)) if len(keys) else ([""], [default])
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string),
                                               tf.constant(np.asarray(values, np.int32)))
    return tf.lookup.StaticHashTable(init, default)


def export(model: ServedModel, path: str, n_checks: int = 8, atol: float = 2e-3) -> dict:
    """Writes the bundle: served.npz/json, the SavedModels and their LiteRT conversions.

    SavedModels (each loadable with tf.saved_model.load; `serving_default` takes strings as
    TF Serving's REST API sends them): `user_tower/` (user_embedding, user_embedding_idx),
    `item_embeddings/` (item_embeddings, all_item_embeddings, item_tower), `ranker/` (rank,
    rank_idx with the features in the graph; score_idx on features). LiteRT:
    `user_tower.tflite` (item_idx [1, H] int32, user_tok [1, U] int32 -> query [1, d]) and
    `ranker.tflite` (features [1, C, F] float32 from models.features -> scores [1, C]),
    built-in ops only, checked against the TensorFlow graph. The folder is written under a
    temporary name and renamed when complete.

    Returns:
        {"path", "files", "litert_max_abs_diff": {"user_tower", "ranker"}}.

    Raises:
        ValueError: a LiteRT model differs from the TensorFlow graph by more than `atol`;
            NonFiniteError (a ValueError) if the model, or either side of that check, holds
            NaN or inf (nothing is written).
    """
    import tensorflow as tf

    require_finite(model_arrays(model), "served model", "the input's weights and timestamps "
                   "and the users and items tables (fit_served refuses such a model)")
    tmp = f"{path.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    for folder, names in SAVED_MODELS.items():
        module = serving_module(model, names)
        tf.saved_model.save(module, os.path.join(tmp, folder), signatures={
            "serving_default": getattr(module, names[0]),
            **{n: getattr(module, n) for n in names}})
    lite = serving_module(model, ("user_embedding_lite", "score_lite"))
    flat = {}
    for name, fn in (("user_tower", lite.user_embedding_lite), ("ranker", lite.score_lite)):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [fn.get_concrete_function()], lite)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flat[name] = converter.convert()
        with open(os.path.join(tmp, f"{name}.tflite"), "wb") as f:
            f.write(flat[name])
    diffs = check_litert(model, LiteRTRuntime(flat["user_tower"], flat["ranker"]), n_checks,
                         atol)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return {"path": path, "files": sorted(os.listdir(path)), "litert_max_abs_diff": diffs}


def check_litert(model: ServedModel, lite: LiteRTRuntime, n_checks: int = 8,
                 atol: float = 2e-3, seed: int = 0) -> dict:
    """Compares the LiteRT runtime with the TensorFlow graph on random requests: the user
    tower, and the ranker's scores from models.features and ranker.tflite against the graph's
    own features and MLP.

    Returns:
        {"user_tower": max |diff| of queries, "ranker": max |diff| of scores}.

    Raises:
        ValueError: naming the model whose difference exceeds `atol`; NonFiniteError (a
            ValueError) when either side returns NaN or inf (`nan > atol` is False: a plain
            max |diff| would pass an all-NaN model).
    """
    rng = np.random.default_rng(seed)
    n_items, H = len(model.tower.data.items), model.config.tower.history
    histories = [rng.choice(n_items, rng.integers(1, min(H, n_items) + 1), replace=False)
                 for _ in range(n_checks)]
    hist = history_matrix(histories, H)
    utok = model.tower.data.user_enc.encode_rows([None] * n_checks)
    vocab = np.array(list(model.tower.data.user_enc.vocab.values()), np.int32)
    if len(vocab):
        utok[:, 0] = rng.choice(vocab, n_checks)
    ctx = np.stack([rng.integers(0, 2, n_checks), rng.random(n_checks) * 30], 1)
    ctx = ctx.astype(np.float32)
    graph = model.runtime if isinstance(model.runtime, GraphRuntime) else GraphRuntime(model)
    q = graph.user_embedding(hist, utok)
    cand = model.candidates(q, histories).astype(np.int32)
    X = model.features(hist, utok, cand, ctx, q)
    diffs = {"user_tower": max_abs_diff(lite.user_embedding(hist, utok), q, "LiteRT user_tower"),
             "ranker": max_abs_diff(lite.score(X), graph.rank(hist, utok, cand, ctx),
                                    "LiteRT ranker")}
    for name, diff in diffs.items():
        if diff > atol:
            raise ValueError(f"LiteRT {name} differs from the TensorFlow graph by {diff:.2e} "
                             f"> {atol}; look for ops LiteRT converts differently")
    return diffs
