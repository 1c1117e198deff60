"""evaluation.registry: every model by name, and a clear refusal for an unknown one or one whose
optional package is missing (ALS and BPR without the `peers` extra)."""

import importlib.util

import pytest

from evaluation.registry import MODEL_REGISTRY, resolve_models
from models.baselines import Popularity
from models.peers import PEERS


class _NeedsAbsentPackage(Popularity):
    requires = "recsys_no_such_package"


def test_the_peers_are_registered_whether_or_not_implicit_is_installed():
    assert set(PEERS) <= set(MODEL_REGISTRY)


def test_names_resolve_in_order():
    assert list(resolve_models(["item_knn", "popularity", "ease"])) == [
        "item_knn", "popularity", "ease"]


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['nope'\].*'popularity'"):
        resolve_models(["popularity", "nope"])


def test_a_missing_optional_package_says_what_to_install():
    registry = {"popularity": Popularity, "needy": _NeedsAbsentPackage}

    assert list(resolve_models(["popularity"], registry)) == ["popularity"]
    with pytest.raises(ValueError, match=r"\['needy'\] need \['recsys_no_such_package'\].*"
                                         r"recsys\[peers\]"):
        resolve_models(["popularity", "needy"], registry)


@pytest.mark.skipif(importlib.util.find_spec("implicit") is not None,
                    reason="implicit is installed: ALS and BPR can run")
def test_als_and_bpr_without_implicit_are_refused_before_any_work():
    with pytest.raises(ValueError, match=r"\['als', 'bpr'\] need \['implicit'\]"):
        resolve_models(["ease", "bpr", "als"])
