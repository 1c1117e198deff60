"""The item filters (unavailable items, categories) of one revision, on one bundle's indices.

`recsys items` and `POST /admin/items` change the filters in Redis and bump their revision;
each instance reloads them only when the revision it reads with the version pointer moved
(functions/serving.py), and maps them onto the served bundle's item indices once, so that a
request filters by index without a dictionary lookup per item.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Filters:
    """The item filters of one revision, mapped onto one bundle's item indices."""

    rev: int
    unavailable: frozenset = frozenset()
    unavailable_idx: frozenset = frozenset()
    category: dict = field(default_factory=dict)  # item id -> category
    codes: dict = field(default_factory=dict)  # category -> code
    item_codes: np.ndarray | None = None  # [num_items] int32 category code, -1 if none


def map_filters(item_index: dict, f: Filters) -> Filters:
    """`f` onto the items of a bundle.

    Args:
        item_index: the bundle's item id -> index.
        f: the filters (their mapped fields are ignored and rebuilt).

    Returns:
        The same filters with `unavailable_idx`, `codes` and `item_codes` [len(item_index)].
    """
    codes = {c: n for n, c in enumerate(sorted(set(f.category.values())))}
    item_codes = np.full(len(item_index), -1, np.int32)
    for item, cat in f.category.items():
        if item in item_index:
            item_codes[item_index[item]] = codes[cat]
    unavailable_idx = frozenset(item_index[i] for i in f.unavailable if i in item_index)
    return Filters(f.rev, f.unavailable, unavailable_idx, f.category, codes, item_codes)


class FilterReloader:
    """Reads the filters from Redis (one reader at a time) and maps them onto a bundle.

    Args:
        read: returns (revision, unavailable item ids, {item id: category}), e.g.
            infra.redis.item_filters.ItemFilters.read.
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
        log.info("item filters rev %d: %d unavailable, %d with a category", rev,
                 len(unavailable), len(category))
        return map_filters(item_index, Filters(rev, frozenset(unavailable), category=category))
