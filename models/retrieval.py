"""MF under the evaluation protocol, served as production serves it: Faiss top-k -> rules
(models.topk.faiss_topk), the one code path for warm users (batch) and fresh users (online)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from models.baselines import dot_scores
from models.mf import MFConfig, MFModel, train_mf
from models.topk import build_flat_index, faiss_topk


class MFRecommender:
    """MF served as production serves it: warm users by their trained vectors (the nightly
    precompute), fresh users by fold-in of their recent items (the on-demand path).

    Args:
        config: MF's hyperparameters.
        event_weights: weight per event type for training (None: the schema's defaults).
    """

    name = "mf"

    def __init__(self, config: MFConfig = MFConfig(),
                 event_weights: Mapping[str, float] | None = None):
        self.config = config
        self.event_weights = event_weights
        self.model: MFModel | None = None

    def fit(self, train: pd.DataFrame, users=None, items=None) -> MFRecommender:
        self.model = train_mf(train, self.config, self.event_weights)
        self.index = build_flat_index(self.model.item_vectors())
        return self

    def _queries(self, user_ids: list[str], histories: list[list[str]], fresh: bool
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(query vectors [B, d], the histories' known item indices)."""
        m = self.model
        seen = [m.items.lookup(h) for h in histories]
        seen = [s[s >= 0] for s in seen]
        xq = m.fold_in(seen)
        if not fresh:
            known = m.users.lookup(user_ids)
            xq[known >= 0] = m.user_vectors()[known[known >= 0]]
        return xq, seen

    def recommend(self, user_ids: list[str], histories: list[list[str]], k: int,
                  fresh: bool) -> list[list[str]]:
        xq, seen = self._queries(user_ids, histories, fresh)
        I, _ = faiss_topk(self.index, xq, k, seen)
        return [[str(self.model.items.ids[i]) for i in row if i >= 0] for row in I]

    def score(self, user_ids: list[str], histories: list[list[str]],
              candidates: list[list[str]], fresh: bool) -> np.ndarray:
        """The retrieval score (user . item vector) of given items; -inf for unknown ones."""
        xq, _ = self._queries(user_ids, histories, fresh)
        return dot_scores(self.model.items, xq, self.model.item_vectors(), candidates)
