"""The temporal-holdout protocol on tiny hand-worked examples."""

import math

import pandas as pd
import pytest

from models.evaluation import (
    Case,
    Cases,
    Recommender,
    Split,
    bootstrap_ci,
    build_cases,
    build_report,
    coverage_at_k,
    evaluate_model,
    event_order,
    head_items,
    head_mask,
    hit_at_k,
    iso_utc,
    ndcg_at_k,
    recall_at_k,
    temporal_split,
)


def events(rows):
    """rows: (user, item, timestamp) triples."""
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_cutoff_interpolates_linearly():
    # Sorted timestamps 0, 10, 20, 30, 40: position 0.8 * 4 = 3.2 -> 30 + 0.2 * (40 - 30) = 32.
    split = temporal_split(events([("u", str(i), t) for i, t in enumerate([40, 0, 30, 10, 20])]))
    assert split.cutoff == pytest.approx(32.0)
    assert list(split.train["timestamp"]) == [0, 10, 20, 30]
    assert list(split.test["timestamp"]) == [40]


def test_event_at_the_cutoff_goes_to_test():
    # 1..6: position 0.8 * 5 = 4 -> exactly 5, and 5 >= T is test.
    split = temporal_split(events([("u", str(t), t) for t in range(1, 7)]))
    assert split.cutoff == 5.0
    assert list(split.test["timestamp"]) == [5, 6]


def test_events_ordered_by_time_then_natural_user_and_item_id():
    ordered_events = event_order(
        events([("10", "2", 5), ("9", "10", 5), ("9", "9", 5), ("1", "1", 1)]))
    ordered = list(zip(ordered_events["user_id"], ordered_events["item_id"], strict=True))
    assert ordered == [("1", "1"), ("9", "9"), ("9", "10"), ("10", "2")]


def test_cases_count_repeats_once_and_skip_as_specified():
    train = events([("w", "a", 1), ("w", "b", 2), ("w", "a", 3), ("done", "a", 1)])
    test = events([
        ("w", "b", 10), ("w", "c", 11), ("w", "c", 12),  # warm: truth {c}, b is history
        ("done", "a", 10),  # warm with nothing new: skipped
        ("f", "p", 10), ("f", "q", 11), ("f", "p", 12), ("f", "r", 13), ("f", "s", 14),
        ("f", "t", 15), ("f", "x", 16), ("f", "t", 17),  # fresh: 7 distinct items
        ("short", "p", 10), ("short", "q", 11), ("short", "q", 12), ("short", "r", 13),
        ("short", "s", 14), ("short", "t", 15),  # fresh with 5 distinct items: skipped
    ])
    cases = build_cases(Split(train, test, cutoff=10.0))
    assert cases.warm == [Case("w", ("a", "b"), frozenset({"c"}), fresh=False)]
    assert cases.fresh == [Case("f", ("p", "q", "r", "s", "t"), frozenset({"x"}), fresh=True)]


def test_ndcg_hand_worked():
    # Hits at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061607.
    # |truth| = 3: IDCG = 1 + 0.630930 + 0.5 = 2.130930. NDCG = 1.061607 / 2.130930 = 0.498189.
    assert ndcg_at_k(["x", "a", "y", "b"], frozenset("abc")) == pytest.approx(0.498189, abs=1e-6)
    assert ndcg_at_k(["a"], frozenset("a")) == 1.0
    # A hit at rank 11 does not count for @10.
    assert ndcg_at_k([str(i) for i in range(10)] + ["a"], frozenset("a")) == 0.0


def test_ndcg_ideal_caps_at_k_relevant_items():
    truth = frozenset(str(i) for i in range(15))
    assert ndcg_at_k([str(i) for i in range(10)], truth) == pytest.approx(1.0)


def test_recall_divides_by_min_k_and_truth():
    ranked = ["a", "b"] + [f"n{i}" for i in range(18)]
    assert recall_at_k(ranked, frozenset("abc")) == pytest.approx(2 / 3)
    big_truth = frozenset(ranked[:5]) | frozenset(f"t{i}" for i in range(20))  # |truth| = 25
    assert recall_at_k(ranked, big_truth) == pytest.approx(5 / 20)


def test_hit_at_10():
    assert hit_at_k(["x", "a"], frozenset("a")) == 1.0
    assert hit_at_k([f"n{i}" for i in range(10)] + ["a"], frozenset("a")) == 0.0


def test_coverage_counts_pool_items_in_top_k_only():
    lists = [["a", "b", "c"], ["b", "z"]]
    assert coverage_at_k(lists, {"a", "b", "c", "d"}, k=2) == pytest.approx(2 / 4)  # c is 3rd
    assert coverage_at_k(lists, set()) == 0.0


def test_head_breaks_count_ties_by_smaller_natural_id():
    # 5 items -> head of floor(0.2 * 5) = 1 item; "9" and "10" tie at 3 events, "9" is smaller.
    train = events([("u", i, 0) for i in ["10", "10", "10", "9", "9", "9", "2", "1", "5"]])
    assert head_items(train) == {"9"}


def test_head_mask_leaves_items_without_events_out_of_the_count():
    # 10 items with events among 13 (3 cold, 0 events): head = floor(0.2 * 10) = 2 items.
    # Indices 4 and 7 tie at 9 events: 4 is the smaller index; 12 (8 events) is not head.
    counts = [1, 2, 3, 0, 9, 5, 0, 9, 4, 6, 0, 7, 8]
    assert head_mask(counts).nonzero()[0].tolist() == [4, 7]
    # head_items is the same rule over a train table's ids in natural order.
    train = events([("u", str(i), 0) for i, c in enumerate(counts) for _ in range(c)])
    assert head_items(train) == {"4", "7"}


def test_longtail_coverage_excludes_the_head():
    # Items 1..10, item i with 11 - i events: head = floor(0.2 * 10) = 2 items {1, 2}.
    train = events([("u", str(i), 0) for i in range(1, 11) for _ in range(11 - i)])
    split = Split(train, events([("w", "3", 1)]), cutoff=1.0)
    cases = Cases(warm=[Case("w", ("9",), frozenset({"3"}), False)], fresh=[])
    result = evaluate_model(Fixed([["1", "2", "3", "4"]]), split, cases, n_resamples=10)
    assert result["coverage@10"] == pytest.approx(4 / 10)
    assert result["longtail_coverage@10"] == pytest.approx(2 / 8)


def test_bootstrap_interval():
    assert bootstrap_ci([0.5] * 7) == [0.5, 0.5]
    values = [0.0, 1.0] * 50
    lo, hi = bootstrap_ci(values, seed=3)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert bootstrap_ci(values, seed=3) == [lo, hi]


class Fixed:
    """Returns the given lists in turn; records what fit saw."""

    name = "fixed"

    def __init__(self, lists):
        self.lists = lists

    def fit(self, train, users, items):
        self.seen = train.copy()
        return self

    def recommend(self, user_ids, histories, k, fresh):
        out, self.lists = self.lists[: len(user_ids)], self.lists[len(user_ids):]
        return out


def tiny_split():
    train = events([("w", "a", 1), ("w", "b", 2), ("v", "c", 3), ("v", "a", 4)])
    test = events([("w", "c", 10), ("f", "a", 11), ("f", "b", 12), ("f", "c", 13),
                   ("f", "d", 14), ("f", "e", 15), ("f", "g", 16)])
    # 11 sorted timestamps 1, 2, 3, 4, 10, ...: position 0.4 * 10 = 4 -> cutoff 10.
    return temporal_split(pd.concat([train, test]), quantile=0.4)


def test_fit_sees_no_test_event():
    split = tiny_split()
    assert split.cutoff == 10.0
    model = Fixed([["c"], ["g"]])
    evaluate_model(model, split, build_cases(split), n_resamples=10)
    assert isinstance(model, Recommender)
    assert model.seen["timestamp"].max() < split.cutoff
    assert len(model.seen) == 4 and "f" not in set(model.seen["user_id"])


def test_evaluate_model_scores_segments_and_all():
    split = tiny_split()
    cases = build_cases(split)  # warm w: truth {c}; fresh f: history a..e, truth {g}
    result = evaluate_model(Fixed([["c"], ["x", "g"]]), split, cases, n_resamples=20)
    assert result["warm"] == {"ndcg@10": 1.0, "recall@20": 1.0, "hr@10": 1.0}
    assert result["fresh"]["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert result["all"]["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert result["all"]["recall@20"] == 1.0
    assert set(result) == {"warm", "fresh", "all", "coverage@10", "longtail_coverage@10",
                           "train_seconds"}
    report = build_report("tiny", split, cases, {"fixed": result})
    assert report["cases"] == {"warm": 1, "fresh": 1}
    assert (report["train_events"], report["test_events"]) == (4, 7)
    assert report["protocol"] == "temporal-holdout"


def test_history_in_a_list_breaks_the_contract():
    split = tiny_split()
    with pytest.raises(ValueError, match="contract"):
        evaluate_model(Fixed([["a"], ["g"]]), split, build_cases(split), n_resamples=10)


def test_iso_utc():
    assert iso_utc(889237269.0) == "1998-03-07T02:21:09Z"
    assert iso_utc(0.5) == "1970-01-01T00:00:00.500Z"
