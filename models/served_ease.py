"""EASE inside `served`: the item–item weights of models.peers.ease_weights as a third
neighbour table (beside item-kNN and session co-occurrence), so that the candidate source
(top-N of a history's summed weights) and the ranking feature (the candidate's summed weight)
are the same gathers, CSR rows in served.npz and padded tables in the TF graph as theirs.

    ease_table(rows, cols, n_items, l2, m, max_items) -> (idx [n + 1, m], weight [n + 1, m])

A history's EASE score of item j is sum_{i in history} B[i, j]; row i of the table holds
history item i's m largest |B[i, j]| (signed), so a row is what `neighbour_sums` adds. On
MovieLens 100K (1,682 items) m = 1,000 keeps ~all the weight; at 20,000 items the closed form
is one dense [n, n] float32 (1.6 GB) and the table 20,000 x m. Catalogues larger than
`max_items` get EASE over their `max_items` items with the most users; the others have no row
and no column (no EASE candidates, feature 0), and the log says so. Measured: 10,000 items
(20,000 users, 1M pairs) took 23.0 s and 909 MB peak RSS on one loaded core; the closed form
grows as n^3 in time (~3 min expected at 20,000) and n^2 in memory.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from models.peers import ease_weights

log = logging.getLogger(__name__)


def ease_table(rows: np.ndarray, cols: np.ndarray, n_items: int, l2: float, m: int,
               max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """EASE's weights, each row's m largest in absolute value, as a padded neighbour table.

    Args:
        rows: [N] user index per pair; cols: [N] item index per pair (distinct pairs).
        n_items: items; pads point at index n_items.
        l2: EASE's lambda.
        m: entries kept per row.
        max_items: most items the closed form covers (those with the most users).

    Returns:
        (idx [n_items + 1, m] int32, n_items padding; weight [n_items + 1, m] float32, 0 on
        padding), each row's entries by descending |weight|, ties by index.
    """
    count = np.bincount(cols, minlength=n_items)
    used = np.flatnonzero(count > 0)
    if len(used) > max_items:
        used = np.sort(used[np.lexsort((used, -count[used]))[:max_items]])
        log.warning("served EASE: %d items with events, the closed form covers the %d with "
                    "the most users (ServedConfig.ease_max_items); the others get no EASE "
                    "candidates and feature 0", int((count > 0).sum()), max_items)
    idx = np.full((n_items + 1, m), n_items, np.int32)
    weight = np.zeros((n_items + 1, m), np.float32)
    if len(used) == 0:
        return idx, weight
    col_of = np.full(n_items, -1, np.int64)
    col_of[used] = np.arange(len(used))
    keep = col_of[cols] >= 0
    X = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], col_of[cols[keep]])),
                      shape=(int(rows.max(initial=0)) + 1, len(used)))
    X.sum_duplicates()
    X.data[:] = 1.0
    B = ease_weights(X, l2)  # [u, u] over the used items
    k = min(m, len(used))
    block = max(1, int(2e7 // len(used)))
    for lo in range(0, len(used), block):
        hi = min(lo + block, len(used))
        b = B[lo:hi]
        top = (np.argpartition(-np.abs(b), k - 1, axis=1)[:, :k] if k < len(used)
               else np.broadcast_to(np.arange(len(used)), b.shape))
        val = np.take_along_axis(b, top, 1)
        order = np.lexsort((top, -np.abs(val)), axis=1)
        top, val = np.take_along_axis(top, order, 1), np.take_along_axis(val, order, 1)
        nz = val != 0
        idx[used[lo:hi], :k] = np.where(nz, used[top], n_items)
        weight[used[lo:hi], :k] = np.where(nz, val, 0.0)
    return idx, weight
