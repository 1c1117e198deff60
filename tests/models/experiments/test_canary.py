"""The canary decision (models/experiments/canary.py) on hand-made reports, one per branch."""

import copy
import json

import pytest

from models.experiments.canary import PROMOTE, ROLLBACK, WAIT, decide

# A canary at 10% that holds: 1,200 users on it, CTR 0.101 vs 0.100, the always-valid
# interval of the difference [-0.012, 0.014] straddles 0, no breach, no SRM.
HEALTHY = {
    "control": "control",
    "arms": {"control": {"version": "v1", "users": 10_800, "impressions": 40_000, "ctr": 0.100},
             "canary": {"version": "v2", "users": 1_200, "impressions": 4_400, "ctr": 0.101}},
    "differences": {"canary": {"ctr": {"difference": 0.001, "ci_low": -0.012, "ci_high": 0.014,
                                       "p_value": 0.9, "significant": False}}},
    "guardrails": {"control": {"ok": True, "breaches": []},
                   "canary": {"ok": True, "breaches": []}},
    "srm": {"p_value": 0.4, "flagged": False},
}


def _report(**changes):
    """HEALTHY with `changes` applied at dotted paths: {"arms.canary.users": 10}."""
    report = copy.deepcopy(HEALTHY)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = report
        for key in parents:
            node = node[key]
        node[leaf] = value
    return report


def test_enough_users_guardrails_holding_and_ctr_not_worse_promote():
    d = decide(HEALTHY)
    assert d.action == PROMOTE
    assert d.reasons == ["1000+ users per arm, guardrails hold, ctr not significantly worse "
                         "(canary − control = 0.001, always-valid p = 0.9; interval "
                         "[-0.012, 0.014])"]
    assert d.figures["users"] == {"control": 10_800, "canary": 1_200}
    assert d.figures["ctr_difference"]["ci_high"] == 0.014
    json.dumps(d.to_dict())  # recordable as it is


def test_a_guardrail_breach_rolls_back_whatever_the_clicks_say():
    breached = _report(**{"guardrails.canary": {"ok": False,
                                                "breaches": ["latency p99 412 ms > 250 ms"]},
                          "differences.canary.ctr.ci_low": 0.01})  # even significantly better
    d = decide(breached)
    assert d.action == ROLLBACK
    assert d.reasons == ["guardrail breached on arm 'canary': latency p99 412 ms > 250 ms"]
    # A breach of the control arm is not the canary's doing.
    assert decide(_report(**{"guardrails.control": {"ok": False, "breaches": ["x"]}})
                  ).action == PROMOTE


def test_a_breach_waits_for_the_minimum_impressions():
    early = _report(**{"guardrails.canary": {"ok": False, "breaches": ["error rate 1/20"]},
                       "arms.canary.impressions": 20})
    d = decide(early)
    assert d.action == WAIT and "pending breaches: error rate 1/20" in " ".join(d.reasons)
    assert decide(early, min_impressions=20).action == ROLLBACK


def test_sample_ratio_mismatch_rolls_back():
    d = decide(_report(srm={"p_value": 1e-6, "flagged": True}))
    assert d.action == ROLLBACK and d.reasons[0].startswith("sample-ratio mismatch (p = 1e-06)")


def test_ctr_significantly_worse_rolls_back_as_soon_as_seen():
    worse = _report(**{"differences.canary.ctr": {"difference": -0.03, "ci_low": -0.05,
                                                  "ci_high": -0.004, "p_value": 0.01,
                                                  "significant": True},
                       "arms.canary.users": 300})  # before the minimum sample
    d = decide(worse)
    assert d.action == ROLLBACK
    assert d.reasons == ["ctr significantly worse: canary − control = -0.03 (always-valid "
                         "p = 0.01; interval [-0.05, -0.004])"]
    # Worse but not significantly by the always-valid p-value: a promotion, given the sample,
    # even though the one-look interval lies below 0 (an hourly check must not act on it).
    assert decide(_report(**{"differences.canary.ctr": {
        "difference": -0.02, "ci_low": -0.04, "ci_high": -0.001, "p_value": 0.2,
        "significant": False}})).action == PROMOTE
    # Significantly better is not worse.
    assert decide(_report(**{"differences.canary.ctr.significant": True})).action == PROMOTE


def test_a_canary_whose_control_is_no_longer_current_is_stopped_not_promoted():
    d = decide(HEALTHY, current="v3")  # a plain nightly run published v3 meanwhile
    assert d.action == ROLLBACK and d.reasons == [
        "current moved to v3 since the canary started (its control serves v1): promoting "
        "would replace v3, so the canary stops and everyone gets it"]
    assert d.figures["current"] == "v3"
    assert decide(HEALTHY, current="v1").action == PROMOTE


@pytest.mark.parametrize("changes, reason", [
    ({"arms.canary.users": 999}, "fewer than 1000 users per arm yet (canary has 999)"),
    ({"arms.control.users": 5}, "(control has 5)"),
    ({"differences": {}}, "no ctr difference in the report yet"),
    ({"differences.canary.ctr": {"difference": None, "ci_low": None, "ci_high": None,
                                 "p_value": None, "significant": False}},
     "no ctr difference in the report yet"),  # the report's empty difference
    ({"arms": {"control": {"users": 3000}}}, "canary has 0"),  # no traffic on the canary yet
])
def test_too_little_data_waits(changes, reason):
    d = decide(_report(**changes))
    assert d.action == WAIT and reason in " ".join(d.reasons)


def test_thresholds_and_arm_names_are_arguments():
    assert decide(HEALTHY, min_users=2_000).action == WAIT
    renamed = _report(arms={"control": HEALTHY["arms"]["control"],
                            "new": HEALTHY["arms"]["canary"]},
                      differences={"new": HEALTHY["differences"]["canary"]})
    assert decide(renamed).action == WAIT
    assert decide(renamed, canary_arm="new").action == PROMOTE


@pytest.mark.parametrize("report, kwargs, match", [
    ({"arms": {}}, {}, "control arm None is missing"),
    (HEALTHY, {"canary_arm": "control"}, "is the canary arm"),
    (HEALTHY, {"min_users": 0}, "min_users must be an integer >= 1"),
    (HEALTHY, {"min_impressions": 2.5}, "min_impressions must be an integer"),
])
def test_bad_inputs_are_refused_naming_them(report, kwargs, match):
    with pytest.raises(ValueError, match=match):
        decide(report, **kwargs)
