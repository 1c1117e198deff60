"""The item filters mapped onto a bundle's indices (functions/filters.py)."""

from functions.filters import FilterReloader, Filters, map_filters


def test_filters_map_onto_the_bundle_items_and_skip_unknown_ones():
    index = {"a": 0, "b": 1, "c": 2}
    f = map_filters(index, Filters(7, frozenset({"b", "gone"}),
                                   category={"a": "y", "c": "x", "gone": "z"}))
    assert f.rev == 7 and f.unavailable_idx == {1}
    assert f.codes == {"x": 0, "y": 1, "z": 2}  # categories sorted
    assert f.item_codes.tolist() == [1, -1, 0]


def test_the_reloader_reads_once_and_maps():
    calls = []

    def read():
        calls.append(1)
        return 4, {"a"}, {"b": "x"}

    f = FilterReloader(read).reload({"a": 0, "b": 1})
    assert len(calls) == 1
    assert (f.rev, f.unavailable, f.unavailable_idx) == (4, frozenset({"a"}), {0})
    assert f.item_codes.tolist() == [-1, 0]
