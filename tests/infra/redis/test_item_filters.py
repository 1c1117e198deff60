"""ItemFilters (infra/redis/item_filters.py) against a real Redis server process."""

from infra.redis.item_filters import ItemFilters


def test_each_change_is_applied_whole_with_a_new_revision(redis_client):
    filters = ItemFilters(redis_client, "t")
    assert filters.read() == (0, set(), {})
    assert filters.update(unavailable=["a", "b"], categories={"a": "x", "c": "y"}) == 1
    assert filters.read() == (1, {"a", "b"}, {"a": "x", "c": "y"})
    assert filters.update(available=["a", "z"], categories={"c": "w"}) == 2
    assert filters.read() == (2, {"b"}, {"a": "x", "c": "w"})
    assert filters.update() == 3  # no change still bumps: the functions reload once more
    assert ItemFilters(redis_client, "other").read() == (0, set(), {})
