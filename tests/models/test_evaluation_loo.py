"""Leave-one-out with sampled negatives (LOO-S) on tiny hand-worked examples, and every cheap
model's `score` against its own `recommend`."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.baselines import ItemKNN, Popularity
from models.evaluation import Case, Cases, pool_recall
from models.evaluation_loo import (
    LOOSplit,
    ScoringRecommender,
    build_loo_report,
    evaluate_loo,
    loo_split,
    ndcg_of_rank,
    rank_of_positive,
    score_cases,
)
from models.peers import EASE, ImplicitBPR
from models.synthetic import generate
from models.vocab import Vocab


def events(rows):
    """rows: (user, item, timestamp) triples."""
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def catalog_events():
    """x touches items 1..12, y 13..20 (train catalog 1..19: y's "20" is held out, so x has
    7 untouched items); u, v and w as below."""
    return events([("x", str(i), 1) for i in range(1, 13)] +
                  [("y", str(i), 2) for i in range(13, 21)] + [
        ("u", "1", 5), ("u", "2", 6), ("u", "1", 7), ("u", "3", 7),  # latest: "1" and "3" tie
        ("v", "9", 5), ("v", "10", 5),  # tie at 5: "10" is the larger id (not "9" as text)
        ("w", "4", 3), ("w", "4", 4),  # one distinct item: no case
    ])


def test_latest_item_is_held_out_ties_by_the_larger_id_and_its_repeats_leave_train():
    split = loo_split(catalog_events(), n_negatives=3)
    by_user = {c.user_id: c for c in split.cases}
    assert set(by_user) == {"u", "v", "x", "y"}  # w has one distinct item
    assert by_user["u"].truth == {"3"} and by_user["u"].history == ("1", "2")
    assert by_user["v"].truth == {"10"} and by_user["v"].history == ("9",)
    assert by_user["x"].truth == {"12"}  # x's 12 events tie at 1: the largest id
    train = split.train
    assert not ((train["user_id"] == "u") & (train["item_id"] == "3")).any()
    assert ((train["user_id"] == "u") & (train["item_id"] == "1")).sum() == 2  # repeats stay
    assert (train["user_id"] == "w").sum() == 2 and len(train) == 11 + 7 + 3 + 1 + 2
    assert [c.user_id for c in split.cases] == ["u", "v", "x", "y"]


def test_negatives_are_untouched_train_items_drawn_the_same_for_the_same_seed():
    split = loo_split(catalog_events(), n_negatives=5, seed=7)
    catalog = set(split.train["item_id"])
    for case, cands in zip(split.cases, split.candidates, strict=True):
        assert cands[0] in case.truth and len(cands) == 1 + 5
        negatives = set(cands[1:])
        assert len(negatives) == 5 and negatives <= catalog
        assert not negatives & (set(case.history) | case.truth)
    assert loo_split(catalog_events(), n_negatives=5, seed=7).candidates == split.candidates
    assert loo_split(catalog_events(), n_negatives=5, seed=8).candidates != split.candidates


def test_too_few_untouched_items_give_every_user_the_same_fewer_negatives():
    # x touched 12 of the 19 train items: 7 negatives for everyone.
    split = loo_split(catalog_events(), n_negatives=99)
    assert {len(c) for c in split.candidates} == {1 + 7}


def test_ties_count_against_the_positive():
    scores = np.array([[0.5, 0.9, 0.5, 0.1],   # 1 higher + 1 equal -> rank 3
                       [1.0, 0.0, 0.0, 0.0],   # best -> 1
                       [2.0, 2.0, 2.0, 2.0],   # a constant scorer -> last
                       [-np.inf, -np.inf, 0.0, -np.inf]])  # unknown positive -> last
    assert rank_of_positive(scores).tolist() == [3, 1, 4, 4]
    assert ndcg_of_rank(np.array([1, 3, 10, 11])).tolist() == pytest.approx(
        [1.0, 0.5, 1 / math.log2(11), 0.0])


class Oracle:
    """Scores the held-out item 1, every other 0 (or a constant, or NaN)."""

    name = "oracle"

    def __init__(self, truth=None, fill=0.0):
        self.truth, self.fill = truth, fill

    def fit(self, train, users, items):
        self.train = train
        return self

    def recommend(self, user_ids, histories, k, fresh):
        return [[] for _ in user_ids]

    def score(self, user_ids, histories, candidates, fresh):
        out = np.full((len(candidates), len(candidates[0])), self.fill)
        if self.truth is not None:
            out[:, 0] = [1.0 if c[0] in self.truth[u] else 0.0
                         for u, c in zip(user_ids, candidates, strict=True)]
        return out


def test_an_oracle_hits_every_user_and_a_constant_scorer_none():
    split = loo_split(generate(60, 40, seed=3).interactions, n_negatives=9)
    truth = {c.user_id: c.truth for c in split.cases}
    oracle = Oracle(truth)
    result = evaluate_loo(oracle, split, n_resamples=10)
    assert isinstance(oracle, ScoringRecommender)
    assert result["all"]["hr@10"] == 1.0 and result["all"]["ndcg@10"] == 1.0
    assert result["all"]["mean_rank"] == 1.0
    assert len(oracle.train) == len(split.train)  # fit saw the train side only
    constant = evaluate_loo(Oracle(), split, n_resamples=10)["all"]
    assert constant["hr@10"] == 1.0 and constant["mean_rank"] == 10.0  # 1 + 9 ties: rank 10
    report = build_loo_report("tiny", split, {"oracle": result})
    assert report["negatives"] == 9 and report["cases"] == {"all": len(split.cases)}


def test_nan_scores_and_wrong_shapes_break_the_contract():
    split = loo_split(generate(40, 30, seed=4).interactions, n_negatives=5)
    with pytest.raises(ValueError, match="NaN"):
        score_cases(Oracle(fill=np.nan), split)

    class Short(Oracle):
        def score(self, user_ids, histories, candidates, fresh):
            return super().score(user_ids, histories, candidates, fresh)[:, :3]

    with pytest.raises(ValueError, match=r"shape \(\d+, 3\)"):
        score_cases(Short(), split)


@pytest.mark.parametrize("model", [Popularity, ItemKNN, EASE])
def test_scores_order_the_candidates_as_recommend_ranks_them(model):
    data = generate(80, 50, seed=5).interactions.astype({"user_id": str, "item_id": str})
    fitted = model().fit(data, None, None)
    users = ["1", "2", "3"]
    histories = [list(data[data["user_id"] == u]["item_id"].unique()) for u in users]
    lists = fitted.recommend(users, histories, 10, False)
    got = fitted.score(users, histories, [row + ["nope"] for row in lists], False)
    assert got.shape == (3, 11) and np.isneginf(got[:, -1]).all()
    assert (np.diff(got[:, :-1], axis=1) <= 0).all()  # recommend's order is descending score
    scored = fitted.score(users, histories, [fitted.catalog.ids[:7].tolist()] * 3, False)
    assert scored == pytest.approx(fitted.user_scores(users, histories, False)[:, :7])


class Pools:
    """A model with candidate pools: item index i is item id str(i)."""

    name = "pools"
    item_ids = np.array([str(i) for i in range(10)], dtype=object)

    def candidate_pools(self, cases):
        tower = [np.array([0, 1, 2]) for _ in cases]
        knn = [np.array([3]) for _ in cases]
        return {"tower": tower, "knn": knn,
                "pool": [np.union1d(t, k) for t, k in zip(tower, knn, strict=True)]}


def test_pool_recall_is_the_share_of_truth_items_in_each_source_per_segment():
    cases = Cases(warm=[Case("a", ("9",), frozenset({"1", "5"}), False),
                        Case("b", ("9",), frozenset({"3"}), False)],
                  fresh=[Case("c", ("9",), frozenset({"2", "3", "7", "x"}), True)])
    recall = pool_recall(Pools(), cases)
    assert recall["warm"] == {"tower": pytest.approx(1 / 3), "knn": pytest.approx(1 / 3),
                              "pool": pytest.approx(2 / 3)}
    assert recall["fresh"] == {"tower": 0.25, "knn": 0.25, "pool": 0.5}
    assert recall["all"] == {"tower": pytest.approx(2 / 7), "knn": pytest.approx(2 / 7),
                             "pool": pytest.approx(4 / 7)}
    assert pool_recall(Pools(), Cases(cases.warm, []))["fresh"]["pool"] is None


def test_implicit_peers_score_warm_users_by_their_factors_and_others_by_fold_in():
    # implicit itself is optional: the factors of a fitted BPR are set by hand.
    bpr = ImplicitBPR()
    bpr.catalog = Vocab.build(pd.Series(["1", "2", "3"]))
    bpr.user_rows = {"u": 0}
    bpr.model = SimpleNamespace(user_factors=np.array([[1.0, 0.0, 1.0]]),
                                item_factors=np.array([[3.0, 0, 0.5], [0, 1, 0.2], [1, 1, 0.1]]))
    warm = bpr.score(["u"], [["1"]], [["2", "3", "9"]], False)
    assert warm.tolist() == [[pytest.approx(0.2), pytest.approx(1.1), -np.inf]]
    fresh = bpr.score(["new"], [["2"]], [["1", "3"]], True)  # query [0, 1, 1]: item 2's
    assert fresh.tolist() == [[pytest.approx(0.5), pytest.approx(1.1)]]
    assert bpr.recommend(["u"], [["1"]], 2, False) == [["3", "2"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mf", "two_tower", "graphsage", "served"])
def test_trained_models_score_their_own_lists_in_descending_order(name):
    from evaluation.registry import MODEL_REGISTRY

    data = generate(300, 120, seed=6)
    train = data.interactions.astype({"user_id": str, "item_id": str})
    model = MODEL_REGISTRY[name]().fit(train, data.users, data.items)
    users = sorted(train["user_id"].unique())[:20]
    histories = [list(train[train["user_id"] == u]["item_id"].unique()) for u in users]
    for fresh in (False, True):
        lists = model.recommend(users, histories, 10, fresh)
        got = model.score(users, histories, [row + ["nope"] for row in lists], fresh)
        assert got.shape == (20, 11) and np.isneginf(got[:, -1]).all()
        assert (np.diff(got[:, :-1], axis=1) <= 1e-4).all(), f"{name}: {got[:, :-1]}"


class PooledScorer(Pools):
    """Pools of test_pool_recall (items 0..3) and scores 10 - index for every item."""

    def fit(self, train, users, items):
        return self

    def score(self, user_ids, histories, candidates, fresh):
        return 10.0 - np.array([[int(i) for i in row] for row in candidates], dtype=float)


def test_loo_says_how_items_outside_the_pool_are_scored():
    # Two users: held-out "2" (in the pool {0..3}) among ["1", "5"]; held-out "6" (outside)
    # among ["0", "9"]. Scores 10 - id: user 1 ranks 2 (behind "1"), user 2 ranks 2.
    cases = [Case("a", ("8",), frozenset({"2"}), False), Case("b", ("8",), frozenset({"6"}),
                                                              False)]
    split = LOOSplit(events([("a", "8", 1), ("b", "8", 1)]), cases,
                     [["2", "1", "5"], ["6", "0", "9"]])
    pool = evaluate_loo(PooledScorer(), split, n_resamples=5)["pool"]
    assert pool == {"positive_in_pool": 0.5, "hr@10_in_pool": 1.0, "hr@10_out_of_pool": 1.0,
                    "negatives_out_of_pool": 1.0,  # "5" and "9"
                    "out_of_pool_at_or_above": 0.0}
    split = LOOSplit(split.train, cases, [["2", "1", "5"], ["6", "0", "4"]])  # 4 beats 6
    assert evaluate_loo(PooledScorer(), split, n_resamples=5)["pool"][
        "out_of_pool_at_or_above"] == 0.5
