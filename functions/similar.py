"""GET|POST /similar: an item's neighbours under the live filters, paged like /recommend.

    cache      the nightly's neighbours of the item, NS:v:<current>:i:<item> (one GET;
               infra/redis/similar.py, computed by batch/similar.py)
    on_demand  when they are missing or the filters left fewer than k: the nearest items by
               the bundle's item embeddings (item_vectors.npy: the served model's two-tower
               vectors, which its item tower computes from features alone for items without
               events), one matrix-vector product over the catalogue

The answer is the current version's, or, given a `user_id` while an experiment runs, the
version of the user's arm (functions/serving.Serving.route, as /recommend routes them), so that
an arm's users see its neighbours beside its lists. Every source
drops the same items: the item itself, unavailable items, the request's `exclude`, the items
of earlier pages (the cursor) and, with `category`, items having none of its categories (a
category no served item has is a 400, as for /recommend). An item the served version does not
know is a 404.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import redis

from functions.arms import Route
from functions.chain import walk
from functions.cursor import MAX_SERVED, encode_cursor
from functions.loaded import Loaded
from functions.params import CURSOR_SUBJECT, ItemQuery
from functions.serving import Serving
from infra.redis.codec import decode_list_py
from infra.redis.similar import SimilarLists
from models.rules import fill
from models.similar import item_embeddings, unit_rows


class UnknownItem(LookupError):
    """The served version has no such item (HTTP 404)."""


@dataclass
class SimilarAnswer:
    item_id: str
    version: str
    experiment: str  # "" outside an experiment (no user_id, or none running)
    arm: str
    source: str  # cache | on_demand
    filled_by: list[str]
    items: list[tuple[str, float]]
    next_cursor: str | None


class _Vectors:
    """Unit-length item embeddings of the versions served lately (built on first use)."""

    def __init__(self, keep: int = 3):
        self._by_version: dict[str, np.ndarray] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def of(self, loaded: Loaded) -> np.ndarray:
        got = self._by_version.get(loaded.version)
        if got is None:
            with self._lock:
                got = self._by_version.get(loaded.version)
                if got is None:
                    b = loaded.bundle
                    got = unit_rows(item_embeddings(b.item_vectors, b.manifest.get("model")),
                                    len(b.item_ids))
                    while len(self._by_version) >= self._keep:
                        self._by_version.pop(next(iter(self._by_version)))
                    self._by_version[loaded.version] = got
        return got


VECTORS = _Vectors()


def similar(s: Serving, store: SimilarLists, q: ItemQuery,
            cursor_key: bytes | None) -> SimilarAnswer:
    """The neighbours of `q.item_id` under the filters.

    Raises:
        UnknownItem: not an item of the served version.
        BadRequest: a category no served item has.
        NoBundleError, redis.RedisError: as functions.chain.recommend.
    """
    route = s.route(q.user_id) if q.user_id else Route(s.state())
    loaded = route.loaded
    me = loaded.item_index.get(q.item_id)
    if me is None:
        raise UnknownItem(f"item_id: unknown item {q.item_id[:80]!r}: the served version "
                          f"{loaded.version} does not have it")
    flt, index, names = loaded.filters, loaded.item_index, loaded.item_names
    if q.categories:
        flt.check_categories(q.categories)
    blocked = {me, *(index[i] for i in (*q.exclude, *q.served) if i in index)}
    raw = None
    if s.breaker.up():
        try:
            raw = store.read(loaded.version, q.item_id)
        except redis.RedisError as e:
            s.breaker.trip(e)
    out, sources = [], []
    if raw is not None:
        if not q.categories:  # the usual request: the list's head, as /recommend's
            out = walk(raw, q.k, blocked, flt.unavailable_idx)
        else:
            items, scores = decode_list_py(raw)
            exclude = blocked | flt.unavailable_idx.intersection(items)
            inside = flt.inside(items, q.categories)
            exclude.update(i for i, ok in zip(items, inside.tolist(), strict=True) if not ok)
            score = dict(zip(reversed(items), reversed(scores), strict=True))
            out = [(i, score[i]) for i in fill(items, [], q.k, exclude)]
        if out:
            sources.append("cache")
    if len(out) < q.k:
        got = _nearest(loaded, me, blocked | {i for i, _ in out}, q, q.k - len(out))
        if got:
            out, sources = out + got, sources + ["on_demand"]
    served = q.served + [names[i] for i, _ in out]
    more = len(out) == q.k and len(served) < MAX_SERVED and cursor_key is not None
    cursor = encode_cursor(cursor_key, CURSOR_SUBJECT + q.item_id, served) if more else None
    return SimilarAnswer(q.item_id, loaded.version, route.experiment, route.arm,
                         sources[0] if sources else "on_demand",
                         sources[1:], [(names[i], float(v)) for i, v in out], cursor)


def _nearest(loaded: Loaded, me: int, blocked: set, q: ItemQuery,
             k: int) -> list[tuple[int, float]]:
    """The k items nearest to `me` by embedding cosine, under the filters: [(index, score)]
    with score = (1 + cosine) / 2 (the blend's embedding term: models/similar.py)."""
    V = VECTORS.of(loaded)
    if V is None or not np.any(V[me]):
        return []
    flt = loaded.filters
    s = (1.0 + V @ V[me]) / 2.0
    drop = np.fromiter(blocked | flt.unavailable_idx, np.int64)
    s[drop] = -np.inf
    if q.categories:
        s[flt.outside(q.categories, len(s))] = -np.inf
    m = min(k, len(s))
    top = np.argpartition(-s, m - 1)[:m] if m < len(s) else np.arange(len(s))
    top = top[np.lexsort((top, -s[top]))]
    return [(int(i), float(s[i])) for i in top if np.isfinite(s[i])]
