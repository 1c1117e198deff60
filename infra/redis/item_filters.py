"""Item filters: the items that must not be recommended, and each item's categories.

Written by `recsys items`, the nightly job with an items table and POST /admin/items
(infra/items_admin.py and functions/params.py check a change first), read by every function
instance when the revision NS:items:rev moved (lists.ServedLists.current_and_rev reads it with
the pointer). Keys: keys.py.

An item may have several categories (genres): its hash value holds them separated by
CATEGORY_SEP, `Comedy|Drama`, the way an items table writes them (docs/SCHEMA.md), so no
category name holds a `|`.
"""

from __future__ import annotations

from collections.abc import Iterable

from infra.redis.keys import Namespaced

CATEGORY_SEP = "|"


def split_categories(value: str) -> tuple[str, ...]:
    """The categories of one value (`"Comedy| Drama"` -> ("Comedy", "Drama")): stripped, each
    once, in order; blanks dropped."""
    parts = (part.strip() for part in value.split(CATEGORY_SEP))
    return tuple(dict.fromkeys(part for part in parts if part))


def join_categories(categories: Iterable[str]) -> str:
    """One hash value for an item's categories (the inverse of split_categories)."""
    return CATEGORY_SEP.join(dict.fromkeys(categories))


class ItemFilters(Namespaced):
    """Unavailable items and item categories, with a revision bumped by every change.

    Contract: a change is applied whole, in one transaction with its revision bump, and a
    read returns one revision's state.
    """

    def update(self, unavailable=(), available=(), categories: dict | None = None) -> int:
        """Marks items unavailable or available again and sets their categories.

        Args:
            unavailable: item ids never to recommend until marked available.
            available: item ids to recommend again.
            categories: item id -> its categories, `|`-separated (join_categories); an item's
                value replaces the one it had.

        Returns:
            The new revision (NS:items:rev), which the functions compare to reload.
        """
        pipe = self.r.pipeline(transaction=True)
        if unavailable:
            pipe.sadd(self.keys.items_unavailable, *unavailable)
        if available:
            pipe.srem(self.keys.items_unavailable, *available)
        if categories:
            pipe.hset(self.keys.items_category, mapping=categories)
        pipe.incr(self.keys.items_rev)
        return int(pipe.execute()[-1])

    def read(self) -> tuple[int, set[str], dict[str, str]]:
        """(revision, unavailable item ids, item id -> `|`-separated categories), read in one
        transaction."""
        pipe = self.r.pipeline(transaction=True)
        pipe.get(self.keys.items_rev)
        pipe.smembers(self.keys.items_unavailable)
        pipe.hgetall(self.keys.items_category)
        rev, unavailable, categories = pipe.execute()
        return (int(rev or 0), {x.decode() for x in unavailable},
                {k.decode(): v.decode() for k, v in categories.items()})
