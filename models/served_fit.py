"""Training the served pipeline (`fit_served`) and its evaluation adapter (`ServedRecommender`).

`fit_served` trains on the train side only: the ranker learns from windows cut from its end
(with a tower fitted on each window's past), then the tower and the tables are refit on all of
it. The model it returns is a models.served.ServedModel.

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --models served
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from models.evaluation import Cases, build_cases, temporal_split
from models.finite import require_finite
from models.ranker import train_ranker
from models.served import ServedConfig, ServedModel, model_arrays
from models.two_tower import fit_tower, prepare

log = logging.getLogger(__name__)


def _latest_cases(cases: Cases, n: int) -> Cases:
    share = n / max(len(cases.warm) + len(cases.fresh), 1)
    if share >= 1:
        return cases
    return Cases(cases.warm[-int(len(cases.warm) * share):],
                 cases.fresh[-int(len(cases.fresh) * share):])


def fit_served(train: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None,
               config: ServedConfig = ServedConfig()) -> ServedModel:
    """Trains the served pipeline on the train side only (see the module docstring)."""
    tc, epochs, parts = config.tower, config.tower_epochs, []
    for q in sorted(config.windows, reverse=True):  # the validation window first
        split = temporal_split(train, q)
        cases = build_cases(split)
        data = prepare(split.train, users, items, tc)
        if epochs is None:
            tower, scores = fit_tower(data, tc, tc.epochs, cases)
            epochs = tower.epochs
            log.info("served: tower epochs %d (validation NDCG@10 %s)", epochs,
                     np.round(scores, 4).tolist())
        else:
            tower = fit_tower(data, tc, epochs)[0]
        window = ServedModel.build(split.train, tower, items, config)
        parts.insert(0, window.ranking_data(_latest_cases(cases, config.max_cases)))
    ranker = train_ranker(parts, config.ranker)
    tower = fit_tower(prepare(train, users, items, tc), tc, epochs or tc.epochs)[0]
    model = ServedModel.build(train, tower, items, config, ranker)
    require_finite(model_arrays(model), "served model", "the input's weights and timestamps "
                   "and the users and items tables")
    return model



class ServedRecommender:
    """The `served` model of `recsys evaluate`: exactly ServedModel.recommend_indices."""

    name = "served"

    def __init__(self, config: ServedConfig = ServedConfig()):
        self.config = config

    def fit(self, train, users=None, items=None) -> ServedRecommender:
        self.model = fit_served(train, users, items, self.config)
        return self

    def recommend(self, user_ids, histories, k, fresh):
        m = self.model
        I, _ = m.recommend_indices(m.history_indices(histories),
                                   m.tower.data.user_matrix(list(user_ids)),
                                   m.context(list(user_ids), fresh), k)
        ids = m.tower.data.items.ids
        return [[str(ids[i]) for i in row if i >= 0] for row in I]
