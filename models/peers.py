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

from models.baselines import ScoredRecommender
from models.histories import id_multi_hot


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 1000.0  # lambda on the diagonal of the Gram matrix


# Above this many items the closed form runs in float32 (its Gram matrix and inverse are
# items^2 x 4 bytes: 1.6 GB at 20,000 items) instead of float64.
EASE_FLOAT64_MAX = 8000


def ease_weights(user_items, l2: float) -> np.ndarray:
    """EASE's closed form (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X'X + l2 I)^-1,
    diagonal 0. Scores of a history x (multi-hot) are x @ B.

    The Gram matrix is filled a block of columns at a time and inverted in place through
    LAPACK's Cholesky (potrf, potri: X'X + l2 I is symmetric positive definite), so the
    memory is one dense [n, n] matrix: float64 up to EASE_FLOAT64_MAX items, float32 above
    (1.6 GB at 20,000 items).

    Args:
        user_items: [num_users, n] binary scipy sparse matrix.
        l2: lambda added to the Gram matrix's diagonal (> 0).

    Returns:
        B [n, n] float32; B[i, j] is the weight of history item i in candidate j's score.
    """
    from scipy.linalg import lapack

    if not l2 > 0:
        raise ValueError(f"EASE l2 {l2!r}: must be > 0 (the Gram matrix is singular without it)")
    import scipy.sparse as sp

    n = user_items.shape[1]
    dtype = np.float64 if n <= EASE_FLOAT64_MAX else np.float32
    X = sp.csc_matrix(user_items, dtype=np.float32)
    gram = np.empty((n, n), dtype, order="F")
    block = max(1, int(2e7 // max(n, 1)))  # columns at a time: the sparse product's ~80 MB
    for lo in range(0, n, block):
        gram[:, lo:lo + block] = (X.T @ X[:, lo:lo + block]).toarray()
    gram[np.diag_indices_from(gram)] += l2
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    c, info = potrf(gram, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        c, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"EASE: the Gram matrix is not positive definite (LAPACK info {info})"
                         "; raise l2")
    block = 1024  # potri fills the upper triangle only: mirror it, a block of rows at a time
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        c[lo:hi, :lo] = c[:lo, lo:hi].T
        d = c[lo:hi, lo:hi]
        c[lo:hi, lo:hi] = np.triu(d) + np.triu(d, 1).T
    c = c.T  # symmetric now: its C-ordered view, so that the float32 result is not copied
    diag = np.diag(c).copy()
    c /= -diag[None, :]  # column j divided by -P_jj
    np.fill_diagonal(c, 0.0)
    return np.ascontiguousarray(c, np.float32)


class EASE(ScoredRecommender):
    """Embarrassingly shallow autoencoder (Steck 2019): B = I - P diagMat(1 / diag(P))."""

    name = "ease"
    config_class = EASEConfig

    def fit(self, train, users=None, items=None) -> EASE:
        user_items, _ = self.fit_catalog(train)
        self.weights = ease_weights(user_items, self.config.l2)  # [num_items, num_items]
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

    def user_scores(self, user_ids, histories, fresh):
        """Warm users by their fitted factors, others by fold-in (what `recommend` and
        `score` rank)."""
        if fresh or any(u not in self.user_rows for u in user_ids):
            vectors = self.fold_in(histories)
        else:
            vectors = self.model.user_factors[[self.user_rows[u] for u in user_ids]]
        return vectors @ self.model.item_factors.T


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
