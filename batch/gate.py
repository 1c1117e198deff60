"""The quality gate: refuse to publish a model that regresses or was trained on a sliver.

Two checks, each before anything is trained for real or written to Redis:

- `shrink_check` (also with --skip_gate): the run's users, items with events and valid
  events against the served version's summary; fewer than (1 - max_shrink) of any of them
  is refused (a 10-row file must not replace a version of 399 users x 200 items).
- `quality_gate`: the candidate configuration (MF, or the served recommender: retrieval ->
  ranker -> rules) is trained on the clean data before the latest validation window (the
  last `window` share of time) and evaluated on the window under the temporal-holdout
  protocol, beside popularity trained on the same side. It needs at least `min_cases`
  validation cases, must beat popularity, and must not fall more than `tolerance`
  (relative) below the gate figure recorded by the version being served. The figure is
  recorded in the run summary for the next night's comparison.

`--force_publish` publishes whatever either check says (the summary records it).
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


# With fewer validation cases the gate's NDCG@10 is noise: per-case NDCG@10 has a standard
# deviation of ~0.25 on the synthetic data (0.26 / 0.22 at 300 / 1,000 users), so the mean of
# 50 cases is known to +-0.035 (one standard error), already a quarter of a typical figure
# (0.11-0.20) and far more than the 5% tolerance; at 20 cases it is +-0.056.
MIN_CASES = 50
# A run may lose at most half of the served version's users, items or events.
MAX_SHRINK = 0.5


class QualityGateError(RuntimeError):
    """The run was refused (the model regressed, too few validation cases, or the data
    shrank against the served version); nothing was published."""


def data_sizes(clean: pd.DataFrame) -> dict[str, int]:
    """The figures the shrink check compares: distinct users, items with events, rows."""
    return {"users": int(clean["user_id"].nunique()),
            "items_with_events": int(clean["item_id"].nunique()),
            "valid_events": len(clean)}


def served_sizes(meta: dict | None) -> dict[str, int]:
    """The same figures from a served version's summary (`NS:v:<v>:meta`); absent ones are
    left out. Summaries older than `items_with_events` give `items` (MF: the same number)."""
    meta = meta or {}
    found = {"users": meta.get("users_published"),
             "items_with_events": meta.get("items_with_events", meta.get("items")),
             "valid_events": meta.get("valid_events")}
    return {k: int(v) for k, v in found.items() if isinstance(v, int | float) and v > 0}


def shrink_check(sizes: dict[str, int], served_meta: dict | None,
                 max_shrink: float = MAX_SHRINK) -> str | None:
    """Compares this run's figures with the served version's.

    Args:
        sizes: `data_sizes` of this run.
        served_meta: the served version's run summary, or None (first run: nothing to check).
        max_shrink: largest allowed relative drop of each figure, in [0, 1].

    Returns:
        None when no figure drops below (1 - max_shrink) of the served one, else a reason
        naming each figure that did, with both numbers and the drop.
    """
    shrunk = [f"{name} {sizes[name]:,} vs {old:,} (-{1 - sizes[name] / old:.1%})"
              for name, old in served_sizes(served_meta).items()
              if sizes[name] < (1 - max_shrink) * old]
    if not shrunk:
        return None
    version = (served_meta or {}).get("version", "being served")
    return (f"the data shrank against the served version {version}: {'; '.join(shrunk)}, "
            f"more than --max_shrink {max_shrink:.0%} (a model trained on a sliver would "
            "replace every list)")


@dataclass(frozen=True)
class GateResult:
    ndcg: float | None  # None: not evaluated (too few cases)
    popularity_ndcg: float | None
    served_ndcg: float | None
    cases: int
    passed: bool
    reason: str

    def as_dict(self) -> dict:
        def r(x):
            return None if x is None else round(x, 4)

        return {"ndcg@10": r(self.ndcg), "popularity_ndcg@10": r(self.popularity_ndcg),
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
                 items: pd.DataFrame | None = None,
                 min_cases: int = MIN_CASES) -> GateResult:
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
        min_cases: fewest validation cases (warm + fresh) to decide on; fewer fails without
            training anything.
    """
    if min_cases < 1:
        raise ValueError(f"--gate_min_cases={min_cases}: use a number >= 1 (--skip_gate "
                         "skips the evaluation)")
    served_ndcg = ((served or {}).get("gate") or {}).get("ndcg@10")
    split = temporal_split(clean, quantile=1.0 - window)
    cases = build_cases(split)
    n_cases = len(cases.warm) + len(cases.fresh)
    if n_cases < min_cases:
        first = ("; no version is served yet: --force_publish publishes this first one "
                 "without a verdict" if served is None else "")
        return GateResult(None, None, served_ndcg, n_cases, False,
                          f"only {n_cases} validation case(s) in the last {window:.0%} of the "
                          f"time range, fewer than --gate_min_cases {min_cases}: too few to "
                          f"tell the model from popularity (more data or a wider "
                          f"--gate_window){first}")
    if isinstance(config, MFConfig):
        model = _WeightedMF(config, event_weights)
    else:
        from models.served_fit import ServedRecommender

        model = ServedRecommender(config)
    tables = {"users": users, "items": items, "n_resamples": 100}
    ndcg = evaluate_model(model, split, cases, **tables)["all"]["ndcg@10"]
    pop = evaluate_model(Popularity(), split, cases, **tables)["all"]["ndcg@10"]
    if ndcg < pop:
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"NDCG@10 {ndcg:.4f} is below popularity's {pop:.4f}")
    if served_ndcg is not None and ndcg < served_ndcg * (1 - tolerance):
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"NDCG@10 {ndcg:.4f} is more than {tolerance:.0%} below the served "
                          f"version's {served_ndcg:.4f}")
    return GateResult(ndcg, pop, served_ndcg, n_cases, True, "passed")
