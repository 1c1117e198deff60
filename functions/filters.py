"""The item filters (unavailable items, categories) of one revision, on one bundle's indices.

`recsys items`, the nightly job with an items table and `POST /admin/items` change the filters
in Redis and bump their revision; each instance reloads them only when the revision it reads
with the version pointer moved (functions/serving.py), and maps them onto the served bundle's
item indices once, so that a request filters by index without a dictionary lookup per item.

An item may have several categories; `?category=A,B` keeps the items having A or B among
theirs. A category no served item has is a 400 naming the field (`check_categories`), not an
empty list: the categories were never loaded, or the name is misspelt.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from functions.body import BadRequest
from infra.redis.item_filters import split_categories

log = logging.getLogger(__name__)

MAX_NAMED = 20  # known categories a 400 lists
MAX_NAME_CHARS = 40  # characters of one category in a message
NONE = np.empty(0, np.int64)


@dataclass
class Filters:
    """The item filters of one revision, mapped onto one bundle's item indices."""

    rev: int
    unavailable: frozenset = frozenset()
    unavailable_idx: frozenset = frozenset()
    category: dict = field(default_factory=dict)  # item id -> (category, ...), every item
    members: dict = field(default_factory=dict)  # category -> sorted int64 bundle indices

    def check_categories(self, categories: list[str]) -> None:
        """Raises BadRequest naming the first category that no served item has (a filter
        that would match nothing); nothing while the filters were never read (rev < 0)."""
        if self.rev < 0:
            return
        for name in categories:
            if name not in self.members:
                raise BadRequest(unknown_category(name, self.members))

    def inside(self, items: list[int], categories: list[str]) -> np.ndarray:
        """[len(items)] bool: which bundle indices have one of `categories`."""
        items = np.asarray(items, np.int64)
        hit = np.zeros(len(items), bool)
        for name in categories:
            members = self.members.get(name)
            if members is not None and len(items):
                at = np.minimum(np.searchsorted(members, items), len(members) - 1)
                hit |= members[at] == items
        return hit

    def outside(self, categories: list[str], n_items: int) -> np.ndarray:
        """The bundle indices (of `n_items`) having none of `categories`, ascending."""
        mask = np.ones(n_items, bool)
        for name in categories:
            mask[self.members.get(name, NONE)] = False
        return np.flatnonzero(mask)


def unknown_category(name: str, members: dict) -> str:
    """The 400 message for a category no served item has: the field, the value and the known
    categories (at most MAX_NAMED of them)."""
    head = f"category: no served item has category {name[:MAX_NAME_CHARS]!r}"
    if not members:
        return (head + "; no item has a category yet: load them from an items table (a "
                "category column; `recsys items --items FILE` or the nightly's items table) or "
                "POST /admin/items (docs/SERVING.md)")
    known = sorted(members)
    shown = ", ".join(repr(c[:MAX_NAME_CHARS]) for c in known[:MAX_NAMED])
    more = f", ... and {len(known) - MAX_NAMED} more" if len(known) > MAX_NAMED else ""
    return f"{head}; known categories ({len(known)}): {shown}{more}"


def map_filters(item_index: dict, f: Filters) -> Filters:
    """`f` onto the items of a bundle.

    Args:
        item_index: the bundle's item id -> index.
        f: the filters (their mapped fields are ignored and rebuilt).

    Returns:
        The same filters with `unavailable_idx` and `members` (only categories that some item
        of the bundle has).
    """
    members = defaultdict(list)
    for item, categories in f.category.items():
        index = item_index.get(item)
        if index is not None:
            for name in categories:
                members[name].append(index)
    members = {name: np.unique(np.array(idx, np.int64)) for name, idx in members.items()}
    unavailable_idx = frozenset(item_index[i] for i in f.unavailable if i in item_index)
    return Filters(f.rev, f.unavailable, unavailable_idx, f.category, members)


class FilterReloader:
    """Reads the filters from Redis (one reader at a time) and maps them onto a bundle.

    Args:
        read: returns (revision, unavailable item ids, {item id: `|`-separated categories}),
            e.g. infra.redis.item_filters.ItemFilters.read.
    """

    def __init__(self, read):
        self._read = read
        self._lock = threading.Lock()

    def reload(self, item_index: dict) -> Filters:
        """The current filters on the bundle of `item_index`.

        Raises:
            redis.RedisError: Redis failed.
        """
        with self._lock:
            rev, unavailable, category = self._read()
        category = {item: split_categories(value) for item, value in category.items()}
        log.info("item filters rev %d: %d unavailable, %d with a category", rev,
                 len(unavailable), len(category))
        return map_filters(item_index, Filters(rev, frozenset(unavailable), category=category))
