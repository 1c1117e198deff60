"""The quality gate: refuse to publish a model that regresses.

The candidate configuration (MF, or the served recommender: retrieval -> ranker -> rules) is
trained on the clean data before the latest validation window (the last `window` share of
time) and evaluated on the window under the temporal-holdout protocol, beside popularity
trained on the same side. It must beat popularity, and must not
fall more than `tolerance` (relative) below the gate figure recorded by the version being
served. The figure is recorded in the run summary for the next night's comparison.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from models.baselines import Popularity
from models.evaluation import build_cases, evaluate_model, temporal_split
from models.mf import MFConfig, train_mf
from models.retrieval import MFRecommender
from models.topk import build_flat_index

log = logging.getLogger(__name__)


class QualityGateError(RuntimeError):
    """The new model regressed; nothing was published."""


@dataclass(frozen=True)
class GateResult:
    ndcg: float
    popularity_ndcg: float
    served_ndcg: float | None
    cases: int
    passed: bool
    reason: str

    def as_dict(self) -> dict:
        return {"ndcg@10": round(self.ndcg, 4),
                "popularity_ndcg@10": round(self.popularity_ndcg, 4),
                "served_ndcg@10": self.served_ndcg, "cases": self.cases,
                "passed": self.passed, "reason": self.reason}


class _WeightedMF(MFRecommender):
    """MFRecommender trained with the run's event weights."""

    def __init__(self, config: MFConfig, event_weights):
        super().__init__(config)
        self.event_weights = event_weights

    def fit(self, train, users=None, items=None):
        self.model = train_mf(train, self.config, self.event_weights)
        self.index = build_flat_index(self.model.item_vectors())
        return self


def quality_gate(clean: pd.DataFrame, config, event_weights, served: dict | None,
                 window: float = 0.1, tolerance: float = 0.05,
                 users: pd.DataFrame | None = None,
                 items: pd.DataFrame | None = None) -> GateResult:
    """Evaluates the candidate configuration on the latest validation window.

    Args:
        clean: all valid interactions of this run.
        config: the configuration about to be trained for real: an MFConfig, or a
            ServedConfig (its ServedRecommender is exactly ServedModel.recommend_indices).
        event_weights: event-type weights (MF's; the served model reads the rows as they are).
        served: the served version's run summary (its "gate" figures), or None.
        window: share of the time range held out as the validation window.
        tolerance: allowed relative drop against the served version's figure.
        users, items: the feature tables (the served model's features; MF ignores them).
    """
    split = temporal_split(clean, quantile=1.0 - window)
    cases = build_cases(split)
    n_cases = len(cases.warm) + len(cases.fresh)
    if n_cases == 0:
        return GateResult(0.0, 0.0, None, 0, True, "no validation case: gate skipped")
    if isinstance(config, MFConfig):
        model = _WeightedMF(config, event_weights)
    else:
        from models.served import ServedRecommender

        model = ServedRecommender(config)
    tables = {"users": users, "items": items, "n_resamples": 100}
    ndcg = evaluate_model(model, split, cases, **tables)["all"]["ndcg@10"]
    pop = evaluate_model(Popularity(), split, cases, **tables)["all"]["ndcg@10"]
    served_ndcg = ((served or {}).get("gate") or {}).get("ndcg@10")
    if ndcg < pop:
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"NDCG@10 {ndcg:.4f} is below popularity's {pop:.4f}")
    if served_ndcg is not None and ndcg < served_ndcg * (1 - tolerance):
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"NDCG@10 {ndcg:.4f} is more than {tolerance:.0%} below the served "
                          f"version's {served_ndcg:.4f}")
    return GateResult(ndcg, pop, served_ndcg, n_cases, True, "passed")
