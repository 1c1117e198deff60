"""The fallback chain of /recommend: cache -> on_demand -> popular, under the live filters.

The chain runs within one version: the user's arm's in a running experiment, else the current
one (functions/arms.py); its nightly list, on-demand scorer and popular items are that
version's.

Every source sees the same exclusions: the items the user touched since the nightly run (their
recent-history list plus the request's `events`), unavailable items, the request's `exclude`,
the items served on earlier pages (the cursor: functions/cursor.py), and, with a `category`
filter, every item having none of its categories (an item may have several; a category no
served item has is a 400: functions/filters.py). When a source leaves fewer than k items, the
next one fills. The filtering itself is models.rules (`fill`), the module the batch job uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import redis

from functions.arms import Route
from functions.cursor import MAX_SERVED, encode_cursor
from functions.filters import Filters
from functions.loaded import Loaded
from functions.serving import Serving
from infra.redis.codec import decode_head_py, decode_list_py
from models.rules import fill

HEAD_SLACK = 8  # entries of a cached list decoded past k + the blocked ones (_from_cache)


@dataclass
class Query:
    user_id: str
    k: int
    events: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    features: dict = field(default_factory=dict)  # user features: the served model's; MF not
    explain: bool = False  # reasons per item (functions/explain.py), after the chain


@dataclass
class Answer:
    version: str  # the version that served the answer (the arm's, in an experiment)
    source: str  # cache | on_demand | popular | fallback: where the list starts
    items: list[tuple[str, float | None]]
    filled_by: list[str]  # later sources that topped the list up
    next_cursor: str | None
    experiment: str = ""  # "" outside an experiment
    arm: str = ""


def recommend(s: Serving, q: Query, cursor_key: bytes | None = None,
              route: Route | None = None) -> Answer:
    """Runs the chain for one request; the next page's cursor is signed with `cursor_key`
    (None: no next_cursor).

    Args:
        route: the user's version and arm (None: asked of `s`).

    Raises:
        BadRequest: a category no served item has (the message names the field).
        NoBundleError: nothing is published (or loadable) yet.
        redis.RedisError: Redis failed before any bundle was loaded.
    """
    if route is None:
        route = s.route(q.user_id)
    loaded = route.loaded
    degraded, raw, hist = not s.breaker.up(), None, []
    if not degraded:
        try:
            raw, hist = s.fetch(loaded.version, q.user_id)
        except redis.RedisError as e:
            s.breaker.trip(e)
            degraded = True
    flt = loaded.filters
    blocked = {*hist, *q.events, *q.exclude, *q.served}
    popular = s.trending.fallback(loaded) or loaded.bundle.popular  # functions/trending.py
    if q.categories:
        flt.check_categories(q.categories)
        cats = set(q.categories)
        popular = [i for i in popular if not cats.isdisjoint(flt.category.get(i, ()))]
    if degraded:
        s.record.fallback("redis_down")
        return _answer(route, q, "fallback", [], _popular(popular, q.k, blocked, flt),
                       cursor_key)
    index = loaded.item_index
    blocked_idx = {index[i] for i in blocked if i in index} if blocked else set()
    out, sources = [], []
    s.record.cache_lookup(raw is not None)
    if raw is not None:
        out = _from_cache(raw, q, blocked_idx, flt, loaded.item_names)
    if out:
        sources.append("cache")
    history = [*hist, *q.events]
    if len(out) < q.k and (history or q.features):  # the kind's scorer decides what it uses
        got = _on_demand(loaded, q, history, blocked_idx | {index[i] for i, _ in out},
                         q.k - len(out))
        if got:
            out, sources = out + got, sources + ["on_demand"]
    if len(out) < q.k:
        got = _popular(popular, q.k - len(out), blocked | {i for i, _ in out}, flt)
        if got:
            out, sources = out + got, sources + ["popular"]
    source = sources[0] if sources else "popular"
    return _answer(route, q, source, sources[1:], out, cursor_key)


def _on_demand(loaded: Loaded, q: Query, history: list[str], blocked_idx: set,
               k: int) -> list:
    """The version's on-demand ranks of a user known by `history` (item ids, oldest first)
    and the request's features, under the filters and never one of `blocked_idx` (indices
    excluded or already listed): [(item id, score)], at most k."""
    flt, index, names = loaded.filters, loaded.item_index, loaded.item_names
    exclude = np.fromiter(blocked_idx | flt.unavailable_idx, np.int64)
    if q.categories:
        exclude = np.union1d(exclude, flt.outside(q.categories, len(names)))
    seen = np.array([index[i] for i in history if i in index], np.int64)
    return [(names[i], d) for i, d in loaded.rank(seen, exclude, k, q.user_id, q.features)]


def _from_cache(raw: bytes, q: Query, blocked_idx: set, flt: Filters,
                names: list) -> list:
    """The nightly list under the filters: [(item id, score)], at most k."""
    if not q.categories:  # the usual request: walk the list until k items pass
        return [(names[i], v) for i, v in walk(raw, q.k, blocked_idx, flt.unavailable_idx)]
    items, scores = decode_list_py(raw)
    exclude = blocked_idx | flt.unavailable_idx.intersection(items)
    if q.categories:
        inside = flt.inside(items, q.categories)
        exclude.update(i for i, ok in zip(items, inside.tolist(), strict=True) if not ok)
    picked = fill(items, [], q.k, exclude)
    # A list holds each item once, so the picks are among its first k + |exclude| items;
    # reversed, so that a repeated item keeps its first score.
    head = min(len(items), q.k + len(exclude))
    score = dict(zip(reversed(items[:head]), reversed(scores[:head]), strict=True))
    if not all(i in score for i in picked):
        score = dict(zip(reversed(items), reversed(scores), strict=True))
    return [(names[i], score[i]) for i in picked]


def walk(raw: bytes, k: int, blocked: set, unavailable: frozenset | set
         ) -> list[tuple[int, float]]:
    """The first k distinct items of an encoded list (infra/redis/codec) that are neither
    blocked nor unavailable, each with its first score: [(item index, score)]. Decodes the
    list's head only (k + |blocked| + HEAD_SLACK entries), further when unavailable items
    took its places: the usual request never unpacks the whole list."""
    total = len(raw) // 6
    head = k + len(blocked) + HEAD_SLACK
    while True:
        items, scores = decode_head_py(raw, head)
        out, seen = [], set()
        for i, score in zip(items, scores, strict=True):
            if i in seen or i in blocked or i in unavailable:
                continue  # (a repeated item keeps its first score)
            seen.add(i)
            out.append((i, score))
            if len(out) == k:
                return out
        if head >= total:
            return out
        head *= 4


def _popular(popular: list[str], k: int, blocked: set, flt: Filters
             ) -> list[tuple[str, None]]:
    exclude = blocked | flt.unavailable.intersection(popular)
    return [(i, None) for i in fill([], popular, k, exclude)]


def _answer(route: Route, q: Query, source: str, filled_by: list[str],
            items: list, cursor_key: bytes | None) -> Answer:
    served = q.served + [i for i, _ in items]
    more = len(items) == q.k and len(served) < MAX_SERVED and cursor_key is not None
    return Answer(route.loaded.version, source, items, filled_by,
                  encode_cursor(cursor_key, q.user_id, served) if more else None,
                  route.experiment, route.arm)
