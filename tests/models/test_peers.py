"""models.peers: EASE on a two-group fixture whose answer is obvious, and the optional-package
check of the implicit-based peers."""

import importlib.util

import pandas as pd
import pytest

from models.baselines import Popularity
from models.peers import EASE, ImplicitALS, ImplicitBPR, missing_requirement


def _two_groups() -> pd.DataFrame:
    """Users u0-u9 take items a0-a4, users v0-v9 take items b0-b4 (all pairs)."""
    rows = [(f"{u}{n}", f"{i}{m}") for u, i in (("u", "a"), ("v", "b"))
            for n in range(10) for m in range(5)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    return frame.assign(timestamp=range(len(frame)), event_type="click")


def test_ease_recommends_the_group_of_the_history():
    model = EASE().fit(_two_groups())

    (from_a, from_b) = model.recommend(["x", "y"], [["a0", "a1"], ["b3"]], k=3, fresh=True)

    assert set(from_a) == {"a2", "a3", "a4"}  # the rest of group a, never a seen item
    assert set(from_b) <= {"b0", "b1", "b2", "b4"}  # group b without the seen b3


def test_ease_weights_have_a_zero_diagonal():
    model = EASE().fit(_two_groups())

    assert model.weights.shape == (10, 10)
    assert not model.weights.diagonal().any()


@pytest.mark.parametrize("peer", [ImplicitALS, ImplicitBPR])
def test_implicit_peers_recommend_the_group_of_the_history(peer):
    pytest.importorskip("implicit", reason="the `peers` extra is not installed")
    model = peer().fit(_two_groups())

    (warm,) = model.recommend(["u0"], [["a0", "a1", "a2", "a3", "a4"]], k=5, fresh=False)
    (fresh,) = model.recommend(["new"], [["b0", "b1"]], k=3, fresh=True)

    assert model.model.item_factors.shape[0] == 10  # built with the config's fields
    assert not set(warm) & {"a0", "a1", "a2", "a3", "a4"}  # never a seen item
    assert set(fresh) == {"b2", "b3", "b4"}


def test_missing_requirement_names_implicit_only_when_it_is_absent():
    absent = importlib.util.find_spec("implicit") is None

    assert missing_requirement(ImplicitALS) == ("implicit" if absent else None)
    assert missing_requirement(ImplicitBPR) == ("implicit" if absent else None)
    assert missing_requirement(EASE) is None
    assert missing_requirement(Popularity) is None
