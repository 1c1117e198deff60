"""Peer models under the temporal-holdout protocol: implicit's ALS and BPR, and EASE.

    python -m benchmarks.peers --dataset movielens:../shared/datasets/ml-100k --json peers.json

Needs the `peers` extra (`pip install -e '.[peers]'`: implicit, scipy). Prints each model's
figures beside the ones EVALUATION.md reports from an independent implementation.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.baselines import Catalog, ScoredRecommender

# EVALUATION.md: warm, fresh, all NDCG@10, all Recall@20, all HR@10, coverage@10, long-tail.
REFERENCE = {
    "popularity": (0.1457, 0.4022, 0.3093, 0.2874, 0.7841, 0.047, 0.000),
    "recent_popularity": (0.2337, 0.3780, 0.3257, 0.3240, 0.8505, 0.041, 0.004),
    "item_knn": (0.1423, 0.4634, 0.3471, 0.3045, 0.7342, 0.121, 0.023),
    "ease": (0.1691, 0.4092, 0.3222, 0.2891, 0.7807, 0.152, 0.019),
    "als": (0.1721, 0.3744, 0.3011, 0.2699, 0.7508, 0.238, 0.077),
    "bpr": (0.0992, 0.2779, 0.2132, 0.1866, 0.6346, 0.481, 0.397),
}


def _user_items(train: pd.DataFrame, catalog: Catalog):
    """Binary CSR [num_users, num_items] of distinct train pairs and the user id -> row map."""
    import scipy.sparse as sp

    pairs = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    rows, user_ids = pd.factorize(pairs["user_id"])
    cols = pairs["item_id"].map(catalog.index).to_numpy()
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                           shape=(len(user_ids), len(catalog.ids)))
    return matrix, {u: r for r, u in enumerate(user_ids)}


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 1000.0  # lambda on the diagonal of the Gram matrix


class EASE(ScoredRecommender):
    """Embarrassingly shallow autoencoder (Steck 2019): B = I - P diagMat(1 / diag(P))."""

    name = "ease"

    def __init__(self, config: EASEConfig = EASEConfig()):
        self.config = config

    def fit(self, train, users=None, items=None) -> EASE:
        self.catalog = Catalog.from_items(train["item_id"])
        user_items, _ = _user_items(train, self.catalog)
        gram = (user_items.T @ user_items).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.config.l2
        p = np.linalg.inv(gram)
        b = p / -np.diag(p)  # column j divided by -P_jj
        np.fill_diagonal(b, 0.0)
        self.weights = b.astype(np.float32)  # [num_items, num_items]
        return self

    def scores(self, histories, fresh):
        return self.catalog.history_matrix(histories) @ self.weights


@dataclass(frozen=True)
class ALSConfig:
    factors: int = 32
    regularization: float = 1.0
    alpha: float = 1.0
    iterations: int = 15
    seed: int = 0


@dataclass(frozen=True)
class BPRConfig:
    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 0


class _ImplicitMF(ScoredRecommender):
    """Scores = user factors . item factors; warm users by their fitted row, fresh by fold-in."""

    def _build(self):
        raise NotImplementedError

    def fit(self, train, users=None, items=None):
        from threadpoolctl import threadpool_limits

        self.catalog = Catalog.from_items(train["item_id"])
        self.user_items, self.user_rows = _user_items(train, self.catalog)
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
        return self.catalog.top_k(vectors @ self.model.item_factors.T, histories, k)


class ImplicitALS(_ImplicitMF):
    """implicit's ALS; fresh users by its `recalculate_user` least-squares fold-in."""

    name = "als"

    def __init__(self, config: ALSConfig = ALSConfig()):
        self.config = config

    def _build(self):
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        return AlternatingLeastSquares(factors=c.factors, regularization=c.regularization,
                                       alpha=c.alpha, iterations=c.iterations,
                                       random_state=c.seed, num_threads=1)

    def fold_in(self, histories):
        import scipy.sparse as sp

        h = sp.csr_matrix(self.catalog.history_matrix(histories))
        return self.model.recalculate_user(np.arange(len(histories)), h)


class ImplicitBPR(_ImplicitMF):
    """implicit's BPR; it has no fold-in, so a fresh user is the mean of its history items'
    factors (the last column, the item bias, gets the user's constant 1)."""

    name = "bpr"

    def __init__(self, config: BPRConfig = BPRConfig()):
        self.config = config

    def _build(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        return BayesianPersonalizedRanking(factors=c.factors, learning_rate=c.learning_rate,
                                           regularization=c.regularization,
                                           iterations=c.iterations, random_state=c.seed,
                                           num_threads=1)

    def fold_in(self, histories):
        h = self.catalog.history_matrix(histories)
        counts = np.maximum(h.sum(axis=1, keepdims=True), 1.0)
        vectors = (h @ self.model.item_factors) / counts
        vectors[:, -1] = 1.0
        return vectors


PEERS = {"ease": EASE, "als": ImplicitALS, "bpr": ImplicitBPR}


def comparison_table(report: dict) -> str:
    """Markdown rows: each model's figures, then EVALUATION.md's where it has them."""
    head = ("| model | warm NDCG@10 | fresh NDCG@10 | all NDCG@10 | all Recall@20 | all HR@10 "
            "| coverage@10 | long-tail cov.@10 |")
    lines = [head, "|---" * 8 + "|"]
    for name, m in report["models"].items():
        ours = (m["warm"]["ndcg@10"], m["fresh"]["ndcg@10"], m["all"]["ndcg@10"],
                m["all"]["recall@20"], m["all"]["hr@10"], m["coverage@10"],
                m["longtail_coverage@10"])
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in ours) + " |")
        if name in REFERENCE:
            lines.append(f"| {name} (EVALUATION.md) | "
                         + " | ".join(f"{v:.4f}" for v in REFERENCE[name]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    from batch.evaluate import MODEL_REGISTRY, run_evaluation
    from infra.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=os.environ.get("RECSYS_DATASET"))
    parser.add_argument("--models", default="ease,als,bpr",
                        help=f"comma-separated, from {sorted({**MODEL_REGISTRY, **PEERS})}")
    parser.add_argument("--json", default=None)
    parser.add_argument("--report-dir", default=None)
    args = parser.parse_args(argv)
    if not args.dataset:
        parser.error("--dataset (or RECSYS_DATASET) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_evaluation(load_dataset(args.dataset), args.models.split(","), args.json,
                            args.report_dir, registry={**MODEL_REGISTRY, **PEERS})
    print(comparison_table(report))  # noqa: T201 - the benchmark's output
    return report


if __name__ == "__main__":
    main()
