"""Assignment: sticky across processes, shares as allocated, hostile definitions refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import chisquare

from models.experiments.assignment import Arm, Experiment, bucket, experiment

ROOT = Path(__file__).resolve().parents[3]
ARMS = [{"name": "control", "version": "current", "allocation": 5000},
        {"name": "treatment", "version": "20250101T000000Z-1a2b", "allocation": 3000},
        {"name": "other", "version": "v1", "allocation": 2000}]
IDS = [f"user-{n}" for n in range(200)] + [str(n) for n in range(50)] + ["é✓ ünïcode"]


def test_the_same_user_gets_the_same_arm_in_processes_with_different_hash_seeds():
    script = ("import json, sys; from models.experiments.assignment import Experiment as E; "
              "x = E.from_dict(json.loads(sys.argv[1])); "
              "print(json.dumps([x.arm_for(u).name for u in json.loads(sys.argv[2])]))")
    exp = experiment("exp1", ARMS, "salt-1")
    answers = []
    for seed in ("0", "1", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", script, json.dumps(exp.to_dict()), json.dumps(IDS)],
            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
            text=True, check=True).stdout
        answers.append(json.loads(out))
    here = [exp.arm_for(u).name for u in IDS]
    assert answers == [here] * 3
    assert set(here) == {"control", "treatment", "other"}


def test_the_bucket_is_a_fixed_function_of_salt_and_id():
    # Pinned: a change of hash would move every running experiment's users.
    assert bucket("salt-1", "user-1") == 3164
    assert bucket("ab", "c") != bucket("a", "bc")
    exp = experiment("e", ARMS, "s")
    assert exp.arm_for(42) == exp.arm_for("42") == exp.arm_for(" 42 ")


def test_shares_match_allocations_within_sampling_error_over_100000_ids():
    exp = experiment("shares", ARMS, "salt-shares")
    counts = {a.name: 0 for a in exp.arms}
    for n in range(100_000):
        counts[exp.arm_for(f"u{n}").name] += 1
    observed = [counts[a.name] for a in exp.arms]
    expected = [a.allocation * 10 for a in exp.arms]
    assert chisquare(observed, expected).pvalue > 0.001, observed


def test_a_new_salt_reshuffles_and_a_grown_arm_keeps_the_others_in_place():
    a = experiment("e", ARMS, "s1")
    b = experiment("e", ARMS, "s2")
    same = sum(a.arm_for(u) == b.arm_for(u) for u in IDS) / len(IDS)
    assert 0.2 < same < 0.6  # independent: 0.5² + 0.3² + 0.2² = 0.38
    grown = experiment("e", [{**ARMS[0], "allocation": 6000}, {**ARMS[1], "allocation": 2000},
                             ARMS[2]], "s1")
    moved = [u for u in IDS if a.arm_for(u).name != grown.arm_for(u).name]
    assert moved and all(grown.arm_for(u).name == "control" and a.arm_for(u).name == "treatment"
                         for u in moved)


def test_zero_allocation_arm_gets_nobody():
    exp = experiment("e", [{**ARMS[0], "allocation": 0}, {**ARMS[1], "allocation": 10_000}], "s")
    assert {exp.arm_for(u).name for u in IDS} == {"treatment"}


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "missing name"),
    ({"name": "a\x00b"}, "name holds a control character"),
    ({"name": ["x"]}, "name must be a string"),
    ({"salt": None}, "missing salt"),
    ({"salt": "x" * 300}, "salt is longer than"),
    ({"arms": "control"}, "arms must be a list"),
    ({"arms": {"name": "a"}}, "arms must be a list"),
    ({"arms": ARMS[:1]}, "at least two arms"),
    ({"arms": [ARMS[0], ARMS[0], ARMS[1]]}, "arms[1].name 'control' is used twice"),
    ({"arms": [ARMS[0], {**ARMS[1], "version": "v:1*"}, ARMS[2]]}, "arms[1].version must be"),
    ({"arms": [ARMS[0], {**ARMS[1], "version": None}, ARMS[2]]}, "arms[1].version must be"),
    ({"arms": [ARMS[0], {**ARMS[1], "allocation": 3000.0}, ARMS[2]]},
     "arms[1].allocation must be an integer"),
    ({"arms": [ARMS[0], {**ARMS[1], "allocation": True}, ARMS[2]]},
     "arms[1].allocation must be an integer"),
    ({"arms": [ARMS[0], {**ARMS[1], "allocation": "3000"}, ARMS[2]]},
     "arms[1].allocation must be an integer"),
    ({"arms": [ARMS[0], {**ARMS[1], "allocation": -1}, ARMS[2]]}, "between 0 and 10000"),
    ({"arms": [ARMS[0], {**ARMS[1], "allocation": 2999}, ARMS[2]]}, "sum to 9999, not 10000"),
    ({"arms": [ARMS[0], {**ARMS[1], "share": 1}, ARMS[2]]}, "arms[1] has unknown fields"),
    ({"arms": [ARMS[0], "v1"]}, "arms[1] must be an object"),
    ({"arms": [ARMS[0]] + [{**ARMS[1], "name": f"a{i}", "allocation": 0} for i in range(30)]},
     "at most 20 arms"),
    ({"extra": 1}, "unknown fields ['extra']"),
])
def test_bad_definitions_are_refused_naming_the_field(change, field):
    with pytest.raises(ValueError) as err:
        Experiment.from_dict({"name": "e", "arms": ARMS, "salt": "s", **change})
    assert field in str(err.value)


def test_bad_user_ids_and_direct_construction_are_refused():
    exp = experiment("e", ARMS, "s")
    for bad, reason in ((None, "missing user_id"), ("", "missing user_id"),
                        ([1], "user_id must be"), ("a\nb", "user_id holds a control")):
        with pytest.raises(ValueError, match=reason):
            exp.arm_for(bad)
    with pytest.raises(ValueError, match="sum to 15000"):
        Experiment("e", (Arm("a", "v1", 5000), Arm("b", "v2", 10_000)), "s")
    assert Experiment.from_dict(exp.to_dict()) == exp
