"""Baselines on tiny train sets whose rankings are worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from models.baselines import (
    ItemKNN,
    ItemKNNConfig,
    Popularity,
    RecentPopularity,
    RecentPopularityConfig,
    top_k_indices,
)
from models.evaluation import Recommender
from models.schema import SECONDS_PER_DAY as DAY


def events(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def brute_force(scores, k):
    """Reference: a stable sort by -score keeps the smaller index first among ties."""
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        out.append(order[np.isfinite(row[order]) | (row[order] > 0)][:k])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_top_k_matches_brute_force_with_ties_and_exclusions(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(30, 17)).astype(float)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    for k in (1, 5, 17, 25):
        got, want = top_k_indices(scores, k), brute_force(scores, k)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_popularity_counts_events_and_breaks_ties_by_natural_id():
    # Counts: "10": 2, "9": 2 (repeat counted), "2": 1, "100": 1, "3": 3.
    train = events([("a", "10", 1), ("b", "10", 2), ("a", "9", 3), ("a", "9", 4),
                    ("c", "2", 5), ("c", "100", 6), ("a", "3", 1), ("b", "3", 2), ("c", "3", 3)])
    model = Popularity().fit(train, None, None)
    assert isinstance(model, Recommender)
    assert model.recommend(["x"], [[]], 10, True) == [["3", "9", "10", "2", "100"]]
    assert model.recommend(["a", "c"], [["3", "9"], ["nope"]], 2, False) == [
        ["10", "2"], ["3", "9"]]


def test_recent_popularity_ranks_the_window_then_fills_by_popularity():
    # Last train event at day 30; a 7-day window starts at day 23.
    train = events([
        ("a", "old", 1 * DAY), ("b", "old", 2 * DAY), ("c", "old", 3 * DAY),  # 3, none recent
        ("a", "r1", 24 * DAY),  # 1 recent, 1 overall
        ("a", "r2", 10 * DAY), ("b", "r2", 25 * DAY),  # 1 recent, 2 overall: beats r1
        ("a", "r3", 29 * DAY), ("b", "r3", 30 * DAY),  # 2 recent
        ("d", "mid", 5 * DAY), ("e", "mid", 6 * DAY),  # 2, none recent
    ])
    model = RecentPopularity(RecentPopularityConfig(window_days=7)).fit(train, None, None)
    assert model.recommend(["x"], [[]], 10, True) == [["r3", "r2", "r1", "old", "mid"]]
    assert model.recommend(["x"], [["r3"]], 2, True) == [["r2", "r1"]]


# Users a: {1, 2}, b: {1, 2, 3}, c: {3, 4}. Item vectors over (a, b, c):
# 1 = 2 = (1, 1, 0), 3 = (0, 1, 1), 4 = (0, 0, 1).
# cos(1, 2) = 2 / 2 = 1; cos(1, 3) = cos(2, 3) = 1 / 2; cos(3, 4) = 1 / sqrt(2); cos(1, 4) = 0.
KNN_TRAIN = events([("a", "1", 1), ("a", "2", 2), ("b", "1", 3), ("b", "2", 4), ("b", "2", 5),
                    ("b", "3", 6), ("c", "3", 7), ("c", "4", 8)])


def test_item_knn_cosine_by_hand():
    model = ItemKNN().fit(KNN_TRAIN, None, None)
    c = model.catalog.index
    assert model.similarity[c["1"], c["2"]] == pytest.approx(1.0)
    assert model.similarity[c["1"], c["3"]] == pytest.approx(0.5)
    assert model.similarity[c["3"], c["4"]] == pytest.approx(2 ** -0.5)
    assert model.similarity[c["1"], c["1"]] == 0.0
    # History [1]: 2 -> 1, 3 -> 0.5, 4 -> 0.  History [4]: 3 -> 0.707, then 1, 2 tie at 0.
    assert model.recommend(["a", "c"], [["1"], ["4"]], 3, False) == [["2", "3", "4"],
                                                                     ["3", "1", "2"]]
    # History [1, 4] sums: 2 -> 1, 3 -> 0.5 + 0.707 = 1.207.
    assert model.recommend(["x"], [["1", "4"]], 2, True) == [["3", "2"]]


def test_item_knn_neighbors_keeps_the_most_similar():
    model = ItemKNN(ItemKNNConfig(neighbors=1)).fit(KNN_TRAIN, None, None)
    sim = model.similarity.toarray()
    c = model.catalog.index
    # Item 3's neighbours: 1 and 2 at 0.5, 4 at 0.707 -> keeps 4 only.
    assert np.count_nonzero(sim[c["3"]]) == 1 and sim[c["3"], c["4"]] == pytest.approx(2 ** -0.5)
