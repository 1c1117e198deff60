"""Business rules applied to ranked candidates, the same in the batch job and the functions.

Candidates arrive ranked (best first). The rules drop empty slots, excluded items (seen,
unavailable, the request's exclusions) and repeats, and keep the first k. Vectorised over a
batch of users, so the nightly precompute pays microseconds per user. `longtail_slots`
reserves the last places of a top for items of a kind (the long tail, new items): the served
model's discovery rules.
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
