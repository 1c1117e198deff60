"""The experiments' statistics against hand figures and small simulations with known truth."""

import numpy as np
import pytest

from models.experiments.stats import (
    confidence_sequence,
    fixed_sample_size,
    msprt_p_values,
    proportion_differences,
    sample_ratio,
    sequential_sample_size,
)


def test_difference_of_proportions_and_its_interval():
    (d,) = proportion_differences({"a": 100, "b": 130}, {"a": 1000, "b": 1000}, control="a")
    assert (d.arm, d.rate, d.control_rate) == ("b", 0.13, 0.10)
    assert d.difference == pytest.approx(0.03)
    # Wald by hand: se = sqrt(.1*.9/1000 + .13*.87/1000) = 0.01425; z = 2.105; p = 0.0353
    assert d.p_value == pytest.approx(0.0353, abs=5e-4)
    assert 0 < d.ci_low < 0.03 < d.ci_high < 0.06
    (same,) = proportion_differences({"a": 0, "b": 0}, {"a": 50, "b": 50}, control="a")
    assert same.p_value == 1.0 and same.ci_low < 0 < same.ci_high
    with pytest.raises(ValueError, match="arm 'b'"):
        proportion_differences({"a": 1, "b": 5}, {"a": 10, "b": 4}, control="a")


def test_sample_ratio_mismatch():
    assert not sample_ratio([5030, 4970], [5000, 5000]).mismatch
    skewed = sample_ratio([5200, 4800], [5000, 5000])
    assert skewed.mismatch and skewed.statistic == pytest.approx(16.0)  # 2 * 200² / 5000
    assert not sample_ratio([900, 100], [9000, 1000]).mismatch
    assert sample_ratio([900, 100, 3], [9000, 1000, 0]).mismatch  # users in a closed arm
    with pytest.raises(ValueError, match="one non-negative allocation per arm"):
        sample_ratio([1, 2], [1])


def _aa_counts(rng, runs, looks, per_look, rate):
    a = rng.binomial(per_look, rate, (runs, looks)).cumsum(axis=1)
    b = rng.binomial(per_look, rate, (runs, looks)).cumsum(axis=1)
    n = np.broadcast_to(per_look * np.arange(1, looks + 1), (runs, looks))
    return a, n, b, n


def test_msprt_keeps_its_level_under_peeking_where_a_naive_test_does_not():
    rng = np.random.default_rng(0)
    a, na, b, nb = _aa_counts(rng, runs=4000, looks=30, per_look=500, rate=0.1)
    p = msprt_p_values(a, na, b, nb, tau=0.01)
    assert (np.diff(p, axis=1) <= 0).all()
    assert (p[:, -1] < 0.05).mean() <= 0.05
    pa, pb = a / na, b / nb
    z = (pb - pa) / np.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    assert (np.abs(z) > 1.96).any(axis=1).mean() > 0.15  # peeking at a fixed test: ~25%


def test_msprt_detects_a_real_difference_and_agrees_with_its_confidence_sequence():
    rng = np.random.default_rng(1)
    a = rng.binomial(2000, 0.10, (500, 10)).cumsum(axis=1)
    b = rng.binomial(2000, 0.12, (500, 10)).cumsum(axis=1)
    n = np.broadcast_to(2000 * np.arange(1, 11), (500, 10))
    p = msprt_p_values(a, n, b, n, tau=0.02)
    assert (p[:, -1] < 0.05).mean() > 0.9
    low, high = confidence_sequence(a, n, b, n, tau=0.02, alpha=0.05)
    assert ((low <= 0.02) & (0.02 <= high)).all(axis=1).mean() >= 0.95  # covers the truth
    one_look = msprt_p_values(a[:, -1:], n[:, -1:], b[:, -1:], n[:, -1:], tau=0.02)[:, 0]
    np.testing.assert_array_equal(one_look < 0.05, low[:, -1] > 0)


def test_sample_sizes():
    seq, fixed = sequential_sample_size(0.1, 0.05), fixed_sample_size(0.1, 0.05)
    assert 55_000 < fixed < 60_000  # textbook: 16 p(1-p) / δ² ≈ 57,600 at p = .1, δ = .005
    assert fixed < seq < 3 * fixed  # always-valid costs more users than one planned look
    assert sequential_sample_size(0.1, 0.10) < seq
    with pytest.raises(ValueError, match="baseline must be in"):
        sequential_sample_size(1.2, 0.05)
