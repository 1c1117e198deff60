"""The experiment report on constructed logs whose answer is known: attribution by hand, a
clearly better arm, equal arms, a 52/48 split, a guardrail breach."""

import json

import numpy as np
import pandas as pd
import pytest

from models.experiments.assignment import experiment
from models.experiments.attribution import DAY_MS
from models.experiments.report import Guardrails, experiment_report

T0 = 1_700_000_000_000  # the start, epoch ms
EXP = experiment("exp", [{"name": "control", "version": "current", "allocation": 5000},
                         {"name": "treatment", "version": "v2", "allocation": 5000}], "s")


def _imp(rid, user, arm, items, ts_ms, latency=10.0, status=200, source="cache", exp="exp"):
    return {"recommendation_id": rid, "user_id": user, "experiment": exp, "arm": arm,
            "version": "v", "items": items, "source": source, "status": status,
            "latency_ms": latency, "ts_ms": ts_ms}


def _ev(user, item, ts_ms, kind="click", rid=None, value=None, eid=None):
    return {"user_id": user, "item_id": item, "timestamp": ts_ms // 1000, "event_type": kind,
            "weight": None, "event_id": eid or f"{user}-{item}-{ts_ms}-{kind}",
            "recommendation_id": rid, "value": value}


def _frames(imps, evs):
    return pd.DataFrame(imps), pd.DataFrame(evs, columns=list(_ev("u", "i", 0)))


def test_attribution_and_figures_worked_out_by_hand():
    h = 3_600_000
    imps = [_imp("r1", "a", "control", ["i1", "i2"], T0),
            _imp("r2", "b", "control", ["i1"], T0 + h),
            _imp("r3", "c", "treatment", ["i3"], T0, latency=30.0, status=503,
                 source="popular"),
            _imp("r4", "a", "control", ["i9"], T0 + 3 * DAY_MS),  # a returns on day 3
            _imp("rx", "z", "control", ["i1"], T0, exp="other"),  # another experiment
            _imp("r4xx", "y", "control", [], T0, status=400)]  # a bad request: not counted
    evs = [_ev("a", "i1", T0 + 1000, rid="r1"),                     # a click: counts
           _ev("a", "i2", T0 + 2000, "purchase", rid="r1", value=30.0),  # purchase: counts
           _ev("a", "i2", T0 + 9 * DAY_MS, "purchase", rid="r1", value=99.0),  # > 7 days
           _ev("b", "i2", T0 + h + 1000, rid="r2"),                 # item not shown
           _ev("z", "i1", T0 + h + 1000, rid="r2"),                 # another user's list
           _ev("b", "i1", T0 + h + 5000, "view", rid="r2"),         # a view is no click
           _ev("c", "i3", T0 - DAY_MS, rid="r3")]                   # before the answer
    imps, evs = _frames(imps, evs)
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS)
    c, t = r["arms"]["control"], r["arms"]["treatment"]
    assert (c["users"], c["impressions"], c["clicks"], c["purchases"]) == (2, 3, 1, 1)
    assert c["ctr"] == pytest.approx(1 / 3) and c["conversion_rate"] == 0.5
    assert (c["value"], c["value_per_user"], c["aov"]) == (30.0, 15.0, 30.0)
    assert (c["retention_eligible"], c["retention_7d"]) == (2, 0.5)  # a came back, b did not
    assert (t["users"], t["clicks"], t["error_rate"], t["fallback_rate"]) == (1, 0, 1.0, 1.0)
    assert t["aov"] is None and t["latency_p99_ms"] == 30.0
    assert not r["guardrails"]["treatment"]["ok"] and r["guardrails"]["control"]["ok"]
    assert r["srm"]["counts"] == {"control": 2, "treatment": 1}
    assert json.loads(json.dumps(r)) == r  # JSON-ready, no NaN


def _world(n, ctr, seed, split=None, latency=None, days=10, buy=0.3):
    """n users over `days` days, one answer each; a click with the arm's probability, then a
    purchase of value 20 with probability `buy`. Arms from the hash, or `split` (share of
    control) by a biased coin."""
    rng = np.random.default_rng(seed)
    latency = latency or {}
    imps, evs = [], []
    for i in range(n):
        user = f"u{i}"
        arm = (EXP.arm_for(user).name if split is None else
               "control" if rng.random() < split else "treatment")
        ts = T0 + int(rng.integers(0, days * DAY_MS - 60_000))
        rid = f"r{i}"
        imps.append(_imp(rid, user, arm, ["i1", "i2"], ts,
                         latency=float(rng.gamma(4, latency.get(arm, 2.5)))))
        if rng.random() < ctr[arm]:
            evs.append(_ev(user, "i1", ts + 2000, rid=rid))
            if rng.random() < buy:
                evs.append(_ev(user, "i1", ts + 9000, "purchase", rid=rid, value=20.0))
    return _frames(imps, evs)


def test_a_clearly_better_arm_is_named_winner():
    imps, evs = _world(4000, {"control": 0.10, "treatment": 0.16}, seed=1)
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS)
    d = r["differences"]["treatment"]["ctr"]
    assert d["significant"] and d["p_value"] < 0.05 and d["ci_low"] < 0.06 < d["ci_high"]
    assert d["p_value"] >= d["fixed_horizon_p_value"]  # the always-valid p is the stricter
    assert r["winner"] == "treatment" and "treatment is better" in r["verdict"]
    assert not r["srm"]["flagged"] and all(g["ok"] for g in r["guardrails"].values())
    assert r["differences"]["treatment"]["value_per_user"]["difference"] > 0
    days = {row["day"] for row in r["daily"]}
    assert days == set(range(1, 11))  # a look per day, cumulative
    ctr = [row for row in r["daily"] if row["metric"] == "ctr" and row["arm"] == "treatment"]
    assert ctr[-1]["value"] == pytest.approx(r["arms"]["treatment"]["ctr"])
    assert ctr[-1]["ci_low"] < ctr[-1]["value"] < ctr[-1]["ci_high"]


def test_equal_arms_have_no_winner():
    imps, evs = _world(4000, {"control": 0.10, "treatment": 0.10}, seed=2)
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS)
    assert r["winner"] is None and not r["differences"]["treatment"]["ctr"]["significant"]
    assert r["verdict"].startswith("No significant difference on CTR yet")
    assert r["sample_size_per_arm"] > 2000  # a 5% lift on 10% needs far more users


def test_a_52_48_split_is_flagged_and_names_no_winner():
    imps, evs = _world(20_000, {"control": 0.10, "treatment": 0.16}, seed=3, split=0.52)
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS)
    assert r["srm"]["flagged"] and r["srm"]["p_value"] < 0.001
    assert r["winner"] is None and r["verdict"].startswith("Sample ratio mismatch")


def test_a_guardrail_breach_is_reported_and_blocks_the_winner():
    imps, evs = _world(4000, {"control": 0.10, "treatment": 0.16}, seed=1,
                       latency={"treatment": 10.0})  # p99 ~4x the control's
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS)
    rails = r["guardrails"]["treatment"]
    assert not rails["ok"] and rails["breaches"][0].startswith("latency p99")
    assert r["differences"]["treatment"]["ctr"]["significant"] and r["winner"] is None
    assert "breaches its guardrails" in r["verdict"]
    loose = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS,
                              guardrails=Guardrails(latency_factor=10.0))
    assert loose["winner"] == "treatment"


def test_no_data_yet_is_a_report_not_an_error():
    imps, evs = _frames([], [])
    imps = pd.DataFrame(columns=list(_imp("r", "u", "a", [], 0)))
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 1000)
    assert r["winner"] is None and r["arms"]["control"]["users"] == 0
    assert r["arms"]["control"]["ctr"] is None and not r["srm"]["flagged"]


def test_a_significantly_worse_arm_makes_the_control_the_winner():
    imps, evs = _world(4000, {"control": 0.16, "treatment": 0.10}, seed=4)
    r = experiment_report(EXP, imps, evs, started_ms=T0, now_ms=T0 + 10 * DAY_MS)
    d = r["differences"]["treatment"]["ctr"]
    assert d["significant"] and d["difference"] < 0 and d["ci_high"] < 0
    assert r["winner"] == "control" and r["verdict"].startswith("control (the control) is")
