"""The DQN stage's files, exported like the ranker: dqn.npz/json (the NumPy policy the batch
runs), a SavedModel (`q_values`: state [B, S] float32 -> q [B, A]) for TF Serving and its
LiteRT conversion dqn.tflite (built-in ops only) for the on-demand function, checked against
the NumPy policy.

    export(policy, path)  ->  path/{dqn.npz, dqn.json, q_network/, dqn.tflite}
    load(path)            ->  QPolicy (NumPy)
    LiteRTPolicy(bytes)   ->  .q_values(state), .act(state)  (no TensorFlow)
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np

from models.dqn import HEAD, STRATEGIES, WINDOW, QPolicy, choose, segment_margins
from models.finite import max_abs_diff, require_finite


def save(policy: QPolicy, path: str) -> None:
    """dqn.npz (the layers) and dqn.json (strategies, head, window, horizon, slate, margin,
    the per-segment margins: null for a segment the stage is off in) in folder `path`."""
    os.makedirs(path, exist_ok=True)
    np.savez(os.path.join(path, "dqn.npz"), *policy.layers)
    margins = None if policy.margins is None else {
        k: None if math.isinf(v) else float(v) for k, v in policy.margins.items()}
    with open(os.path.join(path, "dqn.json"), "w") as f:
        json.dump({"strategies": list(STRATEGIES), "head": HEAD, "window": WINDOW,
                   "horizon": policy.horizon, "slate": policy.slate,
                   "margin": policy.margin, "margins": margins,
                   "layers": len(policy.layers)}, f)


def from_files(meta: dict, arrays) -> QPolicy:
    """The QPolicy of a dqn.json's content and dqn.npz's arrays.

    Raises:
        ValueError: the files name other strategies than this code's (re-export the bundle).
    """
    ours = [list(STRATEGIES), HEAD, WINDOW]
    theirs = [list(meta.get("strategies", [])), meta.get("head"), meta.get("window")]
    if theirs != ours:
        raise ValueError(f"dqn.json strategies, head, window {theirs} are not {ours}; "
                         "re-export the DQN with this version")
    layers = tuple(np.asarray(arrays[f"arr_{i}"], np.float32) for i in range(meta["layers"]))
    raw = meta.get("margins")  # absent in bundles written before the guard: one margin
    margins = None if raw is None else {
        k: math.inf if v is None else float(v) for k, v in raw.items()}
    return QPolicy(layers, int(meta["horizon"]), int(meta["slate"]), float(meta["margin"]),
                   margins)


def load(path: str) -> QPolicy:
    with open(os.path.join(path, "dqn.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(path, "dqn.npz"), allow_pickle=False) as arrays:
        return from_files(meta, arrays)


class LiteRTPolicy:
    """dqn.tflite through a LiteRT interpreter (no TensorFlow import), row by row, with the
    margin and per-segment margins of QPolicy."""

    def __init__(self, flat: bytes, margin: float = 0.0, margins: dict | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.runner = Interpreter(model_content=flat).get_signature_runner()
        self.margin, self.margins = margin, margins

    def q_values(self, state: np.ndarray) -> np.ndarray:
        return np.concatenate([self.runner(state=state[r:r + 1].astype(np.float32))["q"]
                               for r in range(len(state))])

    def act(self, state: np.ndarray, fresh: np.ndarray | bool | None = None) -> np.ndarray:
        return choose(self.q_values(state),
                      segment_margins(self.margin, self.margins, fresh, len(state)))


def _module(policy: QPolicy):
    import tensorflow as tf

    S = policy.layers[0].shape[0]

    class QModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = [tf.Variable(a, trainable=False) for a in policy.layers]

        def forward(self, state):
            h = state
            for i in range(0, len(self.w), 2):
                h = tf.matmul(h, self.w[i]) + self.w[i + 1]
                if i + 2 < len(self.w):
                    h = tf.nn.relu(h)
            return {"q": h}

        @tf.function(input_signature=[tf.TensorSpec([None, S], tf.float32, name="state")])
        def q_values(self, state):
            return self.forward(state)

        @tf.function(input_signature=[tf.TensorSpec([1, S], tf.float32, name="state")])
        def q_lite(self, state):
            return self.forward(state)

    return QModule()


def export(policy: QPolicy, path: str, atol: float = 1e-4, seed: int = 0) -> dict:
    """Writes the folder under a temporary name and renames it when complete.

    Returns:
        {"path", "files", "litert_max_abs_diff"}.

    Raises:
        ValueError: LiteRT's Q-values differ from the NumPy policy's by more than `atol`;
            NonFiniteError (a ValueError) for NaN or inf weights (nothing is written).
    """
    import tensorflow as tf

    require_finite({f"layer {i}": a for i, a in enumerate(policy.layers)}, "DQN policy",
                   "the simulator's parameters and the training's learning rate")
    tmp = f"{path.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save(policy, tmp)
    module = _module(policy)
    tf.saved_model.save(module, os.path.join(tmp, "q_network"),
                        signatures={"serving_default": module.q_values})
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.q_lite.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flat = converter.convert()
    with open(os.path.join(tmp, "dqn.tflite"), "wb") as f:
        f.write(flat)
    state = np.random.default_rng(seed).normal(size=(8, policy.layers[0].shape[0]))
    state = state.astype(np.float32)
    diff = max_abs_diff(LiteRTPolicy(flat).q_values(state), policy.q_values(state),
                        "LiteRT dqn")
    if diff > atol:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"LiteRT dqn differs from the NumPy policy by {diff:.2e} > {atol}")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return {"path": path, "files": sorted(os.listdir(path)), "litert_max_abs_diff": diff}
