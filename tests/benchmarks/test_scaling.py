"""benchmarks/scaling.py's arithmetic on runs whose growth is known (the sweep itself takes
~20 min: it is a benchmark, not a test)."""

from __future__ import annotations

import pytest

from benchmarks.scaling import extrapolate, fit, sizes


def _runs():
    """Train grows as users^1 * events^0.5, precompute as users^1.2 * items^1, publish as
    5 s + 1 ms per user; Redis holds 700 B per user over a fixed 1 MB; the driver 1 GB plus
    10 KB per event."""
    out = []
    for size in sizes({"users": 1000, "items": 500, "events": 10_000}, factor=3, steps=3):
        u, i, e = size["users"], size["items"], size["events"]
        out.append({**size, "cpu_seconds": {"train": 2e-3 * u * (e / 1e4) ** 0.5,
                                            "precompute_publish": 1e-6 * u ** 1.2 * i,
                                            "carry_over": 0.01, "publish": 5 + 1e-3 * u},
                    "total_cpu_seconds": 1.0, "driver_peak_rss_mb": 1024 + e * 10 / 1024,
                    "redis_bytes": 2 ** 20 + 700 * u})
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


def test_extrapolation_adds_the_marginal_costs():
    runs = _runs()
    out = extrapolate(runs, fit(runs), 10 ** 6, 500, window_hours=1, machine_gb=2,
                      machine_cores=2)
    assert out["target"] == {"users": 10 ** 6, "items": 500, "events": 10 ** 7}
    publish = out["figures"]["seconds.publish"]
    assert publish["value"] == pytest.approx(5 + 1e-3 * 10 ** 6, rel=1e-3)
    assert publish["per_user_along_path"] == pytest.approx(1e-3)
    # 1 h on 2 cores = 7200 CPU s: 5 + u / 1000 reaches it at 7,195,000 users
    assert out["users_when_stage_exceeds_window"]["seconds.publish"] == pytest.approx(
        7.195e6, rel=1e-2)
    assert out["redis_gb_at_target"] == pytest.approx(700 * 10 ** 6 / 2 ** 30, abs=0.1)
    # 1 GB + 10 KB/event at 10 events/user: 1024 + 100 u / 1024 MB reaches 2 GB at 10,486 users
    assert out["users_when_driver_exceeds_machine"] == pytest.approx(1024 * 1024 / 100,
                                                                     rel=1e-2)
