"""Baselines under the temporal-holdout protocol: popularity, recent popularity, item-kNN.

Each implements `models.evaluation.Recommender`: it ranks the train catalog, ordered by
`natural_key` so that ties among equal scores go to the smaller item id, history excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.histories import id_multi_hot, user_item_matrix
from models.schema import SECONDS_PER_DAY
from models.vocab import Vocab


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


def top_k_ids(items: Vocab, scores: np.ndarray, histories: list[list[str]], k: int
              ) -> list[list[str]]:
    """Item ids of the top k per row of `scores`, each row's history excluded.

    Args:
        items: the columns' vocabulary.
        scores: [num_users, len(items)], higher is better.
        histories: item ids per user (unknown ones ignored).
        k: list length.
    """
    scores = np.array(scores, dtype=np.float64)
    for row, history in enumerate(histories):
        scores[row, items.known(history)] = -np.inf
    return [list(items.ids[idx]) for idx in top_k_indices(scores, k)]


def candidate_indices(items: Vocab, candidates: list[list[str]]) -> np.ndarray:
    """[B, C] int64 indices of the candidates in `items`, -1 for unknown ids (each row C)."""
    if not candidates:
        return np.zeros((0, 0), np.int64)
    return np.stack([items.lookup(row) for row in candidates])


def scores_at(items: Vocab, scores: np.ndarray, candidates: list[list[str]]) -> np.ndarray:
    """Scores of the candidates read from full-catalog scores.

    Args:
        items: the columns' vocabulary.
        scores: [B, len(items)] scores.
        candidates: B lists of C item ids.

    Returns:
        [B, C] float64, -inf where a candidate is not in `items`.
    """
    idx = candidate_indices(items, candidates)
    got = np.take_along_axis(np.asarray(scores, np.float64), np.maximum(idx, 0), axis=1)
    return np.where(idx >= 0, got, -np.inf)


def dot_scores(items: Vocab, queries: np.ndarray, item_vectors: np.ndarray,
               candidates: list[list[str]]) -> np.ndarray:
    """Inner products of each query with its candidates' vectors (the retrieval score).

    Args:
        items: the vocabulary of `item_vectors`' rows.
        queries: [B, d] user vectors.
        item_vectors: [num_items, d].
        candidates: B lists of C item ids.

    Returns:
        [B, C] float64, -inf where a candidate is not in `items`.
    """
    idx = candidate_indices(items, candidates)
    vectors = np.asarray(item_vectors, np.float64)[np.maximum(idx, 0)]  # [B, C, d]
    got = np.einsum("bd,bcd->bc", np.asarray(queries, np.float64), vectors)
    return np.where(idx >= 0, got, -np.inf)


class ScoredRecommender:
    """Base of the catalog-scoring recommenders (the baselines and models/peers.py): subclasses
    name their `config_class`, set `self.catalog` in fit and implement `scores`; `recommend`
    is shared.

    Args:
        config: an instance of `config_class` (None: its defaults).
    """

    name = "scored"
    config_class: type
    catalog: Vocab

    def __init__(self, config=None):
        self.config = self.config_class() if config is None else config

    def fit_catalog(self, train: pd.DataFrame) -> tuple[sp.csr_matrix, np.ndarray]:
        """Sets `self.catalog` to the train items; returns the train pairs as a binary
        [num_users, num_items] CSR and its users' ids (models.histories.user_item_matrix)."""
        self.catalog = Vocab.build(train["item_id"])
        return user_item_matrix(train, self.catalog)

    def scores(self, histories: list[list[str]], fresh: bool) -> np.ndarray:
        """Returns: [num_users, num_items] scores over `self.catalog.ids`, higher is better."""
        raise NotImplementedError

    def user_scores(self, user_ids: list[str], histories: list[list[str]], fresh: bool
                    ) -> np.ndarray:
        """`scores` for models that also read the user ids (warm users' own factors): what
        `recommend` and `score` rank. Returns: [num_users, num_items]."""
        return self.scores(histories, fresh)

    def recommend(self, user_ids: list[str], histories: list[list[str]], k: int,
                  fresh: bool) -> list[list[str]]:
        return top_k_ids(self.catalog, self.user_scores(user_ids, histories, fresh),
                         histories, k)

    def score(self, user_ids: list[str], histories: list[list[str]],
              candidates: list[list[str]], fresh: bool) -> np.ndarray:
        """The catalog scores at the candidates (models.evaluation_loo.ScoringRecommender).
        Returns: [num_users, C], -inf for an item outside the train catalog."""
        return scores_at(self.catalog, self.user_scores(user_ids, histories, fresh),
                         candidates)


def _counts(train: pd.DataFrame, catalog: Vocab) -> np.ndarray:
    """Train events per catalog item. Returns: [num_items] float64."""
    counts = train["item_id"].astype(str).value_counts()
    return counts.reindex(catalog.ids).fillna(0).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class PopularityConfig:
    """Popularity has no hyperparameters: the score is the train event count."""


class Popularity(ScoredRecommender):
    """Ranks items by their number of train events."""

    name = "popularity"
    config_class = PopularityConfig

    def fit(self, train, users=None, items=None) -> Popularity:
        self.catalog = Vocab.build(train["item_id"])
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
    config_class = RecentPopularityConfig

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
    config_class = ItemKNNConfig

    def fit(self, train, users=None, items=None) -> ItemKNN:
        user_items, _ = self.fit_catalog(train)
        self.similarity = _cosine(user_items, self.config)
        return self

    def scores(self, histories, fresh):
        return (sp.csr_matrix(id_multi_hot(self.catalog, histories)) @ self.similarity).toarray()


def _cosine(user_items: sp.csr_matrix, config: ItemKNNConfig) -> sp.csr_matrix:
    """Item-item cosine of a binary [num_users, num_items] matrix, the diagonal left out, each
    row cut to its `config.neighbors` largest. Returns [num_items, num_items] CSR (memory grows
    with co-occurrences, not items^2)."""
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
