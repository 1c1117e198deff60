"""Item-to-item neighbours ("similar items") for the whole catalogue, in NumPy.

    idx, score = similar_table(user_idx, item_idx, vectors, n_items, SimilarConfig())

One blocked pass over the items scores every (item, other item) pair as

    score(i, j) = knn_weight * |U_i ∩ U_j| / (|U_i|^alpha |U_j|^(1 - alpha))
                  + embedding_weight * (1 + cos(v_i, v_j)) / 2

(U_i: the users who took i; v_i: its embedding: the served model's two-tower item vector, which
the item tower computes from features alone for items without events), and keeps each item's
top k, itself left out. The defaults were chosen on the held-out next-item task of
models/next_item.py (`recsys evaluate --task next-item`, docs/EVALUATION_RESULTS.md): the
co-occurrence cosine ranks the neighbours of items with events, and the small embedding term
breaks its ties and gives items without events (new items) their neighbours from their
features. `source="cooc"` (raw co-occurrence counts) is that task's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.features import descending, one_blas_thread

SOURCES = ("blend", "knn", "embedding", "cooc")
BLOCK_CELLS = 1 << 24  # scores held at once: rows per block = BLOCK_CELLS // items


@dataclass(frozen=True)
class SimilarConfig:
    """How the nightly ranks an item's neighbours.

    Attributes:
        k: neighbours kept per item (what /similar can page through).
        source: "blend" (co-occurrence cosine + embedding), "knn" (co-occurrence cosine
            alone), "embedding" (embedding cosine alone) or "cooc" (raw co-occurrence counts,
            the baseline).
        alpha: asymmetry of the co-occurrence cosine (0.5: the plain cosine).
        embedding_weight: weight of the embedding term in "blend".
    """

    k: int = 100
    source: str = "blend"
    alpha: float = 0.5
    embedding_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"similar source {self.source!r}: use one of {SOURCES}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"similar k={self.k!r}: use a whole number >= 1")


def unit_rows(vectors: np.ndarray | None, n_items: int) -> np.ndarray | None:
    """[n, d] float32 rows scaled to length 1 (zero rows stay zero); None for no vectors.

    Raises:
        ValueError: the vectors do not have one row per item.
    """
    if vectors is None:
        return None
    v = np.asarray(vectors, np.float32)
    if v.ndim != 2 or len(v) != n_items:
        raise ValueError(f"item vectors of shape {v.shape}: expected [{n_items}, d]")
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def similar_table(user_idx: np.ndarray, item_idx: np.ndarray, vectors: np.ndarray | None,
                  n_items: int, config: SimilarConfig = SimilarConfig()
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every item's top-k neighbours.

    Args:
        user_idx, item_idx: [n] (user, item) index pairs of the events (repeats count once).
        vectors: [n_items, d] item embeddings, or None (then only co-occurrence ranks).
        n_items: items.
        config: the scoring.

    Returns:
        (idx [n_items, k] int32, -1 pads; score [n_items, k] float32), best first, ties by
        the smaller index; an item with nothing related (no shared user, no embedding) has
        an empty row.
    """
    import scipy.sparse as sp

    k = min(config.k, max(n_items - 1, 0))
    idx = np.full((n_items, config.k), -1, np.int32)
    score = np.zeros((n_items, config.k), np.float32)
    if k == 0:
        return idx, score
    V = unit_rows(vectors, n_items) if config.source in ("blend", "embedding") else None
    w_knn = 0.0 if config.source == "embedding" else 1.0
    w_emb = {"blend": config.embedding_weight, "embedding": 1.0}.get(config.source, 0.0)
    if V is None:
        w_emb = 0.0
    users = int(user_idx.max(initial=-1)) + 1
    X = sp.csc_matrix((np.ones(len(user_idx), np.float32), (user_idx, item_idx)),
                      shape=(users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    count = np.asarray(X.sum(axis=0)).ravel()
    block = max(1, BLOCK_CELLS // max(n_items, 1))
    with one_blas_thread():
        for lo in range(0, n_items, block):
            hi = min(lo + block, n_items)
            s = np.zeros((hi - lo, n_items), np.float32)
            if w_knn:
                co = (X[:, lo:hi].T @ X).toarray().astype(np.float32)
                if config.source != "cooc":
                    co /= np.maximum(np.outer(count[lo:hi] ** config.alpha,
                                              count ** (1 - config.alpha)), 1e-12)
                s += w_knn * co
            if w_emb:
                s += w_emb * (1.0 + V[lo:hi] @ V.T) / 2.0
            rows = np.arange(hi - lo)
            s[rows, lo + rows] = -np.inf  # never the item itself
            part = (np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n_items
                    else np.broadcast_to(np.arange(n_items), s.shape).copy())
            val = np.take_along_axis(s, part, 1)
            order = descending(np.where(np.isfinite(val), val, -1.0), part)
            part, val = np.take_along_axis(part, order, 1), np.take_along_axis(val, order, 1)
            keep = val > 0  # nothing related: no neighbour
            m = part.shape[1]
            idx[lo:hi, :m] = np.where(keep, part, -1)
            score[lo:hi, :m] = np.where(keep, val, 0.0)
    return idx, score


def item_embeddings(item_vectors: np.ndarray, model: str | None) -> np.ndarray:
    """The embedding part of a bundle's item_vectors.npy: MF's `[q_i, b_i]` without the bias
    column; the served and graphsage kinds' vectors as they are."""
    v = np.asarray(item_vectors, np.float32)
    return v[:, :-1] if model == "mf" and v.shape[1] > 1 else v
