"""Off-policy estimates of a new policy's reward from steps logged under another policy whose
propensities are known (Horvitz-Thompson IPS and self-normalised IPS, Swaminathan & Joachims
2015), with 95% bootstrap intervals.

    ips(rewards, target_probs, logging_probs)     mean of w * r,        w = pi(a|s) / mu(a|s)
    snips(rewards, target_probs, logging_probs)   sum(w * r) / sum(w)

`target_probs` is the new policy's probability of the logged action (1 or 0 for a
deterministic policy); `logging_probs` the logging policy's, as logged. Steps logged without
a propensity cannot be reweighted: the estimators refuse them (impressions log no propensity
today; a logging stage must record its action and the probability it gave it).
"""

from __future__ import annotations

import numpy as np


def _weights(rewards, target_probs, logging_probs) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rewards, np.float64)
    pi = np.asarray(target_probs, np.float64)
    mu = None if logging_probs is None else np.asarray(logging_probs, np.float64)
    if mu is None or not (len(r) == len(pi) == len(mu)) or len(r) == 0:
        raise ValueError("off-policy estimate: rewards, target_probs and logging_probs must be "
                         "non-empty and of one length (steps logged without a propensity "
                         "cannot be reweighted)")
    if not np.all(np.isfinite(mu)) or np.any(mu <= 0) or np.any(mu > 1):
        raise ValueError("off-policy estimate: logging_probs must be in (0, 1]")
    if not np.all(np.isfinite(r)) or np.any(pi < 0) or np.any(pi > 1):
        raise ValueError("off-policy estimate: rewards must be finite, target_probs in [0, 1]")
    return r, pi / mu


def _interval(stat, arrays, seed: int) -> list[float]:
    from scipy.stats import bootstrap

    ci = bootstrap(arrays, stat, paired=True, vectorized=True, confidence_level=0.95,
                   n_resamples=1000, method="percentile", random_state=seed).confidence_interval
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def ips(rewards, target_probs, logging_probs, seed: int = 0) -> dict:
    """{"value", "ci"}: the inverse-propensity estimate of the mean reward per step."""
    r, w = _weights(rewards, target_probs, logging_probs)
    return {"value": round(float(np.mean(w * r)), 4),
            "ci": _interval(lambda r, w, axis=-1: np.mean(w * r, axis=axis), (r, w), seed)}


def snips(rewards, target_probs, logging_probs, seed: int = 0) -> dict:
    """{"value", "ci", "effective_n"}: the self-normalised estimate (biased, lower variance;
    effective_n = (sum w)^2 / sum w^2, the steps it effectively rests on)."""
    r, w = _weights(rewards, target_probs, logging_probs)
    if w.sum() == 0:
        raise ValueError("off-policy estimate: the new policy never takes a logged action")
    return {"value": round(float(np.sum(w * r) / np.sum(w)), 4),
            "ci": _interval(lambda r, w, axis=-1: np.sum(w * r, axis=axis)
                            / np.maximum(np.sum(w, axis=axis), 1e-12), (r, w), seed),
            "effective_n": round(float(w.sum() ** 2 / np.sum(w * w)), 1)}
