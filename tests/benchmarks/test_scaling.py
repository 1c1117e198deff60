"""benchmarks/scaling.py's arithmetic on runs whose growth is known (the sweep itself takes
~20 min: it is a benchmark, not a test)."""

from __future__ import annotations

import pytest

from benchmarks.scaling import extrapolate, fit, sizes


def _runs():
    """Train grows as users^1 * events^0.5, precompute as users^1.2 * items^1; Redis holds
    700 B per user over a fixed 1 MB; the driver 1 GB plus 10 KB per event."""
    out = []
    for size in sizes({"users": 1000, "items": 500, "events": 10_000}, factor=3, steps=3):
        u, i, e = size["users"], size["items"], size["events"]
        out.append({**size, "seconds": {"train": 2e-3 * u * (e / 1e4) ** 0.5,
                                        "precompute_publish": 1e-6 * u ** 1.2 * i,
                                        "carry_over": 0.01},
                    "total_seconds": 1.0, "driver_peak_rss_mb": 1024 + e * 10 / 1024,
                    "workers_peak_rss_mb": 500, "redis_bytes": 2 ** 20 + 700 * u})
    return out


def test_the_sweep_moves_one_axis_at_a_time():
    runs = sizes({"users": 10, "items": 20, "events": 30}, factor=2, steps=3)
    assert len(runs) == 7
    assert [r["users"] for r in runs if r["axis"] == "users"] == [20, 40]
    assert all(r["items"] == 20 and r["events"] == 30 for r in runs if r["axis"] == "users")


def test_fits_recover_the_exponents_and_the_marginal_bytes():
    fits = fit(_runs())
    assert fits["users"]["seconds.train"]["exponent"] == pytest.approx(1.0, abs=1e-3)
    assert fits["events"]["seconds.train"]["exponent"] == pytest.approx(0.5, abs=1e-3)
    assert fits["items"]["seconds.train"]["exponent"] == pytest.approx(0.0, abs=1e-3)
    assert fits["users"]["seconds.precompute_publish"]["exponent"] == pytest.approx(1.2, abs=1e-3)
    assert fits["users"]["redis_bytes"]["per_unit"] == pytest.approx(700)
    assert "seconds.carry_over" not in fits["users"]  # under MIN_SECONDS: not fitted


def test_extrapolation_follows_the_fits():
    runs = _runs()
    out = extrapolate(runs, fit(runs), 10 ** 6, 500, window_hours=1, machine_gb=2)
    assert out["target"] == {"users": 10 ** 6, "items": 500, "events": 10 ** 7}
    # train: 2 s at the base, x1000 users, x1000 events ** 0.5
    assert out["figures"]["seconds.train"]["value"] == pytest.approx(2 * 1000 * 1000 ** 0.5,
                                                                    rel=1e-3)
    assert out["figures"]["seconds.train"]["exponent_along_users"] == pytest.approx(1.5)
    assert out["redis_gb_at_target"] == pytest.approx(700 * 10 ** 6 / 2 ** 30, abs=0.1)
    # 1 GB + 10 KB/event at 10 events/user: 1024 + 100 u / 1024 MB reaches 2 GB at 10,486 users
    assert out["users_when_driver_exceeds_machine"] == pytest.approx(1024 * 1024 / 100,
                                                                     rel=1e-2)
    # train reaches 1 h (3600 s) at 1000 * (3600 / 2) ** (1 / 1.5) users
    assert out["users_when_stage_exceeds_window"]["seconds.train"] == pytest.approx(
        1000 * 1800 ** (1 / 1.5), rel=1e-2)
