"""Business rules applied to ranked candidates, the same in the batch job and the functions.

Candidates arrive ranked (best first). The rules drop empty slots, excluded items (seen,
unavailable, the request's exclusions) and repeats, and keep the first k. Vectorised over a
batch of users, so the nightly precompute pays microseconds per user. `longtail_slots`
reserves the last places of a top for items of a kind (the long tail, new items): the served
model's discovery rules. `rerank` is the served model's exposure stage after its ranker: a
popularity-debiased order and long-tail places granted only within a score margin of the head
items they displace.
"""

from __future__ import annotations

import numpy as np


def exclusion_mask(items: np.ndarray, exclude: list[np.ndarray]) -> np.ndarray:
    """True where items[r, j] is in exclude[r].

    Args:
        items: [n, f] item indices (-1 for empty slots).
        exclude: n arrays of item indices.

    Returns:
        [n, f] bool.
    """
    n = len(items)
    lens = np.fromiter((len(e) for e in exclude), np.int64, count=n)
    if lens.sum() == 0:
        return np.zeros(items.shape, bool)
    flat = np.concatenate([np.asarray(e, np.int64) for e in exclude])
    width = int(max(items.max(initial=0), flat.max(initial=0))) + 2
    # One sorted key per (row, item); a binary search per candidate (no full sort of both).
    ex_keys = np.repeat(np.arange(n, dtype=np.int64) * width, lens) + flat + 1
    if np.any(ex_keys[1:] < ex_keys[:-1]):
        ex_keys.sort()
    keys = np.arange(n, dtype=np.int64)[:, None] * width + (items.astype(np.int64) + 1)
    pos = np.searchsorted(ex_keys, keys).clip(max=len(ex_keys) - 1)
    return ex_keys[pos] == keys


def apply_rules_batch(items: np.ndarray, scores: np.ndarray, k: int,
                      exclude: list[np.ndarray] | None = None, unique: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Filters ranked candidate lists of a batch of users.

    Args:
        items: [n, f] item indices per row, best first; -1 marks an empty slot.
        scores: [n, f] their scores.
        k: list length to keep.
        exclude: per row, item indices that must not appear.
        unique: the caller guarantees no item repeats within a row (e.g. a Faiss result),
            which skips the repeat check.

    Returns:
        (items [n, k] int64 with -1 padding, scores [n, k] float32 with 0 padding), in the
        input order.
    """
    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float32)
    n = len(items)
    drop = items < 0
    if exclude is not None:
        drop |= exclusion_mask(items, exclude)
    if not unique:
        # Repeats: in a stable sort by item, every copy after the first is dropped.
        by_item = np.argsort(items, axis=1, kind="stable")
        sorted_items = np.take_along_axis(items, by_item, 1)
        repeat = np.zeros(items.shape, bool)
        np.put_along_axis(repeat, by_item[:, 1:], sorted_items[:, 1:] == sorted_items[:, :-1],
                          1)
        drop |= repeat
    # Compact the kept entries to the left: each kept entry's slot is its rank among kept.
    slot = np.cumsum(~drop, axis=1) - 1
    take = ~drop & (slot < k)
    rows = np.broadcast_to(np.arange(n)[:, None], items.shape)[take]
    out_i = np.full((n, k), -1, np.int64)
    out_d = np.zeros((n, k), np.float32)
    out_i[rows, slot[take]] = items[take]
    out_d[rows, slot[take]] = scores[take]
    return out_i, out_d


def apply_rules(items: np.ndarray, scores: np.ndarray, k: int,
                exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """apply_rules_batch for one list: returns ([<= k] items, [<= k] scores)."""
    I, D = apply_rules_batch(np.asarray(items)[None], np.asarray(scores)[None], k,
                             None if exclude is None else [np.asarray(exclude)])
    keep = I[0] >= 0
    return I[0][keep], D[0][keep]


def fill(primary: list[str], fallback: list[str], k: int, exclude: set[str]) -> list[str]:
    """Tops up `primary` to k ids from `fallback`, skipping excluded and repeated ids."""
    out, seen = [], set(exclude)
    for item in (*primary, *fallback):
        if item not in seen:
            out.append(item)
            seen.add(item)
            if len(out) == k:
                break
    return out


def longtail_slots(I: np.ndarray, S: np.ndarray, slots: int, eligible: np.ndarray,
                   affinity: np.ndarray, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Moves each row's eligible items of highest `affinity` from below its first
    `top - slots` places into the last `slots` places of its top `top` (a discovery rule:
    the items they displace move down).

    Args:
        I: [B, n] ranked item indices, -1 pads; S: [B, n] their scores.
        slots: places of the top reserved for eligible items.
        eligible: [n_items] bool, True for the items the slots are for (e.g. the long tail).
        affinity: [B, n] how well each item suits the user (e.g. the two-tower score).
        top: the length of the top whose last places are reserved.

    Returns:
        (I, S) reordered.
    """
    I, S = I.copy(), S.copy()
    keep = top - slots
    for r in range(len(I)):
        row = I[r]
        cand = np.flatnonzero((row >= 0) & eligible[np.maximum(row, 0)])
        cand = cand[cand >= keep]
        cand = cand[np.argsort(-affinity[r, cand], kind="stable")[:slots]]
        if len(cand) == 0:
            continue
        rest = np.setdiff1d(np.arange(keep, len(row)), cand)
        order = np.concatenate([np.arange(keep), cand, rest])
        I[r], S[r] = row[order], S[r][order]
    return I, S


def rerank(I: np.ndarray, S: np.ndarray, log_pop: np.ndarray, tail: np.ndarray,
           beta: float = 0.0, slots: int = 0, margin: float = 0.0, top: int = 10,
           affinity: np.ndarray | None = None, diversity: float = 0.0,
           vectors: np.ndarray | None = None, pool: int = 50
           ) -> tuple[np.ndarray, np.ndarray]:
    """Re-ranks ranked lists for exposure: NumPy on the lists [B, n] a ranker already scored,
    deterministic (ties: the smaller item index first), the same in every runtime.

    1. Debias: each score becomes S - beta * log_pop[item] and the row is re-sorted by it
       (beta = 0 keeps the order).
    2. MMR (maximal marginal relevance): the top `top` is picked greedily from the first
       `pool` items, each time the item of highest score - diversity x its largest cosine
       to the items already picked (0 if none is positive; diversity = 0 keeps the order);
       the rest follow in order.
    3. Calibrated exposure: up to `slots` of the lowest-placed head items of the top `top`
       give their place, one at a time from the lowest, to a long-tail item from below the
       top whose score is at least the displaced head item's minus `margin`: of those, the
       one of highest `affinity` (default: the score; ties: the higher placed). It stops at
       the first head item no tail item is close enough to. Promoted items take the last
       places of the top in their order of the list; the head items they displaced lead the
       rest.

    Args:
        I: [B, n] item indices, best first, -1 pads (at the end); S: [B, n] their scores.
        log_pop: [n_items] log1p train events per item.
        tail: [n_items] bool, True for the long tail.
        beta: the debiasing weight, in the scores' units per log1p event.
        slots: most places of each top given to the long tail by step 3; 0 skips it.
        margin: how far below the displaced head item's score a tail item may be.
        top: the length of the top the places are counted in.
        affinity: [B, n] how well each item of I (as given) suits the user, or None.
        diversity: MMR's weight, in the scores' units per unit of cosine.
        vectors: [n_items + 1, d] item vectors for MMR's cosines (the last row for pads).
        pool: the items MMR picks from.

    Returns:
        (I [B, n], S [B, n]): reordered; S the (debiased) scores, each lowered to the least
        of those above it where steps 2-3 moved an item up, so that every list's scores
        still descend (its rank key); pads stay at the end with their scores.
    """
    I = np.asarray(I, np.int64)
    S = np.asarray(S, np.float32)
    A = S if affinity is None else np.asarray(affinity, np.float32)
    valid = I >= 0
    if beta:
        S = np.where(valid, S - np.float32(beta) * log_pop[np.maximum(I, 0)].astype(np.float32),
                     S)
        rank_key = np.where(valid, -S.astype(np.float64), np.inf)
        order = np.lexsort((np.where(valid, I, np.iinfo(np.int64).max), rank_key), axis=1)
        I, S = np.take_along_axis(I, order, 1), np.take_along_axis(S, order, 1)
        A = S if affinity is None else np.take_along_axis(A, order, 1)
        valid = I >= 0
    if diversity and vectors is not None:
        order = _mmr_order(I, S, vectors, diversity, top, pool)
        I, S = np.take_along_axis(I, order, 1), np.take_along_axis(S, order, 1)
        A = S if affinity is None else np.take_along_axis(A, order, 1)
        valid = I >= 0
    if slots <= 0 or I.shape[1] <= top:
        return I, _non_increasing(I, S)
    n = I.shape[1]
    pos = np.broadcast_to(np.arange(n), I.shape)
    is_tail = valid & tail[np.maximum(I, 0)]
    # The top's head places from the bottom up (-1: none left).
    heads = np.sort(np.where(valid & ~is_tail & (pos < top), pos, -1), axis=1)[:, ::-1]
    free = is_tail & (pos >= top)  # tail items below the top not yet promoted
    group = (pos >= top).astype(np.int64)  # 0: in the top
    going = np.ones(len(I), bool)
    rows = np.arange(len(I))
    for k in range(min(slots, top)):
        h = heads[:, k]
        floor = S[rows, np.maximum(h, 0)] - np.float32(margin)
        ok = free & (S >= floor[:, None])
        pick = np.argmax(np.where(ok, A, -np.inf), axis=1)  # ties: the first, higher placed
        going &= (h >= 0) & ok[rows, pick]
        r = rows[going]
        group[r, h[going]], group[r, pick[going]] = 1, 0
        free[r, pick[going]] = False
    order = np.argsort(group * n + pos, axis=1, kind="stable")
    I = np.take_along_axis(I, order, 1)
    return I, _non_increasing(I, np.take_along_axis(S, order, 1))


def _non_increasing(I: np.ndarray, S: np.ndarray) -> np.ndarray:
    """S with each listed item's score the least of its own and those above it (pads keep
    theirs): a list's scores stay a descending rank key after a re-order."""
    valid = I >= 0
    run = np.minimum.accumulate(np.where(valid, S, np.inf), axis=1)
    return np.where(valid, run, S).astype(np.float32)


def _mmr_order(I: np.ndarray, S: np.ndarray, vectors: np.ndarray, diversity: float, top: int,
               pool: int) -> np.ndarray:
    """[B, n] positions: MMR's picks of the first `pool` (see `rerank`), then the rest."""
    B, n = I.shape
    P = min(pool, n)
    V = vectors[I[:, :P]].astype(np.float32)  # -1 reads the pad row
    V /= np.maximum(np.linalg.norm(V, axis=2, keepdims=True), 1e-12)
    sim = np.einsum("bpd,bqd->bpq", V, V)
    base = np.where(I[:, :P] >= 0, S[:, :P], np.float32(-1e30)).astype(np.float32)
    taken = np.zeros((B, P), bool)
    nearest = np.zeros((B, P), np.float32)  # the largest cosine to a pick so far, >= 0
    rows = np.arange(B)
    picks = []
    for _ in range(min(top, P)):
        gain = base - np.float32(diversity) * nearest
        pick = np.argmax(np.where(taken, -np.inf, gain), axis=1)  # ties: the higher placed
        picks.append(pick)
        taken[rows, pick] = True
        nearest = np.maximum(nearest, sim[rows, pick])
    first = np.stack(picks, 1)
    key = np.broadcast_to(np.arange(n) + n, (B, n)).copy()
    key[rows[:, None], first] = np.arange(first.shape[1])
    return np.argsort(key, axis=1, kind="stable")

def fuse(scores: np.ndarray, source: np.ndarray, weight: np.ndarray, kind: str = "z",
         k0: float = 60.0, ref: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The ranker's scores of a candidate pool fused with one candidate source's scores of
    the same items (the served model's score fusion, ServedConfig.fusion_*).

    kind "z": score + weight x the row's ranker standard deviation x the source's z-score
    over the row's candidates (so weight 1 gives the source the ranker's own spread, and the
    result stays in the ranker's units). kind "rrf": the row is put in the order of
    1 / (k0 + ranker rank) + weight / (k0 + source rank) (reciprocal-rank fusion, ranks from
    0, ties by position), and its ranker scores, sorted, are handed out in that order (so
    margins in the ranker's units keep their meaning). Weight 0 leaves the scores unchanged.

    Args:
        scores: [B, C] float32 ranker scores, -inf on padding.
        source: [B, C] the source's scores of the same items (read where scores is finite).
        weight: [B] the fusion weight of each row (0: that row as it is).
        kind: "z" or "rrf".
        k0: reciprocal-rank fusion's constant.
        ref: (ranker scores [B, P], source scores [B, P]) of the candidate pool the lists
            were fused over, when `scores` are of other items (ServedRecommender.score of
            given items): "z" then takes the means and spreads from the pool, so an item
            gets the fused score it has in the lists; "rrf" ranks each item among the pool
            (the count of pool items above it) and returns the fused reciprocal ranks
            themselves, which order the items as the lists do.

    Returns:
        [B, C] float32, -inf on padding.
    """
    scores = np.asarray(scores, np.float32)
    valid = np.isfinite(scores)
    w = np.asarray(weight, np.float64)[:, None]
    if kind == "z":
        r_scores, r_source = ((scores, source) if ref is None else
                              (np.asarray(ref[0], np.float32), ref[1]))
        r_valid = np.isfinite(r_scores)
        n = np.maximum(r_valid.sum(1, keepdims=True), 1)

        def spread(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = np.where(r_valid, x, 0.0).astype(np.float64)
            mean = x.sum(1, keepdims=True) / n
            return mean, np.sqrt((np.where(r_valid, x - mean, 0.0) ** 2).sum(1, keepdims=True)
                                 / n)

        s_mean, s_std = spread(r_source)
        r_std = spread(r_scores)[1]
        centred = np.where(valid, np.asarray(source, np.float64), 0.0) - s_mean
        z = np.divide(centred, s_std, out=np.zeros_like(centred), where=s_std > 0)
        out = np.where(valid & (w != 0), scores + w * r_std * z, scores)
    elif kind == "rrf" and ref is not None:
        r_scores, r_source = (np.asarray(x, np.float64) for x in ref)
        in_pool = np.isfinite(r_scores)

        def above(x: np.ndarray, pool: np.ndarray) -> np.ndarray:  # pool items above each
            pool = np.where(in_pool, pool, -np.inf)
            return (pool[:, None, :] > np.asarray(x, np.float64)[:, :, None]).sum(-1)

        fused = 1.0 / (k0 + above(scores, r_scores)) + w / (k0 + above(source, r_source))
        out = np.where(w != 0, fused, scores)
    elif kind == "rrf":
        B, C = scores.shape

        def ranks(x: np.ndarray) -> np.ndarray:
            order = np.argsort(-np.where(valid, x, -np.inf), axis=1, kind="stable")
            r = np.empty((B, C), np.float64)
            np.put_along_axis(r, order, np.arange(C, dtype=np.float64)[None, :], 1)
            return r

        fused = np.where(valid, 1.0 / (k0 + ranks(scores)) + w / (k0 + ranks(source)),
                         -np.inf)
        order = np.argsort(-fused, axis=1, kind="stable")
        out = np.empty((B, C), np.float32)
        np.put_along_axis(out, order, -np.sort(-scores, axis=1), 1)
        out = np.where((w != 0), out, scores)
    else:
        raise ValueError(f"fusion kind {kind!r}: \"z\" or \"rrf\"")
    return np.where(valid, out, -np.inf).astype(np.float32)
