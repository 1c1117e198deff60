"""Top-K retrieval with seen items excluded: brute force (the reference) and Faiss.

Both return item indices and scores; ties are broken by the smaller item index, which the
vocabulary makes the smaller item id.
"""

from __future__ import annotations

import numpy as np


def exclude_mask(n_items: int, seen: list[np.ndarray]) -> np.ndarray:
    """Returns [num_queries, n_items] bool, True where an item was seen."""
    mask = np.zeros((len(seen), n_items), bool)
    for r, s in enumerate(seen):
        mask[r, s[(s >= 0) & (s < n_items)]] = True
    return mask


def brute_force_topk(xq: np.ndarray, xb: np.ndarray, k: int,
                     seen: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k.

    Args:
        xq: [num_queries, dim] query vectors.
        xb: [num_items, dim] item vectors.
        k: list length.
        seen: per query, item indices to exclude.

    Returns:
        (I [num_queries, k] int64 with -1 padding, D [num_queries, k] float32 scores).
    """
    scores = (xq.astype(np.float32) @ xb.astype(np.float32).T)
    if seen is not None:
        scores[exclude_mask(len(xb), seen)] = -np.inf
    k_eff = min(k, xb.shape[0])
    # Sort by (-score, index): lexsort's last key is primary.
    ids = np.broadcast_to(np.arange(xb.shape[0]), scores.shape)
    order = np.lexsort((ids, -scores), axis=1)[:, :k_eff]
    D = np.take_along_axis(scores, order, axis=1)
    I = np.where(np.isfinite(D), order, -1)
    return _pad(I, D, k)


def _pad(I: np.ndarray, D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if I.shape[1] < k:
        pad = k - I.shape[1]
        I = np.hstack([I, np.full((len(I), pad), -1)])
        D = np.hstack([D, np.full((len(D), pad), -np.inf)])
    return I.astype(np.int64), D.astype(np.float32)


def faiss_topk(index, xq: np.ndarray, k: int,
               seen: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k from a Faiss inner-product index, over-fetching to drop seen items.

    Args:
        index: a Faiss index over the item vectors (ids = item indices).
        xq: [num_queries, dim] float32 query vectors.
        k: list length.
        seen: per query, item indices to exclude.

    Returns:
        (I [num_queries, k] int64 with -1 padding, D [num_queries, k] float32), rows sorted by
        descending score, ties by smaller index.
    """
    n_items = index.ntotal
    extra = max((len(s) for s in seen), default=0) if seen is not None else 0
    fetch = min(n_items, k + extra)
    D, I = index.search(np.ascontiguousarray(xq, dtype=np.float32), fetch)
    if seen is not None:
        drop = np.zeros(I.shape, bool)
        for r, s in enumerate(seen):
            if len(s):
                drop[r] = np.isin(I[r], s)
        D = np.where(drop | (I < 0), -np.inf, D)
    # Re-sort by (-score, index) so ties follow the smaller index, then keep k.
    order = np.lexsort((np.where(I < 0, n_items, I), -D), axis=1)[:, :k]
    I, D = np.take_along_axis(I, order, 1), np.take_along_axis(D, order, 1)
    I = np.where(np.isfinite(D), I, -1)
    return _pad(I, D, k)


def build_flat_index(xb: np.ndarray):
    """An exact inner-product Faiss index over [num_items, dim] item vectors."""
    import faiss

    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(np.ascontiguousarray(xb, dtype=np.float32))
    return index
