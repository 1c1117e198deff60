"""Retrieval -> rules, the one code path for warm users (batch) and fresh users (online)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.mf import MFConfig, MFModel, train_mf
from models.topk import build_flat_index, faiss_topk


def retrieve(index, xq: np.ndarray, k: int,
             seen: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Faiss top-k with seen items excluded by the business rules (models.rules).

    Args:
        index: Faiss inner-product index over the item vectors.
        xq: [num_queries, dim] query vectors.
        k: list length.
        seen: per query, item indices to exclude.

    Returns:
        (items [num_queries, k] int64, -1 padded; scores [num_queries, k] float32).
    """
    return faiss_topk(index, xq, k, seen)


class MFRecommender:
    """MF served as production serves it: warm users by their trained vectors (the nightly
    precompute), fresh users by fold-in of their recent items (the on-demand path)."""

    name = "mf"

    def __init__(self, config: MFConfig = MFConfig()):
        self.config = config
        self.model: MFModel | None = None

    def fit(self, train: pd.DataFrame, users=None, items=None) -> MFRecommender:
        self.model = train_mf(train, self.config)
        self.index = build_flat_index(self.model.item_vectors())
        return self

    def recommend(self, user_ids: list[str], histories: list[list[str]], k: int,
                  fresh: bool) -> list[list[str]]:
        m = self.model
        seen = [m.items.lookup(h) for h in histories]
        seen = [s[s >= 0] for s in seen]
        xq = m.fold_in(seen)
        if not fresh:
            known = m.users.lookup(user_ids)
            xq[known >= 0] = m.user_vectors()[known[known >= 0]]
        I, _ = retrieve(self.index, xq, k, seen)
        return [[str(m.items.ids[i]) for i in row if i >= 0] for row in I]
