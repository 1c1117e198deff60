"""The served model's bundle folder: the SavedModels TF Serving loads, their LiteRT
conversions the on-demand function runs, and the check that LiteRT scores like the graph.

    export(model, path)     served.npz/json (models.served_bundle.save), user_tower/,
                            item_embeddings/, ranker/ (SavedModels of
                            models.served_graph.ServedModule), user_tower.tflite, ranker.tflite
    check_litert(model, lite)
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf

from models import served_bundle
from models.finite import max_abs_diff, require_finite
from models.histories import history_matrix
from models.runtimes import LiteRTRuntime
from models.served import ServedModel
from models.served_graph import GraphRuntime, ServedModule

SAVED_MODELS = {  # folder -> signatures; the first is `serving_default` (strings, REST)
    "user_tower": ("user_embedding", "user_embedding_idx"),
    "item_embeddings": ("item_embeddings", "all_item_embeddings", "item_tower"),
    "ranker": ("rank", "rank_idx", "score_idx"),
}


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
    require_finite(model.float_arrays(), "served model", "the input's weights and timestamps "
                   "and the users and items tables (fit_served refuses such a model)")
    tmp = f"{path.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    served_bundle.save(model, tmp)
    for folder, names in SAVED_MODELS.items():
        module = ServedModule(model, names)
        tf.saved_model.save(module, os.path.join(tmp, folder), signatures={
            "serving_default": getattr(module, names[0]),
            **{n: getattr(module, n) for n in names}})
    lite = ServedModule(model, ("user_embedding_lite", "score_lite"))
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
    sage_q = model.sage_query(hist, utok)
    cand = model.candidates(q, histories, sage_q=sage_q).astype(np.int32)
    X = model.features(hist, utok, cand, ctx, q, sage_q=sage_q)
    diffs = {"user_tower": max_abs_diff(lite.user_embedding(hist, utok), q, "LiteRT user_tower"),
             "ranker": max_abs_diff(lite.score(X), graph.rank(hist, utok, cand, ctx),
                                    "LiteRT ranker")}
    for name, diff in diffs.items():
        if diff > atol:
            raise ValueError(f"LiteRT {name} differs from the TensorFlow graph by {diff:.2e} "
                             f"> {atol}; look for ops LiteRT converts differently")
    return diffs
