"""The user–item graph GraphSAGE runs on, and its neighbour sampler (NumPy, no TensorFlow).

    Graph.build(data, train, event_weights)   both orientations as CSR: user_items, item_users;
                                              an edge per (user, item) pair, weighted by log1p
                                              of the pair's summed event weights (as MF's pairs)
    sample_neighbours(indptr, nbrs, w, nodes, fanout, rng)
                                              [n, fanout] neighbours (-1 pads) and weights

Items without events have no edges: they are reached through their feature tokens (the
layer-0 vector of every item is its id vector plus the mean of its token vectors), so a cold
item still gets an embedding (models.graphsage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from models.tower_data import TowerData


@dataclass(frozen=True)
class Graph:
    """The weighted bipartite graph of the train side.

    Attributes:
        n_users, n_items: node counts (users: TowerData's train users in sorted id order;
            items: TowerData.items, cold items included, without edges).
        user_indptr [n_users + 1], user_items [E] int32, user_w [E] float32: each user's items.
        item_indptr [n_items + 1], item_users [E] int32, item_w [E] float32: each item's users.
    """

    n_users: int
    n_items: int
    user_indptr: np.ndarray
    user_items: np.ndarray
    user_w: np.ndarray
    item_indptr: np.ndarray
    item_users: np.ndarray
    item_w: np.ndarray

    @classmethod
    def from_edges(cls, u: np.ndarray, i: np.ndarray, w: np.ndarray, n_users: int,
                   n_items: int) -> Graph:
        """The graph of edges (u [E], i [E], w [E]); one edge per pair expected."""
        by_user = np.lexsort((i, u))
        by_item = np.lexsort((u, i))
        return cls(n_users, n_items,
                   _indptr(u, n_users), i[by_user].astype(np.int32),
                   w[by_user].astype(np.float32),
                   _indptr(i, n_items), u[by_item].astype(np.int32),
                   w[by_item].astype(np.float32))

    @classmethod
    def build(cls, data: TowerData, train: pd.DataFrame,
              event_weights: Mapping[str, float] | None = None) -> Graph:
        """The graph of `data`'s pairs, each weighted log1p(sum of its events' weights)
        (models.vocab.interaction_weights: an event's `weight`, else its type's).

        Args:
            data: models.tower_data.prepare of `train` (items, users in sorted id order).
            train: the same train side's interactions.
            event_weights: event type -> weight (None: the schema's defaults).
        """
        import pandas as pd

        from models.vocab import interaction_weights

        names = np.unique(train["user_id"].astype(str).to_numpy())  # TowerData's user order
        u = np.searchsorted(names, train["user_id"].astype(str).to_numpy())
        i = data.items.lookup(train["item_id"].astype(str).to_numpy())
        pairs = (pd.DataFrame({"u": u, "i": i, "w": interaction_weights(train, event_weights)})
                 .groupby(["u", "i"], as_index=False, sort=False)["w"].sum())
        pu, pi = pairs["u"].to_numpy(np.int64), pairs["i"].to_numpy(np.int64)
        w = np.log1p(np.maximum(pairs["w"].to_numpy(np.float64), 0.0))
        return cls.from_edges(pu, pi, w, len(names), len(data.items))

    def adjacency(self, side: str):
        """Row-normalised weighted adjacency (scipy CSR): "item" [n_items, n_users] (an item's
        users) or "user" [n_users, n_items]; a row without edges is all zeros."""
        from scipy.sparse import csr_matrix

        if side == "item":
            indptr, cols, w, shape = (self.item_indptr, self.item_users, self.item_w,
                                      (self.n_items, self.n_users))
        else:
            indptr, cols, w, shape = (self.user_indptr, self.user_items, self.user_w,
                                      (self.n_users, self.n_items))
        rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
        sums = np.bincount(rows, weights=w, minlength=shape[0])
        norm = w / np.where(sums > 0, sums, 1.0)[rows]
        return csr_matrix((norm.astype(np.float32), cols, indptr), shape=shape)


def _indptr(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)


def sample_neighbours(indptr: np.ndarray, nbrs: np.ndarray, w: np.ndarray, nodes: np.ndarray,
                      fanout: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Up to `fanout` neighbours of each node: all of them when it has at most `fanout`,
    else `fanout` drawn uniformly with replacement (GraphSAGE's fixed-size sample: the
    weighted mean over the sample is an unbiased estimate of the full one's numerator and
    denominator).

    Args:
        indptr: [n + 1] CSR row starts; nbrs: [E] neighbour indices; w: [E] edge weights.
        nodes: [...] node indices; -1 (no node) gets no neighbours.
        fanout: neighbours per node.

    Returns:
        (neighbours [..., fanout] int32, -1 pads; weights [..., fanout] float32, 0 pads).
    """
    shape = nodes.shape
    flat = nodes.reshape(-1)
    valid = flat >= 0
    safe = np.where(valid, flat, 0)
    start = indptr[safe]
    deg = np.where(valid, indptr[safe + 1] - start, 0)
    j = np.arange(fanout)[None, :]
    drawn = (rng.random((len(flat), fanout)) * np.maximum(deg, 1)[:, None]).astype(np.int64)
    pos = np.where((deg > fanout)[:, None], drawn, j)
    take = (pos < deg[:, None])
    edge = np.where(take, start[:, None] + pos, 0)
    out = np.where(take, nbrs[edge] if len(nbrs) else -1, -1).astype(np.int32)
    wt = np.where(take, w[edge] if len(w) else 0.0, 0.0).astype(np.float32)
    return out.reshape(*shape, fanout), wt.reshape(*shape, fanout)
