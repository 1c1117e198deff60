"""The peers the product is evaluated against: EASE, and implicit's ALS and BPR.

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --models ease,als,bpr

EASE needs only NumPy and SciPy. ALS and BPR need the `peers` extra (`pip install
'recsys[peers]'`, the `implicit` package); `missing_requirement` names what a peer lacks, so
`recsys evaluate` can say how to install it instead of failing in the middle of a run. Their
published figures on MovieLens 100K are in ../shared/EVALUATION.md (docs/EVALUATION_RESULTS.md
compares ours).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

import numpy as np

from models.baselines import ScoredRecommender, top_k_ids
from models.histories import id_multi_hot


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 1000.0  # lambda on the diagonal of the Gram matrix


class EASE(ScoredRecommender):
    """Embarrassingly shallow autoencoder (Steck 2019): B = I - P diagMat(1 / diag(P))."""

    name = "ease"
    config_class = EASEConfig

    def fit(self, train, users=None, items=None) -> EASE:
        user_items, _ = self.fit_catalog(train)
        gram = (user_items.T @ user_items).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.config.l2
        p = np.linalg.inv(gram)
        b = p / -np.diag(p)  # column j divided by -P_jj
        np.fill_diagonal(b, 0.0)
        self.weights = b.astype(np.float32)  # [num_items, num_items]
        return self

    def scores(self, histories, fresh):
        return id_multi_hot(self.catalog, histories) @ self.weights


@dataclass(frozen=True)
class ALSConfig:
    """Keyword arguments of implicit's AlternatingLeastSquares."""

    factors: int = 32
    regularization: float = 1.0
    alpha: float = 1.0
    iterations: int = 15
    random_state: int = 0


@dataclass(frozen=True)
class BPRConfig:
    """Keyword arguments of implicit's BayesianPersonalizedRanking."""

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    random_state: int = 0


class _ImplicitMF(ScoredRecommender):
    """Scores = user factors . item factors; warm users by their fitted row, fresh by fold-in."""

    requires = "implicit"  # the `peers` extra
    config_class: type  # ALSConfig or BPRConfig: the implicit model's keyword arguments
    implicit_class: str  # "module:Class" of the implicit model

    def _build(self):
        module, name = self.implicit_class.split(":")
        model = getattr(importlib.import_module(module), name)
        return model(**asdict(self.config), num_threads=1)

    def fit(self, train, users=None, items=None):
        from threadpoolctl import threadpool_limits

        self.user_items, user_ids = self.fit_catalog(train)
        self.user_rows = {u: r for r, u in enumerate(user_ids)}
        self.model = self._build()
        with threadpool_limits(1, "blas"):  # implicit is slow with a threaded BLAS
            self.model.fit(self.user_items, show_progress=False)
        return self

    def fold_in(self, histories: list[list[str]]) -> np.ndarray:
        """User factors of unseen users from their histories. Returns [num_users, dim]."""
        raise NotImplementedError

    def recommend(self, user_ids, histories, k, fresh):
        if fresh or any(u not in self.user_rows for u in user_ids):
            vectors = self.fold_in(histories)
        else:
            vectors = self.model.user_factors[[self.user_rows[u] for u in user_ids]]
        return top_k_ids(self.catalog, vectors @ self.model.item_factors.T, histories, k)


class ImplicitALS(_ImplicitMF):
    """implicit's ALS; fresh users by its `recalculate_user` least-squares fold-in."""

    name = "als"
    config_class = ALSConfig
    implicit_class = "implicit.cpu.als:AlternatingLeastSquares"

    def fold_in(self, histories):
        import scipy.sparse as sp

        h = sp.csr_matrix(id_multi_hot(self.catalog, histories))
        return self.model.recalculate_user(np.arange(len(histories)), h)


class ImplicitBPR(_ImplicitMF):
    """implicit's BPR; it has no fold-in, so a fresh user is the mean of its history items'
    factors (the last column, the item bias, gets the user's constant 1)."""

    name = "bpr"
    config_class = BPRConfig
    implicit_class = "implicit.cpu.bpr:BayesianPersonalizedRanking"

    def fold_in(self, histories):
        h = id_multi_hot(self.catalog, histories)
        counts = np.maximum(h.sum(axis=1, keepdims=True), 1.0)
        vectors = (h @ self.model.item_factors) / counts
        vectors[:, -1] = 1.0
        return vectors


PEERS = {"ease": EASE, "als": ImplicitALS, "bpr": ImplicitBPR}


def missing_requirement(factory) -> str | None:
    """The optional package a model factory needs and this environment lacks, or None.

    Args:
      factory: a model class (or any factory); classes name their package in `requires`.

    Returns:
      e.g. "implicit" for ImplicitALS without the `peers` extra installed.
    """
    package = getattr(factory, "requires", None)
    if package and importlib.util.find_spec(package) is None:
        return package
    return None
