"""The quality gate: refuse to publish a model that regresses or was trained on a sliver.

Checks before anything is written to Redis or committed to the store:

- `shrink_check` (also with --skip_gate), before any training: the run's users, items with
  events and valid events against the served version's summary; fewer than (1 - max_shrink)
  of any of them is refused (a 10-row file must not replace a version of 399 users x 200 items).
- `too_few_cases`, before any training: the model's validation window (the last share of the
  time range, models.kinds: `validation_window`) must hold at least `min_cases` validation
  cases under the temporal-holdout protocol.
- `decide`, after the one fit: the model's own validation figures (`fit.validation`: trained
  without the window, evaluated on it beside popularity; MF: models.kinds.mf.validate, one
  extra MF fit on the earlier rows; served: fit_served's own last window) must beat
  popularity and not fall more than `tolerance` (relative) below the gate figure recorded by
  the version being served. A model without a validation figure is refused. The figure is
  recorded in the run summary for the next night's comparison.

`--force_publish` publishes whatever either check says (the summary records it). The
defaults (50 cases, a 0.5 shrink) are the flags' (batch/options.py: MIN_CASES says why 50).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from batch.options import MAX_SHRINK, MIN_CASES
from models.evaluation import build_cases, temporal_split
from models.mf import MFConfig

log = logging.getLogger(__name__)


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
            f"more than --max-shrink {max_shrink:.0%} (a model trained on a sliver would "
            "replace every list)")


@dataclass(frozen=True)
class GateResult:
    ndcg: float | None  # None: not evaluated (too few cases, no validation figure)
    popularity_ndcg: float | None
    served_ndcg: float | None
    cases: int
    passed: bool
    reason: str
    window: float | None = None  # share of the time range validated on

    def as_dict(self) -> dict:
        def r(x):
            return None if x is None else round(x, 4)

        return {"ndcg@10": r(self.ndcg), "popularity_ndcg@10": r(self.popularity_ndcg),
                "served_ndcg@10": self.served_ndcg, "cases": self.cases,
                "passed": self.passed, "reason": self.reason, "window": self.window}


def served_figure(served: dict | None) -> float | None:
    """The gate figure (NDCG@10) the served version's run recorded, or None."""
    return ((served or {}).get("gate") or {}).get("ndcg@10")


def _too_few(n_cases: int, window: float | None, min_cases: int, served: dict | None) -> str:
    first = ("; no version is served yet: --force-publish publishes this first one "
             "without a verdict" if served is None else "")
    where = f"the last {window:.0%} of the time range" if window else "the validation window"
    return (f"only {n_cases} validation case(s) in {where}, fewer than --gate-min-cases "
            f"{min_cases}: too few to tell the model from popularity (more data or a wider "
            f"window: --gate-window; with --model served the last of its windows){first}")


def too_few_cases(clean: pd.DataFrame, window: float, min_cases: int = MIN_CASES,
                  served: dict | None = None) -> GateResult | None:
    """The refusal of a run whose last `window` share of time holds fewer than `min_cases`
    validation cases (warm + fresh), before anything is trained; None if it holds enough."""
    if min_cases < 1:
        raise ValueError(f"--gate-min-cases={min_cases}: use a number >= 1 (--skip-gate "
                         "skips the evaluation)")
    cases = build_cases(temporal_split(clean, quantile=1.0 - window))
    n_cases = len(cases.warm) + len(cases.fresh)
    if n_cases >= min_cases:
        return None
    return GateResult(None, None, served_figure(served), n_cases, False,
                      _too_few(n_cases, window, min_cases, served), window)


def decide(validation: dict | None, served: dict | None, tolerance: float = 0.05,
           min_cases: int = MIN_CASES, window: float | None = None) -> GateResult:
    """The gate's verdict on a model's own validation figures (models.kinds: `fit.validation`).

    Args:
        validation: {"window", "cases", "ndcg@10", "popularity_ndcg@10", ...} measured on the
            model's last temporal window, or None (the model reports none: refused).
        served: the served version's run summary (its "gate" figures), or None.
        tolerance: allowed relative NDCG@10 drop against the served version's figure.
        min_cases: fewest validation cases to decide on.
        window: the share of the time range validated on (the kind's `validation_window`),
            recorded and named in the reasons; None takes the figures' own "window".
    """
    served_ndcg = served_figure(served)
    if not validation:
        return GateResult(None, None, served_ndcg, 0, False,
                          "the model reports no validation figure (models/served_fit.fit_served "
                          "measures it on its last window; this fit has none): nothing to "
                          "compare with popularity or the served version", window)
    window = validation.get("window") if window is None else window
    n_cases = int(validation.get("cases") or 0)
    ndcg, pop = validation.get("ndcg@10"), validation.get("popularity_ndcg@10")
    if n_cases < min_cases:
        return GateResult(None, None, served_ndcg, n_cases, False,
                          _too_few(n_cases, window, min_cases, served), window)
    if ndcg is None or pop is None:
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"the validation has no NDCG@10 (model {ndcg}, popularity {pop})",
                          window)
    if ndcg < pop:
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"NDCG@10 {ndcg:.4f} is below popularity's {pop:.4f}", window)
    if served_ndcg is not None and ndcg < served_ndcg * (1 - tolerance):
        return GateResult(ndcg, pop, served_ndcg, n_cases, False,
                          f"NDCG@10 {ndcg:.4f} is more than {tolerance:.0%} below the served "
                          f"version's {served_ndcg:.4f}", window)
    return GateResult(ndcg, pop, served_ndcg, n_cases, True, "passed", window)


def quality_gate(clean: pd.DataFrame, config: MFConfig, event_weights, served: dict | None,
                 window: float = 0.1, tolerance: float = 0.05,
                 users: pd.DataFrame | None = None,
                 items: pd.DataFrame | None = None,
                 min_cases: int = MIN_CASES) -> GateResult:
    """MF's gate on its own: `too_few_cases`, else MF trained before the last `window` and
    evaluated on it (models.kinds.mf.validate, what the nightly's MF fit measures), `decide`.

    Args:
        clean: all valid interactions of this run.
        config: the MF configuration about to be trained for real.
        event_weights: event-type weights.
        served: the served version's run summary (its "gate" figures), or None.
        window: share of the time range held out as the validation window.
        tolerance: allowed relative drop against the served version's figure.
        users, items: unused (MF reads no feature tables).
        min_cases: fewest validation cases (warm + fresh) to decide on; fewer fails without
            training anything.

    Raises:
        TypeError: `config` is not an MFConfig (the served model validates inside its own
            fit: models.kinds.get("served").fit(...).validation, then `decide`).
    """
    from models.kinds.mf import validate

    if not isinstance(config, MFConfig):
        raise TypeError(f"quality_gate evaluates MF, not {type(config).__name__}: the served "
                        "model measures its figure inside its fit (fit.validation); pass that "
                        "to batch.gate.decide")
    refused = too_few_cases(clean, window, min_cases, served)
    if refused is not None:
        return refused
    return decide(validate(clean, config, event_weights, window), served, tolerance, min_cases)
