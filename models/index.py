"""The item index: exact (Flat) for small catalogs, IVF or HNSW above a size, with its recall
against exact search measured on real queries and reported."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """Attributes:
        kind: "auto" (Flat up to flat_max items, else IVF), "flat", "ivf" or "hnsw".
        flat_max: largest catalog served by exact search under "auto".
        target_recall: recall@k against exact search an approximate index must reach;
            nprobe (IVF) or efSearch (HNSW) is raised until it does.
        hnsw_m: HNSW graph degree.
    """

    kind: str = "auto"
    flat_max: int = 50_000
    target_recall: float = 0.95
    hnsw_m: int = 32


def index_recall(index, exact, xq: np.ndarray, k: int) -> float:
    """Recall of an approximate index against exact search: the share of the exact top-k
    found by `index`, over the queries [n, dim] (not the ranking metric
    models.evaluation.recall_at_k)."""
    _, I = index.search(xq, k)
    _, E = exact.search(xq, k)
    hits = sum(len(set(a[a >= 0]) & set(b[b >= 0])) for a, b in zip(I, E, strict=True))
    return hits / max(1, int((E >= 0).sum()))


def build_index(xb: np.ndarray, xq_sample: np.ndarray, k: int,
                config: IndexConfig = IndexConfig()) -> tuple[object, dict]:
    """Builds the item index and measures it.

    Args:
        xb: [num_items, dim] item vectors.
        xq_sample: [n, dim] representative queries (e.g. a sample of user vectors).
        k: the list length the recall is measured at.
        config: index choice.

    Returns:
        (faiss index, {"type", "recall@k", ... parameters}).
    """
    import faiss

    xb = np.ascontiguousarray(xb, dtype=np.float32)
    xq = np.ascontiguousarray(xq_sample, dtype=np.float32)
    d, n = xb.shape[1], xb.shape[0]
    exact = faiss.IndexFlatIP(d)
    exact.add(xb)
    kind = config.kind if config.kind != "auto" else ("flat" if n <= config.flat_max else "ivf")
    k = min(k, n)
    if kind == "flat":
        return exact, {"type": "IndexFlatIP", "recall@k": 1.0, "k": k}
    if kind == "ivf":
        nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(xb)
        index.add(xb)
        knob, name, value = index, "nprobe", 4
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.add(xb)
        knob, name, value = index.hnsw, "efSearch", max(32, k)
    else:
        raise ValueError(f"index kind {config.kind!r}: expected auto, flat, ivf or hnsw")
    while True:
        setattr(knob, name, value)
        recall = index_recall(index, exact, xq, k)
        limit = index.nlist if kind == "ivf" else 4096
        if recall >= config.target_recall or value >= limit:
            break
        value = min(limit, value * 2)
    log.info("%s index: %s=%d, recall@%d %.4f", kind, name, value, k, recall)
    if recall < config.target_recall:
        log.warning("%s index reaches recall %.3f < %.2f", kind, recall, config.target_recall)
    return index, {"type": type(index).__name__, "recall@k": round(recall, 4), "k": k,
                   name: value}
