"""The DQN stage's NumPy side: strategies, states, the policy, off-policy estimates."""

import numpy as np
import pytest

from models.dqn import (
    HEAD,
    RANDOM,
    STRATEGIES,
    QPolicy,
    choose,
    rerank,
    rerank_lists,
    state_dim,
    states,
    unit,
)
from models.ope import ips, snips


def _two_clusters():
    """Items 0-4 near axis 0, items 5-9 near axis 1; served's pool lists 0..4 then 5..9."""
    rng = np.random.default_rng(0)
    emb = unit(np.r_[np.tile([1.0, 0, 0], (5, 1)), np.tile([0, 1.0, 0], (5, 1))]
               + 0.01 * rng.normal(size=(10, 3)))
    return emb, np.arange(10)[None]


def test_served_strategy_keeps_served_order_and_skips_what_was_shown():
    emb, pool = _two_clusters()
    avail = np.ones_like(pool, bool)
    avail[0, [1, 3]] = False
    out = rerank(pool, avail, emb, np.zeros((1, 3)), np.array([0]), 4)
    assert out.tolist() == [[0, 2, 4, 5]]


def test_strong_mmr_alternates_the_clusters_and_mild_mmr_does_not():
    emb, pool = _two_clusters()
    avail = np.ones_like(pool, bool)
    strong = rerank(pool, avail, emb, np.zeros((1, 3)), np.array([STRATEGIES.index("mmr_0.25")]),
                    4, head=0, window=10)
    # 0, then 5 (cosine ~0 to 0, against ~1 for 1..4); then both clusters are covered and
    # relevance decides: 1, 2
    assert strong.tolist() == [[0, 5, 1, 2]]
    # orthogonal items: nothing to diversify, served's order stays
    mild = rerank(np.arange(4)[None], np.ones((1, 4), bool), unit(np.eye(4)), np.zeros((1, 4)),
                  np.array([1]), 4, head=0, window=10)
    assert mild.tolist() == [[0, 1, 2, 3]]


def test_strategies_keep_served_head_and_pick_within_the_window():
    emb, pool = _two_clusters()
    out = rerank(pool, np.ones_like(pool, bool), emb, np.zeros((1, 3)), np.array([3]), 6,
                 head=2, window=3)
    # slots 0, 1: served's 0, 1; slot 2 among the first 3 free (2, 3, 4), one cluster: 2;
    # slot 3 among 3, 4, 5: 5 (the other cluster); then both clusters are covered and
    # relevance decides among 3, 4, 6 and then 4, 6, 7
    assert out.tolist() == [[0, 1, 2, 5, 3, 4]]
    # a window of 1 is served's order whatever the strategy
    same = rerank(pool, np.ones_like(pool, bool), emb, np.zeros((1, 3)), np.array([3]), 6,
                  head=0, window=1)
    assert same.tolist() == [[0, 1, 2, 3, 4, 5]]


def test_choose_falls_back_to_served_unless_the_advantage_clears_the_margin():
    q = np.array([[1.0, 1.2, 1.05, 0.9], [1.0, 1.05, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert choose(q, 0.0).tolist() == [1, 1, 0]
    assert choose(q, 0.1).tolist() == [1, 0, 0]
    assert choose(q, 0.5).tolist() == [0, 0, 0]


def test_a_short_pool_pads_with_minus_one_and_random_is_a_permutation():
    emb, _ = _two_clusters()
    pool = np.array([[3, 7, -1, -1]])
    out = rerank(pool, np.ones((1, 4), bool), emb, np.zeros((1, 3)), np.array([2]), 3)
    assert sorted(out[0, :2].tolist()) == [3, 7] and out[0, 2] == -1
    rng = np.random.default_rng(1)
    pools = np.tile(np.arange(10), (50, 1))
    shuffled = rerank(pools, np.ones_like(pools, bool), emb, np.zeros((50, 3)),
                      np.full(50, RANDOM), 10, rng)
    assert all(sorted(r) == list(range(10)) for r in shuffled.tolist())
    assert (shuffled != pools).any()


def test_states_have_the_documented_layout():
    emb, pool = _two_clusters()
    B = 3
    pools = np.tile(pool, (B, 1))
    s = states(unit(np.ones((B, 3))), np.zeros((B, 3)), pools, np.ones_like(pools, bool), emb,
               0.5, np.array([0.0, 2.0, 4.0]), 4)
    assert s.shape == (B, state_dim(3)) and s.dtype == np.float32 and np.isfinite(s).all()
    ctx = s[:, 6:]
    assert np.allclose(ctx[:, 0], 0.5) and np.allclose(ctx[:, 1], [0, 0.5, 1.0])
    assert np.allclose(ctx[:, 2], 1.0)  # the whole pool is left
    served_pairs, strong_pairs = ctx[0, 3 + 1], ctx[0, 3 + 3 * 3 + 1]
    assert served_pairs > 0.9 and strong_pairs < 0.5  # served's 4 are one cluster


def test_the_policy_takes_the_best_q_and_the_stage_applies_it():
    S = state_dim(3)
    W = np.zeros((S, len(STRATEGIES)), np.float32)
    b = np.zeros(len(STRATEGIES), np.float32)
    b[3] = 1.0
    policy = QPolicy((W, b), horizon=6, slate=4)
    emb, pool = _two_clusters()
    h = max(HEAD, 1)  # MMR's first pick is served's first anyway
    items, actions = rerank_lists(policy, unit(np.ones((1, 3))), np.zeros((1, 3)), pool, emb,
                                  h + 2)
    # served's head, then the other cluster's best, then relevance
    assert actions.tolist() == [3] and items.tolist() == [list(range(h)) + [5, h]]
    tie = QPolicy((W, np.zeros_like(b)), 6, 4)
    assert tie.act(np.zeros((2, S), np.float32)).tolist() == [0, 0]  # ties: served
    cautious = QPolicy((W, b), 6, 4, margin=1.0)  # an advantage of 1 does not clear 1
    assert cautious.act(np.zeros((1, S), np.float32)).tolist() == [0]


def test_ips_and_snips_recover_a_known_bandit_value():
    """Two actions logged uniformly; action 1 pays 1 with probability 0.7, action 0 with 0.2.
    The policy 'always 1' is worth 0.7."""
    rng = np.random.default_rng(0)
    n = 4000
    a = rng.integers(0, 2, n)
    r = (rng.random(n) < np.where(a == 1, 0.7, 0.2)).astype(float)
    target = (a == 1).astype(float)
    for est in (ips(r, target, np.full(n, 0.5)), snips(r, target, np.full(n, 0.5))):
        assert est["value"] == pytest.approx(0.7, abs=0.05)
        assert est["ci"][0] < 0.7 < est["ci"][1]


def test_off_policy_refuses_steps_without_propensities():
    with pytest.raises(ValueError, match="propensity"):
        ips([1.0], [1.0], None)
    with pytest.raises(ValueError, match="logging_probs"):
        snips([1.0, 0.0], [1.0, 0.0], [0.5, 0.0])
