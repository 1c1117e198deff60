"""The DQN stage's deployment guard: per-segment margins chosen on validation cases pooled
over windows, applied by the NumPy policy, kept by the export (NumPy side only; the
end-to-end fit is in test_served_dqn_kind)."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models import dqn_guard
from models.dqn import STRATEGIES, QPolicy, state_dim
from models.dqn_config import DQNConfig
from models.dqn_export import load, save
from models.dqn_guard import decide_margins, guard_margins, guard_origins, origin_split


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


def _window(n: int, cost: float, noise: float = 0.0, seed: int = 0):
    """A window's evidence (served, {0.2: stage}, fresh) of n warm cases: the stage at margin
    0.2 costs a share `cost` of served's NDCG@10 on average, with centred noise (sd `noise`)
    case by case."""
    rng = np.random.default_rng(seed)
    served = rng.uniform(0.2, 0.8, n)
    e = rng.normal(0, noise, n) if noise else np.zeros(n)
    return served, {0.2: served * (1 - cost) + e - e.mean()}, np.zeros(n, bool)


def _guard(monkeypatch, evidence: dict, guard_windows=None):
    """guard_margins over ServedConfig.windows (0.7, 0.8, 0.9) with each origin's evidence
    given (window_ndcg replaced: no fit); the origins it asked for are recorded."""
    asked = []

    def fake(train, users, items, start, end, *args):
        asked.append((start, end))
        return evidence[(start, end)]

    monkeypatch.setattr(dqn_guard, "window_ndcg", fake)
    margins, report = guard_margins(None, None, None, SimpleNamespace(windows=(0.9, 0.7, 0.8)),
                                    DQNConfig(guard_margins=(0.2,), guard_windows=guard_windows))
    return margins, report, asked


def test_the_guard_pools_its_windows_and_one_passing_window_is_not_enough(monkeypatch):
    # the latest window alone: the stage changes nothing there (ratio 1, passes); the two
    # earlier ones: it costs 15% (0.85 on 100 cases each); pooled ~0.90: refused
    evidence = {(0.7, 0.8): _window(100, 0.15, seed=1), (0.8, 0.9): _window(100, 0.15, seed=2),
                (0.9, 1.0): _window(60, 0.0, seed=3)}
    margins, report, asked = _guard(monkeypatch, evidence)
    assert asked == [(0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]  # default: all of served's windows
    assert margins["warm"] == math.inf and report["warm"]["margin"] is None
    assert report["windows"]["0.9:1"]["warm"]["margin"] == 0.2  # alone it would have passed
    assert report["windows"]["0.7:0.8"]["warm"]["margin"] is None
    assert report["cases"] == report["warm"]["cases"] == 260
    assert report["warm"]["tried"]["0.2"]["ratio_ci"][1] < 0.97
    margins, report, asked = _guard(monkeypatch, evidence, guard_windows=1)
    assert asked == [(0.9, 1.0)] and list(report["windows"]) == ["0.9:1"]
    assert margins["warm"] == 0.2 and report["cases"] == 60


def test_pooled_windows_bound_a_cost_that_one_small_window_cannot(monkeypatch):
    # no cost on average in any window, noise sd 0.1 per case: 20 cases bound the ratio only
    # to about +-9% (refused), 20 + 2 x 300 to about +-2% (passes)
    evidence = {(0.7, 0.8): _window(300, 0.0, 0.1, seed=1),
                (0.8, 0.9): _window(300, 0.0, 0.1, seed=2),
                (0.9, 1.0): _window(20, 0.0, 0.1, seed=3)}
    margins, report, _ = _guard(monkeypatch, evidence, guard_windows=1)
    assert margins["warm"] == math.inf
    assert report["warm"]["tried"]["0.2"]["ratio_ci"][0] < 0.97
    margins, report, asked = _guard(monkeypatch, evidence, guard_windows=2)
    assert asked == [(0.8, 0.9), (0.9, 1.0)] and report["cases"] == 320
    assert margins["warm"] == 0.2 and report["warm"]["tried"]["0.2"]["ratio_ci"][0] >= 0.97
    assert report["windows"]["0.9:1"]["warm"]["margin"] is None  # its own decision, reported
    served, staged, fresh = (np.concatenate(x) for x in zip(
        *[(s, st[0.2], f) for s, st, f in (evidence[(0.8, 0.9)], evidence[(0.9, 1.0)])],
        strict=True))
    assert decide_margins(served, {0.2: staged}, fresh, 0.03)[0] == margins  # the same rule


def test_a_window_without_cases_is_reported_and_none_at_all_turns_the_stage_off(monkeypatch):
    evidence = {(0.8, 0.9): None, (0.9, 1.0): _window(100, 0.0, seed=3)}
    margins, report, _ = _guard(monkeypatch, evidence, guard_windows=2)
    assert report["windows"]["0.8:0.9"] == {"cases": 0} and margins["warm"] == 0.2
    margins, report, _ = _guard(monkeypatch, {(0.9, 1.0): None}, guard_windows=1)
    assert margins == {"warm": math.inf, "fresh": math.inf} and report["cases"] == 0


def test_the_origins_are_served_windows_each_up_to_the_next_and_their_count_is_checked():
    assert guard_origins((0.9, 0.7, 0.8)) == [(0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]
    assert guard_origins((0.7, 0.8, 0.9), 2) == [(0.8, 0.9), (0.9, 1.0)]
    with pytest.raises(ValueError, match="guard_windows 4: at most the 3 windows"):
        guard_origins((0.7, 0.8, 0.9), 4)
    with pytest.raises(ValueError, match="DQNConfig.guard_windows 0"):
        DQNConfig(guard_windows=0)


def test_each_origin_tests_on_its_own_events_only():
    t = np.arange(100)  # 10 users taking turns: every window has warm cases
    train = pd.DataFrame({"user_id": (t % 10).astype(str), "item_id": t.astype(str),
                          "timestamp": t.astype(float)})
    early, last = origin_split(train, 0.7, 0.8), origin_split(train, 0.9, 1.0)
    assert early.train["timestamp"].max() < 70 <= early.test["timestamp"].min()
    assert early.test["timestamp"].max() < 80  # not the later windows' truth
    assert last.train["timestamp"].max() < 90 and last.test["timestamp"].max() == 99


def test_a_users_cases_from_several_windows_count_as_one_users_evidence():
    # 4 users with 30 cases each (one user's in three windows, say): the stage costs user
    # "d" 6% and nobody else anything, ratio 0.985. Taken as 120 independent cases the
    # interval is narrow and passes; resampling the 4 users with their cases (a draw with
    # "d" three times out of four is not rare) it reaches below 0.97 and is refused.
    users = np.repeat(np.array(["a", "b", "c", "d"], dtype=object), 30)
    served = np.ones(120)
    staged = np.where(users == "d", 0.94, 1.0)
    fresh = np.zeros(120, bool)
    margins, report = decide_margins(served, {0.2: staged}, fresh, 0.03)
    assert margins["warm"] == 0.2 and report["warm"]["users"] == 120
    margins, report = decide_margins(served, {0.2: staged}, fresh, 0.03, users=users)
    assert margins["warm"] == math.inf and report["warm"]["users"] == 4
    assert report["warm"]["tried"]["0.2"]["ratio"] == 0.985  # the point ratio is the same
    assert report["warm"]["tried"]["0.2"]["ratio_ci"][0] < 0.97
    one = decide_margins(served, {0.2: staged}, fresh, 0.03, users=np.full(120, "a"))
    assert one[0]["warm"] == math.inf and one[1]["warm"]["tried"] == {}  # one user: no evidence


def test_the_pooled_guard_resamples_users_across_windows(monkeypatch):
    # two windows of the same 3 users (20 cases each per window): user "c" loses 6%
    def window(seed):
        users = np.repeat(np.array(["a", "b", "c"], dtype=object), 20)
        served = np.random.default_rng(seed).uniform(0.4, 0.6, 60)
        return served, {0.2: np.where(users == "c", 0.94, 1.0) * served}, \
            np.zeros(60, bool), users
    evidence = {(0.8, 0.9): window(1), (0.9, 1.0): window(2)}
    margins, report, _ = _guard(monkeypatch, evidence, guard_windows=2)
    assert report["warm"]["users"] == 3 and report["cases"] == 120
    assert margins["warm"] == math.inf
    plain = {k: v[:3] for k, v in evidence.items()}  # the same cases, users unknown
    margins, report, _ = _guard(monkeypatch, plain, guard_windows=2)
    assert report["warm"]["users"] == 120 and margins["warm"] == 0.2
