"""Business rules applied to ranked candidates, the same in the batch job and the functions.

Candidates arrive ranked (best first). The rules drop excluded items (seen, unavailable, the
request's exclusions), drop duplicates and keep the first k.
"""

from __future__ import annotations

import numpy as np


def apply_rules(items: np.ndarray, scores: np.ndarray, k: int,
                exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Filters one ranked candidate list.

    Args:
        items: [n] item indices, best first; -1 marks an empty slot.
        scores: [n] their scores.
        k: list length to keep.
        exclude: item indices that must not appear.

    Returns:
        ([<= k] items, [<= k] scores), in the input order.
    """
    keep = items >= 0
    if exclude is not None and len(exclude):
        keep &= ~np.isin(items, exclude)
    _, first = np.unique(items, return_index=True)
    unique = np.zeros(len(items), bool)
    unique[first] = True
    keep &= unique
    return items[keep][:k], scores[keep][:k]


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
