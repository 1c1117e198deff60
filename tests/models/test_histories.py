"""models.histories: each encoding on a tiny history whose answer is written out by hand."""

import numpy as np
import pandas as pd
import pytest

from models.evaluation import event_order
from models.histories import (
    csr_rows,
    history_csr,
    history_matrix,
    id_multi_hot,
    multi_hot,
    to_csr,
    user_item_matrix,
)
from models.vocab import Vocab


def test_history_matrix_keeps_the_last_items_right_aligned():
    got = history_matrix([np.array([1, 2, 3, 4, 5]), np.array([7]), np.array([], int)], 3)
    np.testing.assert_array_equal(got, [[3, 4, 5], [-1, -1, 7], [-1, -1, -1]])
    assert got.dtype == np.int32


def test_multi_hot_marks_each_item_once_and_ignores_padding():
    got = multi_hot([np.array([2, 0, 2]), np.array([-1, 3]), np.array([], int)], 4)
    np.testing.assert_array_equal(got, [[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert got.dtype == np.float32


def test_vocab_multi_hot_drops_unknown_ids():
    items = Vocab.build(["10", "9", "2"])  # natural order: 2, 9, 10
    np.testing.assert_array_equal(id_multi_hot(items, [["10", "nope"], []]), [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(items.known(["9", "x", "2"]), [1, 0])


def test_user_item_matrix_has_one_entry_per_distinct_pair():
    train = pd.DataFrame({"user_id": ["b", "a", "b", "b"], "item_id": ["2", "1", "2", "10"]})
    matrix, user_ids = user_item_matrix(train, Vocab.build(train["item_id"]))
    assert user_ids.tolist() == ["b", "a"]  # rows in order of first appearance
    np.testing.assert_array_equal(matrix.toarray(), [[0, 1, 1], [1, 0, 0]])  # columns 1, 2, 10


def test_history_csr_lists_distinct_items_in_order_of_first_event():
    clean = pd.DataFrame({"user_id": ["u", "u", "v", "u", "u"],
                          "item_id": ["3", "1", "1", "3", "gone"],
                          "timestamp": [5, 1, 2, 9, 3]})
    users, items = Vocab.build(["u", "v", "w"]), Vocab.build(["1", "3"])
    indptr, flat = history_csr(clean, users, items)
    # u: 1 (t=1), 3 (t=5; again at 9); "gone" is not in the vocabulary. v: 1. w: nothing.
    assert indptr.tolist() == [0, 2, 3, 3] and flat.tolist() == [0, 1, 0]


@pytest.mark.parametrize("seed", range(10))
def test_history_csr_matches_the_evaluations_event_order(seed):
    """Against the reference: models.evaluation.event_order, first event of each pair, per
    user (natural ids, timestamp ties, ids missing from the vocabularies)."""
    rng = np.random.default_rng(seed)
    clean = pd.DataFrame({"user_id": rng.choice(["1", "2", "10", "b", "a"], 200),
                          "item_id": rng.choice(["3", "20", "100", "z", "y", "q"], 200),
                          "timestamp": rng.integers(0, 5, 200)})
    users, items = Vocab.build(["2", "10", "a", "w"]), Vocab.build(["3", "100", "z", "y"])
    indptr, flat = history_csr(clean, users, items)
    first = event_order(clean).drop_duplicates(["user_id", "item_id"])
    for u, user in enumerate(users.ids):
        want = items.known(first.loc[first["user_id"] == user, "item_id"])
        assert flat[indptr[u]:indptr[u + 1]].tolist() == want.tolist()


def test_csr_round_trip_by_range_and_by_index():
    lists = [np.array([4, 2]), np.array([], np.int64), np.array([7]), np.array([1, 1, 0])]
    indptr, flat = to_csr(lists)
    assert indptr.tolist() == [0, 2, 2, 3, 6]
    for rows in (range(4), range(1, 3), np.array([3, 0]), range(2, 2)):
        got = csr_rows(indptr, flat, rows)
        assert [g.tolist() for g in got] == [lists[r].tolist() for r in rows]
