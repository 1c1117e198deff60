"""Baselines under the temporal-holdout protocol: popularity, recent popularity, item-kNN.

Each implements `models.evaluation.Recommender`: it ranks the train catalog, ordered by
`natural_key` so that ties among equal scores go to the smaller item id, history excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.schema import SECONDS_PER_DAY, natural_key

try:  # scipy ships with the `peers` extra; the dense NumPy path below covers its absence
    import scipy.sparse as sp
except ImportError:  # pragma: no cover - exercised only where scipy is missing
    sp = None


def top_k_indices(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Top-k column indices per row, best first, ties by the smaller index; -inf never returned.

    Args:
        scores: [num_users, num_items] float; -inf marks excluded items.
        k: list length.

    Returns:
        num_users int arrays of length <= k.
    """
    n_items = scores.shape[1]
    k = min(k, n_items)
    if k == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(scores.shape[0])]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    out = []
    for row, threshold in zip(scores, kth, strict=True):
        above = np.flatnonzero(row > threshold)
        tied = np.flatnonzero(row == threshold)[: k - above.size]
        idx = np.concatenate([above, tied])
        idx = idx[row[idx] > -np.inf]
        out.append(idx[np.lexsort((idx, -row[idx]))])
    return out


@dataclass
class Catalog:
    """The train catalog in natural order: `ids[j]` is column j, `index[id] = j`."""

    ids: np.ndarray
    index: dict[str, int] = field(repr=False)

    @classmethod
    def from_items(cls, item_ids) -> Catalog:
        ids = np.array(sorted(set(map(str, item_ids)), key=natural_key), dtype=object)
        return cls(ids, {item: j for j, item in enumerate(ids)})

    def columns(self, items) -> list[int]:
        """Columns of the known items among `items` (unknown ones dropped)."""
        return [self.index[i] for i in items if i in self.index]

    def history_matrix(self, histories: list[list[str]]) -> np.ndarray:
        """Binary [num_users, num_items] float32 matrix of the histories."""
        h = np.zeros((len(histories), len(self.ids)), dtype=np.float32)
        for row, items in enumerate(histories):
            h[row, self.columns(items)] = 1.0
        return h

    def top_k(self, scores: np.ndarray, histories: list[list[str]], k: int) -> list[list[str]]:
        """Item ids of the top k per row of `scores` [num_users, num_items], history excluded."""
        scores = np.array(scores, dtype=np.float64)
        for row, items in enumerate(histories):
            scores[row, self.columns(items)] = -np.inf
        return [list(self.ids[idx]) for idx in top_k_indices(scores, k)]


class ScoredRecommender:
    """Base of the catalog-scoring recommenders (the baselines and models/peers.py): subclasses
    set `self.catalog` in fit and implement `scores`; `recommend` is shared."""

    name = "scored"
    catalog: Catalog

    def scores(self, histories: list[list[str]], fresh: bool) -> np.ndarray:
        """Returns: [num_users, num_items] scores over `self.catalog.ids`, higher is better."""
        raise NotImplementedError

    def recommend(self, user_ids: list[str], histories: list[list[str]], k: int,
                  fresh: bool) -> list[list[str]]:
        return self.catalog.top_k(self.scores(histories, fresh), histories, k)


def _counts(train: pd.DataFrame, catalog: Catalog) -> np.ndarray:
    """Train events per catalog item. Returns: [num_items] float64."""
    counts = train["item_id"].astype(str).value_counts()
    return counts.reindex(catalog.ids).fillna(0).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class PopularityConfig:
    """Popularity has no hyperparameters: the score is the train event count."""


class Popularity(ScoredRecommender):
    """Ranks items by their number of train events."""

    name = "popularity"

    def __init__(self, config: PopularityConfig = PopularityConfig()):
        self.config = config

    def fit(self, train, users=None, items=None) -> Popularity:
        self.catalog = Catalog.from_items(train["item_id"])
        self.popularity = _counts(train, self.catalog)
        return self

    def scores(self, histories, fresh):
        return np.tile(self.popularity, (len(histories), 1))


@dataclass(frozen=True)
class RecentPopularityConfig:
    window_days: float = 14.0  # counted back from the last train event


class RecentPopularity(Popularity):
    """Event count in the last `window_days` of train; overall popularity breaks ties and fills."""

    name = "recent_popularity"

    def __init__(self, config: RecentPopularityConfig = RecentPopularityConfig()):
        self.config = config

    def fit(self, train, users=None, items=None) -> RecentPopularity:
        super().fit(train)
        start = train["timestamp"].max() - self.config.window_days * SECONDS_PER_DAY
        recent = _counts(train[train["timestamp"] >= start], self.catalog)
        # Recent count first; overall popularity (scaled into [0, 1)) breaks its ties and
        # orders the items without recent events, which fill the list after the recent ones.
        self.popularity = recent + self.popularity / (self.popularity.max() + 1.0)
        return self


@dataclass(frozen=True)
class ItemKNNConfig:
    neighbors: int | None = None  # keep the n most similar items per item; None keeps all
    shrink: float = 0.0  # cosine = dot / (|i| |j| + shrink)


class ItemKNN(ScoredRecommender):
    """Cosine similarity between items' binary user vectors, summed over the history."""

    name = "item_knn"

    def __init__(self, config: ItemKNNConfig = ItemKNNConfig()):
        self.config = config

    def fit(self, train, users=None, items=None) -> ItemKNN:
        self.catalog = Catalog.from_items(train["item_id"])
        pairs = train[["user_id", "item_id"]].astype(str).drop_duplicates()
        rows = pd.factorize(pairs["user_id"])[0]
        cols = pairs["item_id"].map(self.catalog.index).to_numpy()
        shape = (rows.max() + 1, len(self.catalog.ids))
        if sp is None:
            user_items = np.zeros(shape, dtype=np.float32)
            user_items[rows, cols] = 1.0
            self.similarity = _dense_cosine(user_items, self.config)
        else:
            user_items = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape)
            self.similarity = _sparse_cosine(user_items, self.config)
        return self

    def scores(self, histories, fresh):
        h = self.catalog.history_matrix(histories)
        if sp is None:
            return h @ self.similarity
        return (sp.csr_matrix(h) @ self.similarity).toarray()


def _dense_cosine(user_items: np.ndarray, config: ItemKNNConfig) -> np.ndarray:
    """Item-item cosine of a binary [num_users, num_items] matrix. Returns [num_items]^2."""
    co = user_items.T @ user_items
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + config.shrink)
    np.fill_diagonal(sim, 0.0)
    n = config.neighbors
    if n is not None and n < sim.shape[1]:
        np.put_along_axis(sim, np.argpartition(-sim, n, axis=1)[:, n:], 0.0, axis=1)
    return sim.astype(np.float32)


def _sparse_cosine(user_items, config: ItemKNNConfig):
    """`_dense_cosine` with scipy.sparse: memory grows with co-occurrences, not items^2."""
    co = (user_items.T @ user_items).tocoo()
    norms = np.sqrt(user_items.sum(axis=0).A1)  # binary: |i|^2 = number of users
    keep = co.row != co.col
    r, c = co.row[keep], co.col[keep]
    data = co.data[keep] / (norms[r] * norms[c] + config.shrink)
    sim = sp.csr_matrix((data.astype(np.float32), (r, c)), shape=co.shape)
    n = config.neighbors
    if n is not None:
        for i in range(sim.shape[0]):
            lo, hi = sim.indptr[i], sim.indptr[i + 1]
            if hi - lo > n:
                row = sim.data[lo:hi]
                row[np.argpartition(-row, n)[n:]] = 0.0
        sim.eliminate_zeros()
    return sim
