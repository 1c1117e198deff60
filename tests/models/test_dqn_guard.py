"""The DQN stage's deployment guard: per-segment margins chosen on validation cases, applied
by the NumPy policy, kept by the export (NumPy side only; the end-to-end fit is in
test_served_dqn_kind)."""

import math

import numpy as np

from models.dqn import STRATEGIES, QPolicy, state_dim
from models.dqn_export import load, save
from models.dqn_guard import decide_margins


def _policy(margins=None) -> QPolicy:
    """Q = [0, 0, 0, 1] for every state: strategy 3 has an advantage of 1 over served."""
    S = state_dim(3)
    b = np.zeros(len(STRATEGIES), np.float32)
    b[3] = 1.0
    return QPolicy((np.zeros((S, len(STRATEGIES)), np.float32), b), 6, 10, 0.2, margins)


def test_each_segment_takes_its_own_margin_and_inf_keeps_served_order():
    policy = _policy({"warm": math.inf, "fresh": 0.5})
    x = np.zeros((3, state_dim(3)), np.float32)
    assert policy.act(x, np.array([False, True, False])).tolist() == [0, 3, 0]
    assert policy.act(x, True).tolist() == [3, 3, 3]
    assert policy.act(x).tolist() == [3, 3, 3]  # no segment given: the single margin 0.2
    assert _policy({"fresh": 2.0}).act(x, np.array([False, True, True])).tolist() == [3, 0, 0]


def test_the_guard_takes_the_smallest_margin_within_budget_with_confidence():
    rng = np.random.default_rng(0)
    n = 200
    fresh = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    served = rng.random(2 * n)
    halved = served * np.where(fresh, 0.5, 1.0)  # margin 0.2: warm unchanged, fresh halved
    slight = served * np.where(fresh, 0.995, 1.0)  # margin 0.5: fresh -0.5%
    margins, report = decide_margins(served, {0.5: slight, 0.2: halved, 1.0: served}, fresh,
                                     budget=0.03)
    assert margins == {"warm": 0.2, "fresh": 0.5}
    assert report["fresh"]["tried"]["0.2"]["ratio"] == 0.5
    assert report["fresh"]["tried"]["0.5"]["ratio_ci"][0] >= 0.97


def test_a_noisy_cost_turns_the_segment_off_and_so_does_no_evidence():
    rng = np.random.default_rng(1)
    served = rng.random(40)
    noisy = np.clip(served + rng.normal(0, 0.4, 40), 0, 1)  # its mean may be near, its
    fresh = np.r_[np.zeros(39, bool), np.ones(1, bool)]  # interval is far below 0.97
    margins, report = decide_margins(served, {0.2: noisy}, fresh, budget=0.03)
    assert margins == {"warm": math.inf, "fresh": math.inf}  # one fresh case: no evidence
    assert report["warm"]["margin"] is None and report["fresh"]["tried"] == {}
    assert report["warm"]["tried"]["0.2"]["ratio_ci"][0] < 0.97


def test_the_margins_survive_the_export_files(tmp_path):
    policy = _policy({"warm": math.inf, "fresh": 0.3})
    save(policy, str(tmp_path))
    back = load(str(tmp_path))
    assert back.margins == {"warm": math.inf, "fresh": 0.3} and back.margin == 0.2
    save(_policy(), str(tmp_path))
    assert load(str(tmp_path)).margins is None
