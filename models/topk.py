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


# Flat searches of at least this many queries go through BLAS. faiss-cpu 1.15 ships
# 128,000, so batches of up to ~1,000 queries took the one-query-at-a-time path: 1.9 ms per
# query against 0.24 ms through BLAS at 100,000 items x 64 dims (2 cores); 20 is the
# threshold of earlier faiss releases.
BLAS_THRESHOLD = 20


def faiss_search(index, xq: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw Faiss search re-sorted so equal scores follow the smaller index.

    Returns:
        (I [num_queries, fetch] int64, -1 for none; D [num_queries, fetch] float32).
    """
    import faiss

    if faiss.cvar.distance_compute_blas_threshold != BLAS_THRESHOLD:
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    fetch = min(fetch, index.ntotal)
    D, I = index.search(np.ascontiguousarray(xq, dtype=np.float32), fetch)
    D = np.where(I < 0, -np.inf, D)
    # Faiss orders by score only; re-sort the rows holding equal scores (rare) by index.
    tied = np.flatnonzero(np.any(D[:, 1:] == D[:, :-1], axis=1))
    if len(tied):
        It, Dt = I[tied], D[tied]
        order = np.lexsort((np.where(It < 0, index.ntotal, It), -Dt), axis=1)
        I[tied], D[tied] = np.take_along_axis(It, order, 1), np.take_along_axis(Dt, order, 1)
    return I, D


def faiss_topk(index, xq: np.ndarray, k: int, seen: list[np.ndarray] | None = None,
               chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-k from a Faiss inner-product index with seen items excluded.

    Over-fetches by what exclusion takes from the candidates: the 95th percentile, over a
    sample of the batch's rows, of the seen items among a row's first k + (its seen count)
    results (see `_margin`). The few rows that lose too many candidates are searched again,
    wide enough to be exact, so the result never depends on the sample.

    Batches longer than `chunk` rows are searched a chunk at a time, the next chunk's search
    (Faiss, outside the GIL) running while the rules filter the current one, so the cores do
    not sit idle while the rules run.

    Args:
        index: a Faiss index over the item vectors (ids = item indices).
        xq: [num_queries, dim] float32 query vectors.
        k: list length.
        seen: per query, item indices to exclude.
        chunk: rows per search when pipelining.

    Returns:
        (I [num_queries, k] int64 with -1 padding, D [num_queries, k] float32 with 0 padding),
        rows sorted by descending score, ties by smaller index.
    """
    from models.rules import apply_rules_batch

    seen = seen if seen is not None else [np.zeros(0, np.int64)] * len(xq)
    lens = np.fromiter((len(s) for s in seen), np.int64, count=len(seen))
    fetch = min(index.ntotal, k + _margin(index, xq, k, seen, lens))
    if len(xq) <= chunk:
        I, D = faiss_search(index, xq, fetch)
        out_i, out_d = apply_rules_batch(I, D, k, seen, unique=True)
    else:
        from concurrent.futures import ThreadPoolExecutor

        import faiss

        threads = faiss.omp_get_max_threads()  # OpenMP's setting is per thread: pass it on

        def search(lo, hi):
            faiss.omp_set_num_threads(threads)
            return faiss_search(index, xq[lo:hi], fetch)

        out_i, out_d = np.empty((len(xq), k), np.int64), np.empty((len(xq), k), np.float32)
        spans = [(lo, min(lo + chunk, len(xq))) for lo in range(0, len(xq), chunk)]
        with ThreadPoolExecutor(1, thread_name_prefix="faiss") as pool:
            pending = pool.submit(search, *spans[0])
            for n, (lo, hi) in enumerate(spans):
                I, D = pending.result()
                if n + 1 < len(spans):
                    pending = pool.submit(search, *spans[n + 1])
                out_i[lo:hi], out_d[lo:hi] = apply_rules_batch(I, D, k, seen[lo:hi],
                                                               unique=True)
    short = np.flatnonzero((out_i[:, -1] < 0) & (k + lens > fetch) & (fetch < index.ntotal))
    if len(short):
        I2, D2 = faiss_search(index, xq[short], int(k + lens[short].max()))
        out_i[short], out_d[short] = apply_rules_batch(I2, D2, k, [seen[r] for r in short],
                                                       unique=True)
    return out_i, out_d


def _margin(index, xq: np.ndarray, k: int, seen: list[np.ndarray], lens: np.ndarray,
            sample: int = 128) -> int:
    """Extra results to fetch per row so that most rows keep k after exclusion.

    A seen item only costs a slot when it ranks among the row's candidates: users with long
    histories mostly have seen items far down the list. For batches much larger than
    `sample`, a sample of rows is searched k + its 95th-percentile seen count deep and the
    seen items found there are counted; otherwise the 95th-percentile seen count is used.
    """
    if not len(lens):
        return 0
    upper = int(np.percentile(lens, 95))
    if len(xq) < 8 * sample or upper == 0:
        return upper
    rows = np.linspace(0, len(xq) - 1, sample).astype(np.int64)
    I, _ = faiss_search(index, xq[rows], k + upper)
    hits = [np.isin(I[n, :k + lens[r]], seen[r]).sum() for n, r in enumerate(rows)]
    return min(upper, int(np.percentile(hits, 95)) + 2)


def build_flat_index(xb: np.ndarray):
    """An exact inner-product Faiss index over [num_items, dim] item vectors."""
    import faiss

    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(np.ascontiguousarray(xb, dtype=np.float32))
    return index


class ItemVectorRecommender:
    """A recommender of the evaluation over a model with item vectors and a query per user
    (`model.item_vectors`, `model.queries(user_ids, seen)`, `model.data.items`): Faiss over the
    item vectors, the history left out. Subclasses give `name` and `train(train, users, items,
    config)`, which returns the model (two_tower, graphsage)."""

    name: str

    def __init__(self, config):
        self.config = config

    @staticmethod
    def train(train, users, items, config):
        raise NotImplementedError

    def fit(self, train, users=None, items=None):
        self.model = self.train(train, users, items, self.config)
        self.index = build_flat_index(self.model.item_vectors)
        return self

    def recommend(self, user_ids, histories, k, fresh):
        items = self.model.data.items
        seen = [items.lookup(h) for h in histories]
        seen = [s[s >= 0] for s in seen]
        I, _ = faiss_topk(self.index, self.model.queries(list(user_ids), seen), k, seen)
        return [[str(items.ids[i]) for i in row if i >= 0] for row in I]

    def score(self, user_ids, histories, candidates, fresh):
        """The retrieval score (query . item vector) of given items; -inf for unknown ones
        (models.evaluation_loo.ScoringRecommender)."""
        from models.baselines import dot_scores

        items = self.model.data.items
        seen = [items.lookup(h) for h in histories]
        xq = self.model.queries(list(user_ids), [s[s >= 0] for s in seen])
        return dot_scores(items, xq, self.model.item_vectors, candidates)
