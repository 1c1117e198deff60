"""Experiments' statistics: differences with intervals, sample-ratio mismatch, a peeking-safe test.

Which methods, and why:
- Per-arm difference of proportions against the control (CTR, conversion) with a confidence
  interval and a fixed-horizon p-value: statsmodels (`confint_proportions_2indep`, Newcombe's
  hybrid score interval, good at small rates; `test_proportions_2indep`). Valid for one look
  at a sample size fixed in advance.
- Sample-ratio mismatch: scipy.stats.chisquare of the users per arm against the allocations;
  flagged below p = 0.001, the usual SRM threshold (a mismatch means the assignment or the
  logging is broken, and no figure of the experiment can be trusted).
- The test people may look at every day: the mixture sequential probability ratio test
  (mSPRT) with a normal mixture, and its always-valid p-values and confidence sequences:
  R. Johari, P. Koomen, L. Pekelis, D. Walsh, "Always Valid Inference: Continuous Monitoring
  of A/B Tests", Operations Research 70(3), 2022 (arXiv:1512.04922), section 4 with the
  two-sample normal approximation of its section 6. For the difference θ of two rates with
  estimate θ̂ and variance V (p̂(1-p̂)/n summed over both arms) and mixing N(0, τ²):
      Λ = sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²))),   p = min(1, min over looks 1/Λ).
  Under no difference P(Λ ever ≥ 1/α) ≤ α by Ville's inequality, however often one looks, so
  the reader may stop as soon as p < α. Neither statsmodels nor scipy has it; spotify-
  confidence's group-sequential tests need the number of looks and the maximum sample planned
  ahead (an alpha-spending design), whereas users of `recsys experiment report` look whenever
  they like; so the 20 lines below are written from the paper, and benchmarks/experiments.py
  checks their false-positive rate and power by simulation. τ is set to the smallest effect
  worth detecting (`sequential_sample_size` uses the same), the paper's advice.

    python -c "from models.experiments.stats import sequential_sample_size as s;
    print(s(0.1, 0.05))"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chisquare, norm
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    test_proportions_2indep,
)

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class Difference:
    """An arm's rate against the control's: rate - control_rate, its interval and p-value."""

    arm: str
    rate: float
    control_rate: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class SampleRatio:
    """The sample-ratio check: chi-square statistic, p-value, mismatch = p < threshold."""

    statistic: float
    p_value: float
    mismatch: bool


def proportion_differences(successes: Mapping[str, int], trials: Mapping[str, int],
                           control: str, alpha: float = 0.05) -> list[Difference]:
    """Each non-control arm's rate minus the control's, with a (1 - alpha) interval.

    Args:
        successes: arm -> clicks (or buyers, returning users).
        trials: arm -> impressions (or users); every arm of `successes`, each > 0.
        control: the arm the others are compared to.
        alpha: 1 - the interval's coverage; also the test's level.
    """
    for arm, n in trials.items():
        if n <= 0 or not 0 <= successes[arm] <= n:
            raise ValueError(f"arm {arm!r}: need 0 <= successes <= trials and trials > 0")
    c, nc = successes[control], trials[control]
    out = []
    for arm in trials:
        if arm == control:
            continue
        s, n = successes[arm], trials[arm]
        low, high = confint_proportions_2indep(s, n, c, nc, method="newcomb", compare="diff",
                                               alpha=alpha)
        with np.errstate(divide="ignore", invalid="ignore"):  # no variance: p = nan -> 1
            p = test_proportions_2indep(s, n, c, nc, compare="diff", method="wald").pvalue
        out.append(Difference(arm, s / n, c / nc, s / n - c / nc, float(low), float(high),
                              float(p) if np.isfinite(p) else 1.0))
    return out


def sample_ratio(counts: Sequence[int], allocations: Sequence[int],
                 threshold: float = SRM_THRESHOLD) -> SampleRatio:
    """Chi-square of the users per arm against their allocations (any positive weights).

    An arm allocated nothing that still has users is a mismatch outright.
    """
    counts, weights = np.asarray(counts, float), np.asarray(allocations, float)
    if counts.shape != weights.shape or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("sample_ratio: one non-negative allocation per arm, not all zero")
    if (counts[weights == 0] > 0).any():
        return SampleRatio(math.inf, 0.0, True)
    live = weights > 0
    if counts[live].sum() == 0 or live.sum() < 2:
        return SampleRatio(0.0, 1.0, False)
    expected = counts[live].sum() * weights[live] / weights[live].sum()
    stat, p = chisquare(counts[live], expected)
    return SampleRatio(float(stat), float(p), bool(p < threshold))


def msprt_p_values(successes_a, trials_a, successes_b, trials_b, tau: float) -> np.ndarray:
    """Always-valid p-values of "rate B = rate A" at each look (mSPRT, normal mixture).

    Args:
        successes_a, trials_a, successes_b, trials_b: [..., looks] cumulative counts at each
            look (any leading batch shape; the last axis is time).
        tau: standard deviation of the mixing distribution on the difference of rates.

    Returns:
        [..., looks] p-values, non-increasing along the last axis; reject once one is < alpha.
    """
    a, na = np.asarray(successes_a, float), np.asarray(trials_a, float)
    b, nb = np.asarray(successes_b, float), np.asarray(trials_b, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = a / na, b / nb
        v = pa * (1 - pa) / na + pb * (1 - pb) / nb
        t2 = tau * tau
        log_lr = 0.5 * np.log(v / (v + t2)) + (pb - pa) ** 2 * t2 / (2 * v * (v + t2))
    log_lr = np.where((v > 0) & np.isfinite(v), log_lr, 0.0)  # no information yet: Λ = 1
    p = np.minimum(1.0, np.exp(-log_lr))
    return np.minimum.accumulate(p, axis=-1)


def plug_in_p_values(successes_a, trials_a, successes_b, trials_b,
                     min_lift: float) -> np.ndarray:
    """The always-valid p-value a report gives at its last look: msprt_p_values over every look
    so far with tau = `min_lift` × arm A's rate at that last look (a plug-in; at least 1e-4),
    what models/experiments/report.py prints each day and benchmarks/experiments.py checks.

    Args:
        successes_a, trials_a, successes_b, trials_b: [..., looks] cumulative counts.
        min_lift: the smallest relative change worth detecting.

    Returns:
        [...] the p-value at the last look.
    """
    a, na = np.asarray(successes_a, float), np.asarray(trials_a, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(na[..., -1:] > 0, a[..., -1:] / na[..., -1:], 0.0)
    tau = np.maximum(rate * min_lift, 1e-4)
    return msprt_p_values(a, na, successes_b, trials_b, tau)[..., -1]


def confidence_sequence(successes_a, trials_a, successes_b, trials_b, tau: float,
                        alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The always-valid (1 - alpha) interval of rate B - rate A at each look (mSPRT inverted).

    Returns:
        (low, high): the differences θ0 whose Λ(θ0) stays below 1/alpha.
    """
    a, na = np.asarray(successes_a, float), np.asarray(trials_a, float)
    b, nb = np.asarray(successes_b, float), np.asarray(trials_b, float)
    pa, pb = a / na, b / nb
    v = np.maximum(pa * (1 - pa) / na + pb * (1 - pb) / nb, 1e-300)
    t2 = tau * tau
    half = np.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * np.log((v + t2) / v)))
    return pb - pa - half, pb - pa + half


def sequential_sample_size(baseline: float, relative_lift: float, alpha: float = 0.05,
                           power: float = 0.8) -> int:
    """Users per arm for the mSPRT (tau = the lift) to reach `power` at its last look.

    The smallest n where the expected z-statistic beats the mSPRT boundary at n by the power's
    quantile; looks before n only add chances to stop early, so the power with daily looks
    is at least this (benchmarks/experiments.py measures it).

    Args:
        baseline: the control's rate, in (0, 1).
        relative_lift: the smallest relative change worth detecting (0.05 = +5%).
    """
    p1, p2, tau = _check_rates(baseline, relative_lift)
    z = norm.ppf(power)

    def enough(n: int) -> bool:
        v = (p1 * (1 - p1) + p2 * (1 - p2)) / n
        bound = (1 + v / tau**2) * (2 * math.log(1 / alpha) + math.log(1 + tau**2 / v))
        return tau / math.sqrt(v) - z >= math.sqrt(bound)

    low, high = 1, 2
    while not enough(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def fixed_sample_size(baseline: float, relative_lift: float, alpha: float = 0.05,
                      power: float = 0.8) -> int:
    """Users per arm for one two-sided look at the end (statsmodels' NormalIndPower)."""
    p1, p2, _ = _check_rates(baseline, relative_lift)
    n = NormalIndPower().solve_power(effect_size=abs(proportion_effectsize(p2, p1)),
                                     alpha=alpha, power=power, ratio=1.0)
    return int(math.ceil(n))


def _check_rates(baseline: float, relative_lift: float) -> tuple[float, float, float]:
    p2 = baseline * (1 + relative_lift)
    if not (0 < baseline < 1 and 0 < p2 < 1 and relative_lift != 0):
        raise ValueError("baseline must be in (0, 1), relative_lift non-zero and the lifted "
                         "rate in (0, 1)")
    return baseline, p2, abs(p2 - baseline)
