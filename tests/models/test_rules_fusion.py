"""models.rules.fuse (the served model's score fusion) on hand-made pools whose answers are
worked out in the comments."""

import numpy as np
import pytest

from models.rules import fuse

NEG = -np.inf
# one pool of three candidates and a pad: the ranker's order is 0, 1, 2; the source's 2, 1, 0
SCORES = np.array([[3.0, 2.0, 1.0, NEG]], np.float32)
SOURCE = np.array([[0.0, 1.0, 5.0, 9.0]])  # the pad's 9 must not count


def test_z_fusion_adds_the_sources_z_score_in_the_rankers_spread():
    # ranker std over (3, 2, 1): sqrt(2/3); source (0, 1, 5): mean 2, std sqrt(14/3), so
    # z = (-2, -1, 3) / sqrt(14/3) and score + 1 x sqrt(2/3) x z = 3 - 0.756, 2 - 0.378,
    # 1 + 1.134: item 2 passes item 1 (2.134 > 1.622) but not item 0 (2.244).
    got = fuse(SCORES, SOURCE, np.array([1.0]), "z")
    z = np.array([-2.0, -1.0, 3.0]) / np.sqrt(14 / 3)
    np.testing.assert_allclose(got[0, :3], [3, 2, 1] + np.sqrt(2 / 3) * z, rtol=1e-6)
    assert got[0, 3] == NEG
    assert np.argsort(-got[0]).tolist() == [0, 2, 1, 3]


def test_rrf_hands_out_the_rankers_scores_in_the_fused_order():
    # ranks (0, 1, 2) and (2, 1, 0): 1/60 + 1/62 = 1/62 + 1/60 > 2/61, so items 0 and 2 tie
    # ahead of item 1 (position breaks the tie): the order 0, 2, 1 takes the scores 3, 2, 1.
    got = fuse(SCORES, SOURCE, np.array([1.0]), "rrf")
    assert got[0].tolist() == [3.0, 1.0, 2.0, NEG]
    # weight 5: the source's order wins outright (5/60 + 1/62 > 5/61 + 1/61 > 5/62 + 1/60)
    assert fuse(SCORES, SOURCE, np.array([5.0]), "rrf")[0].tolist() == [1.0, 2.0, 3.0, NEG]


@pytest.mark.parametrize("kind", ["z", "rrf"])
def test_weight_zero_leaves_the_rankers_scores_and_a_row_is_fused_by_its_own_weight(kind):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 8)).astype(np.float32)
    scores[1, 6:] = NEG
    source = rng.normal(size=(3, 8))
    np.testing.assert_array_equal(fuse(scores, source, np.zeros(3), kind), scores)
    got = fuse(scores, source, np.array([0.0, 3.0, 0.0]), kind)
    np.testing.assert_array_equal(got[[0, 2]], scores[[0, 2]])
    assert np.argsort(-got[1]).tolist() != np.argsort(-scores[1]).tolist()
    assert np.isneginf(got[1, 6:]).all()


def test_a_constant_source_changes_nothing_and_a_bad_kind_is_refused():
    flat = np.ones_like(SOURCE)
    np.testing.assert_array_equal(fuse(SCORES, flat, np.array([2.0]), "z"), SCORES)
    with pytest.raises(ValueError, match="fusion kind"):
        fuse(SCORES, SOURCE, np.array([1.0]), "sum")


@pytest.mark.parametrize("kind", ["z", "rrf"])
def test_items_fused_against_their_pool_get_the_order_they_have_in_the_pool(kind):
    # ServedRecommender.score fuses a few given items with the statistics of the user's
    # whole pool: a subset must come out in the order the fused pool gives it, which fusing
    # the subset on its own statistics does not guarantee
    rng = np.random.default_rng(4)
    scores = rng.normal(0, 1, (6, 40)).astype(np.float32)
    source = rng.gamma(1.0, 1.0, (6, 40))
    source[:, :3] = 60.0  # a few items whose source score dominates the pool's spread
    w = np.full(6, 0.5)
    whole = fuse(scores, source, w, kind)
    pick = np.stack([rng.permutation(40)[:8] for _ in range(6)])
    rows = np.arange(6)[:, None]
    got = fuse(scores[rows, pick], source[rows, pick], w, kind,
               ref=(scores, source))
    for g, h in zip(got, whole[rows, pick], strict=True):
        assert np.argsort(-g, kind="stable").tolist() == np.argsort(-h, kind="stable").tolist()
    if kind == "z":
        np.testing.assert_allclose(got, whole[rows, pick], rtol=1e-5)
    unchanged = fuse(scores[rows, pick], source[rows, pick], np.zeros(6), kind,
                     ref=(scores, source))
    np.testing.assert_array_equal(unchanged, scores[rows, pick])
