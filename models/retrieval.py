"""MF under the evaluation protocol, served as production serves it: Faiss top-k -> rules
(models.topk.faiss_topk), the one code path for warm users (batch) and fresh users (online)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from models.baselines import dot_scores
from models.evaluation import temporal_split
from models.mf import MFConfig, MFModel, train_mf
from models.served_guard import PopularityFallback, popularity_guard
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
        self.fallback, self.guard = PopularityFallback(None, {}), {}

    def fit(self, train: pd.DataFrame, users=None, items=None) -> MFRecommender:
        """Trains MF on `train`; with `MFConfig.guard_window`, first on all but that last share
        of it, and a segment where popularity beats that MF beyond noise on the held-out
        share (models.served_guard.popularity_guard) is served by popularity (`self.guard`
        has the figures)."""
        self.fallback, self.guard = self._guard(train)
        self.model = train_mf(train, self.config, self.event_weights)
        self.index = build_flat_index(self.model.item_vectors())
        return self

    def _guard(self, train: pd.DataFrame) -> tuple[PopularityFallback, dict]:
        w = self.config.guard_window
        split = temporal_split(train, 1.0 - w) if w > 0 else None
        if split is None or split.train.empty or split.test.empty:
            return PopularityFallback(train, {}), {}
        inner = MFRecommender(replace(self.config, guard_window=0.0), self.event_weights)
        fallback, report = popularity_guard(inner.fit(split.train), split, self.name)
        return PopularityFallback(train, fallback), report

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
        if self.fallback.handles(fresh):
            return self.fallback.popularity.recommend(user_ids, histories, k, fresh)
        xq, seen = self._queries(user_ids, histories, fresh)
        I, _ = faiss_topk(self.index, xq, k, seen)
        return [[str(self.model.items.ids[i]) for i in row if i >= 0] for row in I]

    def score(self, user_ids: list[str], histories: list[list[str]],
              candidates: list[list[str]], fresh: bool) -> np.ndarray:
        """The retrieval score (user . item vector) of given items; -inf for unknown ones
        (popularity's in a segment the guard gave to popularity)."""
        if self.fallback.handles(fresh):
            return self.fallback.popularity.score(user_ids, histories, candidates, fresh)
        xq, _ = self._queries(user_ids, histories, fresh)
        return dot_scores(self.model.items, xq, self.model.item_vectors(), candidates)
