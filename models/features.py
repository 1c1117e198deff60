"""The ranking features of (user, candidate) pairs as gathers on precomputed arrays (NumPy).

`models.feature_graph.features` defines the features in TensorFlow (the SavedModels carry it, and it
is the reference the tests hold this module to); here the same numbers come from arrays built
once per model, so that a shard of users costs a few matrix products and gathers:

    NeighbourMatrix(idx, sim)          the kNN or session table as an [n + 1, n + 1] matrix
    neighbour_sums(matrix, histories)  [B, 3, n + 1] its rows summed over each history's last
                                       `recent` items, last `window` items and all of them
    neighbour_top(sums, histories, k)  a candidate source: top-k of the full sums
    tower_top(vectors, query, ...)     the two-tower candidate source: exact top-k by score
    pair_features(tables, ...)         [B, C, len(FEATURES)] from the sums and the tables

The full sums pick the item-kNN and session candidates, and the same products give the
window sums the features read at the candidates, so each history item's neighbours are
visited once per table.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.ranker import FEATURES, ITEM_STATS, FeatureTables

# A table becomes a dense matrix when it fills at least this share of it and the matrix takes
# at most DENSE_MAX_BYTES: adding dense rows streams them with SIMD (item-major, each row read
# once per step), while the sparse product pays for an index per entry. MovieLens-1M size
# (3,706 items, 1,000 neighbours, histories of ~100 items), CPU ms per user and table: kNN
# (27% full) 0.08 dense, 0.34 sparse; session (7% full, 14% over the rows histories hold)
# 0.08 dense, 0.20 sparse.
DENSE_MIN_FILL = 0.05
DENSE_MAX_BYTES = 128 << 20
_BLAS = []


def one_blas_thread():
    """A context in which BLAS runs on the calling thread alone (threadpoolctl).

    The scorer's products are small (a step of users), and the nightly runs one worker
    process per core: OpenBLAS's own threads then spin against the other workers (the MLP
    took 15x longer with them on two busy cores).
    """
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
        except ImportError:  # pragma: no cover - a declared dependency
            _BLAS.append(None)
    return nullcontext() if _BLAS[0] is None else _BLAS[0].limit(limits=1, user_api="blas")


@dataclass
class NeighbourMatrix:
    """A neighbour table (idx, sim: [n + 1, M], padding at index n) as a matrix S with
    S[i, j] = the similarity of neighbour j to item i (0 for non-neighbours and padding).

    Attributes:
        matrix: [n + 1, n + 1] float32, a dense array or a CSR matrix (see DENSE_MIN_FILL).
    """

    matrix: np.ndarray | sp.csr_matrix

    @classmethod
    def build(cls, idx: np.ndarray, sim: np.ndarray, dense: bool | None = None
              ) -> NeighbourMatrix:
        """Args: idx [n + 1, M] int, sim [n + 1, M] float32; dense: force the layout (None:
        by fill and size)."""
        return cls.from_csr(*neighbour_csr(idx, sim), dense=dense)

    @classmethod
    def from_csr(cls, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 dense: bool | None = None) -> NeighbourMatrix:
        """From a table's `neighbour_csr` (a bundle stores them so); dense as in `build`."""
        size = len(indptr) - 1
        S = sp.csr_matrix((data.astype(np.float32, copy=False), indices, indptr), (size, size))
        if dense is None:
            dense = (S.nnz >= DENSE_MIN_FILL * size * size
                     and size * size * 4 <= DENSE_MAX_BYTES)
        return cls(S.toarray() if dense else S)

    @property
    def size(self) -> int:
        return self.matrix.shape[0]


def neighbour_csr(idx: np.ndarray, sim: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A neighbour table (idx, sim: [n + 1, M], pads: weight 0) as CSR rows: (indptr
    [n + 2] int64, indices [nnz] int32, data [nnz] float32), each row's neighbours in their
    order. A fraction of the padded table's size: rows hold far fewer than M neighbours."""
    keep = sim != 0  # row-major: each row's neighbours in place, no sort needed (EASE's
    # weights may be negative; the kNN and session similarities are not)
    indptr = np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int64)
    return indptr, idx[keep].astype(np.int32), sim[keep].astype(np.float32)


def neighbour_padded(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, width: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `neighbour_csr` for tables whose neighbours lead each row (as
    models.ranker.neighbour_table writes them): (idx [n + 1, width] int32, n padding;
    sim [n + 1, width] float32)."""
    rows = len(indptr) - 1
    counts = np.diff(indptr)
    if counts.max(initial=0) > width:
        raise ValueError(f"a row holds {counts.max()} neighbours, more than the width {width}")
    idx = np.full((rows, width), rows - 1, np.int32)
    sim = np.zeros((rows, width), np.float32)
    r = np.repeat(np.arange(rows), counts)
    col = np.arange(len(indices)) - np.repeat(indptr[:-1], counts)
    idx[r, col], sim[r, col] = indices, data
    return idx, sim


def segments(histories: list[np.ndarray], window: int, recent: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Where each history item goes: row 3b for user b's last `recent` items, 3b + 1 for the
    rest of its last `window`, 3b + 2 for the older ones.

    Returns:
        (rows [N] int64, items [N] int64) over the concatenated histories.
    """
    lens = np.fromiter((len(h) for h in histories), np.int64, len(histories))
    flat = (np.concatenate(histories).astype(np.int64) if lens.sum()
            else np.zeros(0, np.int64))
    ends = np.cumsum(lens)
    from_end = np.repeat(ends, lens) - 1 - np.arange(len(flat))  # 0 = the latest item
    seg = (from_end >= recent).astype(np.int64) + (from_end >= window)
    rows = np.repeat(np.arange(len(histories)) * 3, lens) + seg
    return rows, flat


def neighbour_sums(nm: NeighbourMatrix, histories: list[np.ndarray], window: int,
                   recent: int) -> np.ndarray:
    """Each history's neighbour similarities to every item, summed three ways.

    Args:
        nm: the neighbour matrix.
        histories: B arrays of item indices, oldest first.
        window: H, the items the `knn`/`session` features read (the towers' history width).
        recent: R <= H, the items of the `*_recent` features.

    Returns:
        [B, 3, n + 1] float32: [:, 0] over the last R items, [:, 1] the last H, [:, 2] all.
    """
    rows, flat = segments(histories, window, recent)
    size, B = nm.size, len(histories)
    ones = np.ones(len(flat), np.float32)
    if sp.issparse(nm.matrix):
        order = np.argsort(rows, kind="stable")
        indptr = np.searchsorted(rows[order], np.arange(3 * B + 1))
        ind = sp.csr_matrix((ones, flat[order], indptr), (3 * B, size))
    else:  # item-major: each matrix row is read once per step and added to its users' sums
        order = np.lexsort((rows, flat))  # (half the time of user-major at 3,706 items)
        indptr = np.searchsorted(flat[order], np.arange(size + 1))
        ind = sp.csc_matrix((ones, rows[order], indptr), (3 * B, size))
    out = ind @ nm.matrix
    out = out.toarray() if sp.issparse(out) else np.asarray(out)
    out = out.reshape(B, 3, size)
    out[:, 1] += out[:, 0]
    out[:, 2] += out[:, 1]
    return out


def neighbour_top(sums: np.ndarray, histories: list[np.ndarray], k: int) -> np.ndarray:
    """The neighbour candidate source: each row's top-k items by summed similarity, its
    history left out; ties go to the smaller index.

    Args:
        sums: [B, n + 1] neighbour sums over the whole history (the last column is padding).
        histories: B arrays of item indices.
        k: candidates per row.

    Returns:
        [B, k] int64, -1 pads (items with no similarity are not candidates).
    """
    n = sums.shape[1] - 1
    top, val = _top(np.array(sums[:, :n], np.float32), histories, k, 0.0)
    return np.where(val > 0, top, -1)


def tower_top(vectors: np.ndarray, query: np.ndarray, histories: list[np.ndarray],
              k: int) -> np.ndarray:
    """The two-tower candidate source: each row's top-k items by inner product, its history
    left out; ties go to the smaller index (as models.topk.brute_force_topk).

    Args:
        vectors: [n, d] item vectors; query: [B, d] user tower output.
        histories: B arrays of item indices.
        k: candidates per row.

    Returns:
        [B, k] int64, -1 pads.
    """
    with one_blas_thread():
        scores = query.astype(np.float32) @ vectors.astype(np.float32, copy=False).T
    top, val = _top(scores, histories, k, -np.inf)
    return np.where(np.isfinite(val), top, -1)


def _top(scores: np.ndarray, histories: list[np.ndarray], k: int, floor: float
         ) -> tuple[np.ndarray, np.ndarray]:
    """(top [B, k] int64, their scores [B, k]) of each row, the history set to `floor` first
    (in place), sorted by descending score then index; columns past n hold `floor`."""
    B, n = scores.shape
    lens = np.fromiter((len(h) for h in histories), np.int64, B)
    if lens.sum():
        scores[np.repeat(np.arange(B), lens), np.concatenate(histories)] = floor
    top, val = np.zeros((B, k), np.int64), np.full((B, k), floor, np.float32)
    m = min(k, n)
    if m == 0:
        return top, val
    part = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < n else np.broadcast_to(
        np.arange(n), (B, n))
    v = np.take_along_axis(scores, part, 1)
    order = descending(v, part)
    top[:, :m], val[:, :m] = np.take_along_axis(part, order, 1), np.take_along_axis(v, order, 1)
    return top, val


def descending(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per row, the order of descending score, equal scores by ascending id: np.lexsort((ids,
    -scores), axis=1) as one sort of 64-bit keys (a third of its time).

    Args:
        scores: [B, n] float32, no NaN; ids: [B, n] int, -1 <= id < 2**31 - 1.

    Returns:
        [B, n] int64 positions.
    """
    bits = (scores.astype(np.float32) + np.float32(0)).view(np.int32).astype(np.int64)  # -0 -> 0
    bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # ascending ints in the floats' order
    key = (0x7FFFFFFF - bits).astype(np.uint64) << np.uint64(32)
    return np.argsort(key | (ids + 1).astype(np.uint64), axis=1)


@dataclass
class ItemArrays:
    """Per-item arrays the features gather from, derived once from the FeatureTables.

    Attributes:
        n: items (index n is the padding row of every table).
        stats: [n + 1, len(ITEM_STATS)] float32 item_stats.
        since_first: [n + 1] float32 days since the item's first event (expm1 of age_first).
        tokens: [n + 1, T] int64 item feature tokens; n_tok [n + 1] float32 how many (>= 1).
        n_vocab: size of the item token vocabulary.
    """

    n: int
    stats: np.ndarray
    since_first: np.ndarray
    tokens: np.ndarray
    n_tok: np.ndarray
    n_vocab: int

    @classmethod
    def build(cls, tables: FeatureTables, n_vocab: int) -> ItemArrays:
        stats = tables.item_stats.astype(np.float32)
        tokens = tables.item_tokens.astype(np.int64)
        since_first = np.expm1(stats[:, ITEM_STATS.index("age_first")])
        n_tok = np.maximum((tokens > 0).sum(1), 1).astype(np.float32)
        n_vocab = max(n_vocab, int(tokens.max(initial=0)) + 1)
        return cls(len(stats) - 1, stats, since_first, tokens, n_tok, n_vocab)


def pair_features(tables: FeatureTables, items: ItemArrays, query: np.ndarray,
                  hist: np.ndarray, user_tok: np.ndarray, cand: np.ndarray,
                  context: np.ndarray, knn: np.ndarray, sess: np.ndarray,
                  extra: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """The features of `models.feature_graph.features`, from gathers.

    Args:
        tables: the feature tables.
        items: their per-item arrays.
        query: [B, d] user tower output.
        hist: [B, H] history item indices, right-aligned, -1 pads.
        user_tok: [B, U] user tokens.
        cand: [B, C] candidate item indices, -1 pads.
        context: [B, 2] fresh flag, days since the user's last event.
        knn, sess: [B, 3, n + 1] neighbour_sums of the two tables over the same histories
            (window H, recent R).
        extra: [B, C] float32 columns appended after FEATURES (the optional sources'
            features: models.served.ServedModel.feature_names).

    Returns:
        [B, C, len(FEATURES) + len(extra)] float32.
    """
    B, C = cand.shape
    n = items.n
    c = np.where(cand < 0, n, cand).astype(np.int64)
    X = np.empty((B, C, len(FEATURES) + len(extra)), np.float32)
    for f, column in enumerate(extra, len(FEATURES)):
        X[..., f] = column
    col = {f: i for i, f in enumerate(FEATURES)}
    X[..., col["tower"]] = np.einsum("bcd,bd->bc", tables.item_vectors[c], query)
    rows = np.arange(B)[:, None]
    for name, sums in (("knn", knn), ("session", sess)):
        X[..., col[name]] = sums[rows, 1, c]
        X[..., col[name + "_recent"]] = sums[rows, 0, c]
    first = col[ITEM_STATS[0]]
    stats = items.stats[c]
    X[..., first:first + len(ITEM_STATS)] = stats
    h = np.where(hist < 0, n, hist).astype(np.int64)
    n_hist = np.maximum((hist >= 0).sum(1, keepdims=True), 1).astype(np.float32)
    # token affinity: per history item, the share of the candidate's tokens it carries
    h_tok = items.tokens[h]  # [B, H, T]
    prof = np.bincount((np.arange(B)[:, None, None] * items.n_vocab + h_tok).ravel(),
                       (h_tok > 0).ravel(), B * items.n_vocab).astype(np.float32)
    c_tok = items.tokens[c]  # [B, C, T]
    hit = prof[c_tok + np.arange(B)[:, None, None] * items.n_vocab]
    hit = np.where(c_tok > 0, hit, 0.0).sum(-1, dtype=np.float32)
    X[..., col["token_affinity"]] = hit / items.n_tok[c] / n_hist
    idle = np.maximum(context[:, 1:2], 0.0).astype(np.float32)
    X[..., col["new_since_visit"]] = np.log1p(np.maximum(idle - items.since_first[c], 0.0))
    X[..., col["history_pop"]] = items.stats[h, 0].sum(1, keepdims=True) / n_hist
    # segment lift: the mean over the user's tokens that have a row
    seg = tables.seg_row[user_tok].astype(np.int64)  # [B, U]
    lifts = tables.seg_lift[seg[:, :, None], c[:, None, :]].sum(1)  # row 0 is zeros
    X[..., col["segment_lift"]] = lifts / np.maximum((seg > 0).sum(1, keepdims=True), 1)
    X[..., col["fresh"]] = context[:, :1]
    X[..., col["history_len"]] = np.log1p((hist >= 0).sum(1, keepdims=True))
    X[..., col["days_idle"]] = np.log1p(idle)
    return X
