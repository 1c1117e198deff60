"""The item filters mapped onto a bundle's indices (functions/filters.py)."""

import pytest

from functions.body import BadRequest
from functions.filters import FilterReloader, Filters, map_filters


def test_filters_map_onto_the_bundle_items_and_skip_unknown_ones():
    index = {"a": 0, "b": 1, "c": 2}
    f = map_filters(index, Filters(7, frozenset({"b", "gone"}),
                                   category={"a": ("y",), "c": ("x", "y"), "gone": ("z",)}))
    assert f.rev == 7 and f.unavailable_idx == {1}
    assert {name: m.tolist() for name, m in f.members.items()} == {"x": [2], "y": [0, 2]}


def test_an_item_of_several_categories_matches_each_of_them():
    index = {i: n for n, i in enumerate("abcde")}
    f = map_filters(index, Filters(1, category={"a": ("x",), "b": ("x", "y"), "d": ("y",)}))
    assert f.inside([4, 3, 1, 0, 2], ["x"]).tolist() == [False, False, True, True, False]
    assert f.inside([4, 3, 1, 0, 2], ["y"]).tolist() == [False, True, True, False, False]
    assert f.inside([3, 0], ["x", "y"]).tolist() == [True, True]
    assert f.outside(["y"], 5).tolist() == [0, 2, 4]
    assert f.outside(["x", "y"], 5).tolist() == [2, 4]


def test_a_category_no_served_item_has_is_a_bad_request_listing_the_known_ones():
    index = {"a": 0, "b": 1}
    f = map_filters(index, Filters(3, category={"a": ("Comedy",), "b": ("Drama", "Comedy"),
                                                "gone": ("Horror",)}))
    f.check_categories(["Comedy", "Drama"])
    for unknown in ("Nope", "Horror"):  # Horror: no item of this bundle has it
        with pytest.raises(BadRequest) as e:
            f.check_categories(["Comedy", unknown])
        assert str(e.value) == (f"category: no served item has category {unknown!r}; known "
                                "categories (2): 'Comedy', 'Drama'")
    many = map_filters({"a": 0}, Filters(3, category={"a": tuple(f"c{n:02}" for n in range(30))}))
    with pytest.raises(BadRequest, match=r"\(30\): 'c00', .*'c19', \.\.\. and 10 more$"):
        many.check_categories(["x" * 300])


def test_with_no_category_loaded_the_answer_says_how_to_load_them():
    with pytest.raises(BadRequest, match="no item has a category yet: load them from an items "
                                         "table"):
        map_filters({"a": 0}, Filters(0)).check_categories(["Comedy"])
    Filters(-1).check_categories(["Comedy"])  # never read (Redis down at start): not judged


def test_the_reloader_reads_once_splits_categories_and_maps():
    calls = []

    def read():
        calls.append(1)
        return 4, {"a"}, {"b": "x|y", "a": "y"}

    f = FilterReloader(read).reload({"a": 0, "b": 1})
    assert len(calls) == 1
    assert (f.rev, f.unavailable, f.unavailable_idx) == (4, frozenset({"a"}), {0})
    assert f.category == {"b": ("x", "y"), "a": ("y",)}
    assert {name: m.tolist() for name, m in f.members.items()} == {"x": [1], "y": [0, 1]}
