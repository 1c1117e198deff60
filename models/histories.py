"""History encodings: a user's items in the forms the models read, each written once.

    history_matrix(histories, width)  [n, width] int32: the last `width` item indices,
                                      right-aligned, -1 pads (the towers, the ranker, MF's
                                      LiteRT tower)
    multi_hot(histories, n_items)     [n, n_items] float32: 1 where a history holds the item
                                      (item-kNN, EASE, the implicit peers' fold-in);
    id_multi_hot(items, id_lists)     the same from ids through a Vocab (unknown ids dropped)
    user_item_matrix(train, items)    binary scipy CSR [num_users, num_items] of the distinct
                                      train pairs (item-kNN, EASE, ALS, BPR)
    history_csr(clean, users, items)  (indptr, items): each user's distinct items in order of
                                      first event (the bundles' warm histories, MF's seen items)
    to_csr(lists) / csr_rows(...)     lists of item indices to and from (indptr, items)

Histories are item indices, oldest first; ids become indices through a models.vocab.Vocab.
Module-level imports: NumPy only (the functions encode their requests with this module).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from models.vocab import Vocab

HISTORY = 50  # items of a fresh user's history MF's LiteRT user tower takes (models.export)


def history_matrix(histories: list[np.ndarray], width: int) -> np.ndarray:
    """Each history's last `width` item indices, right-aligned.

    Args:
        histories: item indices per user, oldest first.
        width: H.

    Returns:
        [num_users, H] int32, -1 pads on the left.
    """
    out = np.full((len(histories), width), -1, np.int32)
    for r, h in enumerate(histories):
        tail = np.asarray(h, np.int64)[-width:]
        if len(tail):
            out[r, width - len(tail):] = tail
    return out


def multi_hot(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """Binary rows: 1 where a history holds the item (repeats count once, -1 is ignored).

    Args:
        histories: item indices per user.
        n_items: the number of columns.

    Returns:
        [num_users, n_items] float32.
    """
    out = np.zeros((len(histories), n_items), np.float32)
    for r, h in enumerate(histories):
        h = np.asarray(h, np.int64)
        out[r, h[h >= 0]] = 1.0
    return out



def id_multi_hot(items: Vocab, histories: Iterable[Iterable]) -> np.ndarray:
    """multi_hot of id lists: ids `items` does not know are dropped."""
    return multi_hot([items.lookup(h) for h in histories], len(items))

def user_item_matrix(train: pd.DataFrame, items: Vocab):
    """The distinct (user, item) pairs of `train` as a binary scipy CSR matrix.

    Args:
        train: interactions (user_id, item_id); every item must be in `items`.
        items: the item vocabulary (the columns).

    Returns:
        (CSR [num_users, len(items)] float32, user ids [num_users] in order of first
        appearance in `train`: row r is user_ids[r]).
    """
    import pandas as pd
    import scipy.sparse as sp

    pairs = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    rows, user_ids = pd.factorize(pairs["user_id"])
    cols = items.lookup(pairs["item_id"])
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                           shape=(len(user_ids), len(items)))
    return matrix, np.asarray(user_ids, dtype=object)


def history_csr(clean: pd.DataFrame, users: Vocab, items: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct items in order of first event, as the evaluation's warm cases see
    them (unknown ids dropped).

    Returns:
        (indptr [len(users) + 1], items [nnz]) int64: user u's items are
        items[indptr[u]:indptr[u + 1]].
    """
    u = users.lookup(clean["user_id"])
    i = items.lookup(clean["item_id"])
    t = clean["timestamp"].to_numpy(np.int64)
    keep = np.flatnonzero((u >= 0) & (i >= 0))
    u, i = u[keep], i[keep]
    # Event order (timestamp, then user and item id: a Vocab's index order is the ids' natural
    # order, as in models.evaluation.event_order); each (user, item) pair's first event.
    order = np.lexsort((i, u, t[keep]))
    _, first = np.unique(u[order] * len(items) + i[order], return_index=True)
    first = order[np.sort(first)]  # positions of the first events, in event order
    by_user = first[np.argsort(u[first], kind="stable")]  # each user's items still in order
    indptr = np.searchsorted(u[by_user], np.arange(len(users) + 1))
    return indptr.astype(np.int64), i[by_user].astype(np.int64)


def to_csr(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of item indices as (indptr [len(lists) + 1], items [nnz]) int64."""
    indptr = np.cumsum([0] + [len(s) for s in lists]).astype(np.int64)
    flat = np.concatenate([np.asarray(s, np.int64) for s in lists] + [np.zeros(0, np.int64)])
    return indptr, flat


def csr_rows(indptr: np.ndarray, items: np.ndarray, rows: range | np.ndarray
             ) -> list[np.ndarray]:
    """The lists of `rows` (a contiguous range is sliced at once, an index array gathered)."""
    if isinstance(rows, range) and rows.step == 1 and len(rows):
        lo, hi = rows.start, rows.stop
        return np.split(items[indptr[lo]:indptr[hi]], indptr[lo + 1:hi] - indptr[lo])
    return [items[indptr[r]:indptr[r + 1]] for r in rows]
