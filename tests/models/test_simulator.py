"""The ground-truth simulator: seeded, and its dynamics do what models/simulator.py says."""

from dataclasses import replace

import numpy as np
import pytest

from models.dqn import unit
from models.rl_sessions import Pools, run_sessions
from models.simulator import SETTINGS, SimConfig, Simulator


def _world():
    """Two users along axes 0 and 11 of 12; items 0-9 near-duplicates along axis 0, items
    10-19 relevant to user 0 but varied (0.7 along axis 0, 0.71 along axes 1..10: cosine 0.49
    to each other), 20-29 along axis 11."""
    rng = np.random.default_rng(0)
    eye = np.eye(12)
    dup = unit(eye[0] + 0.01 * rng.normal(size=(10, 12)))
    varied = unit(0.7 * eye[0] + 0.714 * eye[1:11])
    other = unit(eye[11] + 0.01 * rng.normal(size=(10, 12)))
    return eye[[0, 11]], np.concatenate([dup, varied, other])


def test_same_seed_same_sessions_and_other_seed_other_sessions():
    users, items = _world()
    sim = Simulator(users, items, SETTINGS[0])
    slates = np.tile(np.arange(10), (64, 1))
    runs = []
    for seed in (1, 1, 2):
        s = sim.reset(np.zeros(64, np.int64), seed)
        runs.append(np.concatenate([sim.step(s, slates)[1] for _ in range(3)]))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_near_duplicates_below_the_first_are_clicked_less_than_varied_items():
    users, items = _world()
    sim = Simulator(users, items, replace(SETTINGS[0], position=0.0))
    s = sim.reset(np.zeros(2, np.int64), 0)
    p = sim.click_probs(s, np.array([np.arange(10), np.arange(10, 20)]))
    assert p[0, 0] > p[1, 0]  # the duplicate is the more relevant item alone
    assert p[0, 1:].sum() < 0.9 * p[1, 1:].sum()  # but its copies below it are skipped


def test_fatigue_lowers_later_clicks_and_fades():
    users, items = _world()
    sim = Simulator(users, items, SETTINGS[0])
    s = sim.reset(np.zeros(1, np.int64), 0)
    first = sim.click_probs(s, np.array([[0]]))[0, 0]
    sim.step(s, np.array([np.arange(10)]))
    tired = sim.click_probs(s, np.array([[0]]))[0, 0]
    s.fatigue *= 0.0
    assert tired < 0.9 * first
    assert sim.click_probs(s, np.array([[0]]))[0, 0] == pytest.approx(first)


def test_empty_places_are_never_clicked_and_ended_sessions_earn_nothing():
    users, items = _world()
    sim = Simulator(users, items, SETTINGS[0])
    s = sim.reset(np.zeros(3, np.int64), 0)
    s.alive[2] = False
    clicks, rewards = sim.step(s, np.array([[0, -1, -1]] * 3))
    assert not clicks[:, 1:].any() and rewards[2] == 0 and not s.alive[2]


def test_a_monotonous_policy_leaves_sooner_than_a_varied_one_of_equal_relevance():
    """User 0 sees either near-duplicates of their taste or relevant varied items: the
    varied sessions last longer and earn more (the long-term effect a policy can learn)."""
    users, items = _world()
    cfg = replace(SETTINGS[0], slate=5, horizon=6)
    sim = Simulator(users, items, cfg)
    B = 400
    emb = items
    dup = Pools(np.zeros(B, np.int64), np.tile(np.r_[np.arange(10), np.arange(20, 30)], (B, 1)),
                np.tile(users[0], (B, 1)), np.zeros((B, 12)))
    varied = Pools(dup.users, np.tile(np.arange(10, 30), (B, 1)), dup.query, dup.recent)
    r_dup = run_sessions(sim, dup, emb, "served", 3)[0].mean()
    r_var = run_sessions(sim, varied, emb, "served", 3)[0].mean()
    assert r_var > 1.2 * r_dup


def test_the_horizon_ends_every_session():
    users, items = _world()
    sim = Simulator(users, items, replace(SETTINGS[0], horizon=2, continue_bias=50.0))
    s = sim.reset(np.zeros(5, np.int64), 0)
    sim.step(s, np.tile(np.arange(10), (5, 1)))
    assert s.alive.all()
    sim.step(s, np.tile(np.arange(10, 20), (5, 1)))
    assert not s.alive.any()


def test_bad_settings_say_which_field():
    with pytest.raises(ValueError, match="horizon"):
        SimConfig(horizon=0)
    with pytest.raises(ValueError, match="fatigue_decay"):
        SimConfig(fatigue_decay=1.5)


def test_the_two_settings_differ_in_their_dynamics():
    a, b = SETTINGS
    assert a.name != b.name and (a.fatigue, a.redundancy) != (b.fatigue, b.redundancy)
