"""The runtimes of the served model's two networks: the user tower (histories and user tokens
-> query vectors) and the ranker's MLP ensemble (features -> scores).

Every runtime offers `user_embedding(hist, user_tok)` and `score(X)`; the features between
them are models.features' NumPy gathers whichever runtime runs, so the nightly batch and the
on-demand function rank with the same function.

    NumpyRuntime    NumPy forward passes of the exported weights (no TensorFlow): the nightly
                    batch and `recsys evaluate`; one matrix product per layer and shard
    LiteRTRuntime   user_tower.tflite and ranker.tflite, one user at a time (no TensorFlow):
                    the on-demand function

Neither imports TensorFlow. The third, `models.served_graph.GraphRuntime`, runs the
TensorFlow module the SavedModels are written from: the reference these two are checked
against.
"""

from __future__ import annotations

import numpy as np

from models.features import one_blas_thread


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(x.dtype)
    return (x * m).sum(-2) / np.maximum(m.sum(-2), 1.0)


class NumpyRuntime:
    """The user tower and the ranker ensemble in NumPy (float32), from a ServedModel.

    The ranker's standardisation is folded into each member's first layer, and the members'
    first layers are stacked into one matrix, so a block of pairs costs one product for the
    first layer and one per member after it. BLAS runs on the calling thread (see
    models.features.one_blas_thread).
    """

    def __init__(self, model, block: int = 4096):
        w, c = model.tower.arrays, model.config.tower
        tokens = model.tower.data.item_tokens
        te = _masked_mean(w["item_tok"][tokens], tokens > 0)
        self.table = np.concatenate([np.zeros_like(te[:1]), w["hist_id"][1:] + te]).astype(
            np.float32)  # models.towers.TwoTower.history_table
        self.user_tok = w["user_tok"].astype(np.float32)
        self.tower = [w[k].astype(np.float32) for k in ("u_w1", "u_b1", "u_w2", "u_b2")]
        self.recent, self.block = c.recent, block
        self.first, self.rest, self._zeros = None, [], {}
        if model.ranker is not None:
            r = model.ranker
            mean, std = r.mean.astype(np.float64), r.std.astype(np.float64)
            firsts = [(m[0] / std[:, None], m[1] - (mean / std) @ m[0]) for m in r.members]
            self.first = (np.concatenate([W for W, _ in firsts], 1).astype(np.float32),
                          np.concatenate([b for _, b in firsts]).astype(np.float32))
            self.width = r.members[0][0].shape[1]
            self.rest = [[v.astype(np.float32) for v in m[2:]] for m in r.members]

    def user_embedding(self, hist: np.ndarray, user_tok: np.ndarray) -> np.ndarray:
        """[B, d] unit query vectors (models.towers.UserTower)."""
        he = self.table[hist.astype(np.int64) + 1]  # padding -1 -> the zero row
        valid = (hist >= 0).astype(np.float32)
        n = valid.sum(1, keepdims=True)
        h_all = he.sum(1) / np.maximum(n, 1.0)
        n_rec = valid[:, -self.recent:].sum(1, keepdims=True)
        h_rec = he[:, -self.recent:].sum(1) / np.maximum(n_rec, 1.0)
        ue = _masked_mean(self.user_tok[user_tok], user_tok > 0)
        x = np.concatenate([h_all, h_rec, ue, np.log1p(n) / 4.0], 1)
        w1, b1, w2, b2 = self.tower
        q = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
        return (q / np.sqrt(np.maximum((q * q).sum(1, keepdims=True), 1e-12))).astype(
            np.float32)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores [B, C] float32 of features X [B, C, F]: the members' mean."""
        with one_blas_thread():
            return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        flat = X.reshape(-1, X.shape[-1])
        out = np.zeros(len(flat), np.float32)
        W, b = self.first
        for lo in range(0, len(flat), self.block):
            h1 = flat[lo:lo + self.block] @ W
            h1 += b
            self._relu(h1)
            acc = out[lo:lo + self.block]
            for m, layers in enumerate(self.rest):
                h = h1[:, m * self.width:(m + 1) * self.width]
                for k in range(0, len(layers), 2):
                    h = h @ layers[k]
                    h += layers[k + 1]
                    if k + 2 < len(layers):
                        self._relu(h)
                acc += h[:, 0]
        out /= len(self.rest)
        return out.reshape(X.shape[:-1])

    def _relu(self, h: np.ndarray) -> None:
        """max(h, 0) in place, against an array of zeros: NumPy's maximum with a scalar takes
        a slow path (3x the time on float32)."""
        zeros = self._zeros.get(h.shape)
        if zeros is None:
            zeros = self._zeros[h.shape] = np.zeros(h.shape, h.dtype)
        np.maximum(h, zeros, out=h)


class LiteRTRuntime:
    """The two networks through LiteRT interpreters (no TensorFlow import), row by row.

    Args:
        user_tower: user_tower.tflite (bytes or path): item_idx [1, H], user_tok [1, U].
        ranker: ranker.tflite: features [1, C, F] -> scores [1, C]. A bundle written before
            models.features has the features inside (item_idx, user_tok, candidates [1, C],
            context [1, 2]): then `ranks_requests` is True and ServedModel.rank calls `rank`,
            so that functions updated before the next nightly still serve the current bundle.
    """

    def __init__(self, user_tower, ranker):
        from ai_edge_litert.interpreter import Interpreter

        def runner(src):
            kw = {"model_content": src} if isinstance(src, bytes) else {"model_path": src}
            return Interpreter(**kw).get_signature_runner()

        self.user, self.ranker = runner(user_tower), runner(ranker)
        self.ranks_requests = "features" not in self.ranker.get_input_details()

    def user_embedding(self, hist, user_tok) -> np.ndarray:
        return np.concatenate([self.user(item_idx=hist[r:r + 1], user_tok=user_tok[r:r + 1])[
            "query"] for r in range(len(hist))])

    def score(self, X) -> np.ndarray:
        return np.concatenate([self.ranker(features=X[r:r + 1])["scores"]
                               for r in range(len(X))])

    def rank(self, hist, user_tok, cand, context) -> np.ndarray:
        """Scores [B, C] of an older bundle's ranker.tflite (see `ranks_requests`)."""
        return np.concatenate([self.ranker(item_idx=hist[r:r + 1], user_tok=user_tok[r:r + 1],
                                           candidates=cand[r:r + 1], context=context[r:r + 1])[
            "scores"] for r in range(len(hist))])
