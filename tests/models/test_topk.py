import numpy as np
import pytest

from models.rules import apply_rules, fill
from models.topk import brute_force_topk, build_flat_index, faiss_topk


def test_brute_force_known_answer_with_ties_and_exclusion():
    xb = np.array([[1.0, 0], [0, 1], [1, 0], [0.5, 0.5]])
    xq = np.array([[1.0, 0.0]])
    I, D = brute_force_topk(xq, xb, 3, [np.array([0])])
    # Item 0 excluded; items 2 (score 1) then 3 (0.5) then 1 (0); tie rule unused here.
    assert I.tolist() == [[2, 3, 1]]
    I, _ = brute_force_topk(xq, xb, 2)
    assert I.tolist() == [[0, 2]]  # equal scores: smaller index first


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faiss_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    xb = rng.normal(size=(300, 16)).astype(np.float32)
    xq = rng.normal(size=(40, 16)).astype(np.float32)
    seen = [rng.choice(300, rng.integers(0, 30), replace=False) for _ in range(40)]
    I_ref, D_ref = brute_force_topk(xq, xb, 25, seen)
    I, D = faiss_topk(build_flat_index(xb), xq, 25, seen)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, atol=1e-4)
    for row, s in zip(I, seen, strict=True):
        assert not set(row) & set(s)


def test_faiss_pads_when_catalog_is_small():
    xb = np.eye(3, dtype=np.float32)
    I, D = faiss_topk(build_flat_index(xb), xb[:1], 5, [np.array([1])])
    assert I.tolist() == [[0, 2, -1, -1, -1]]


def test_rules_drop_excluded_duplicates_and_empty_slots():
    items, scores = apply_rules(np.array([4, 2, 4, -1, 7, 9]), np.arange(6.0)[::-1], 3,
                                np.array([2]))
    assert items.tolist() == [4, 7, 9]
    assert scores.tolist() == [5.0, 1.0, 0.0]


def test_fill_tops_up_without_repeats():
    assert fill(["a", "b"], ["b", "c", "x", "d"], 4, {"x"}) == ["a", "b", "c", "d"]
