"""Request parsing for the functions: every bad input becomes a BadRequest (HTTP 400; TooLarge,
413, for a body over the size limit) that names the field and says what is wrong, never an
exception further down. The fields and their limits are declared once, in
functions/request_models.py (which also generate the OpenAPI document); bodies are read and
parsed by functions/body.py.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass

import flask

from functions.body import BadRequest, json_body, problem
from functions.chain import Query
from functions.cursor import CursorKeyUnavailable, decode_cursor
from functions.field_rules import Id, Limits, read, rules
from functions.request_models import (
    Event,
    EventBatch,
    ItemChanges,
    RecommendRequest,
    SimilarRequest,
    TrendingRequest,
)
from infra.redis.item_filters import join_categories, split_categories
from infra.redis.trending import WINDOWS as TRENDING_WINDOWS
from models.rows import validate_interaction  # the one row rule of every validator

DEFAULT_WINDOW = "1h"
EVENT_IDS = {name: rule for name, rule in rules(Event).items() if isinstance(rule, Id)}


def _body(request: flask.Request, limit: int) -> dict:
    if request.method != "POST":
        return {}
    body = json_body(request, limit)
    if not isinstance(body, dict):
        raise BadRequest("POST body must be a JSON object")
    return body


def _read(model, request: flask.Request, max_k: int, limit: int):
    """The request's fields as `model` (a GET's query string, or a POST body that wins)."""
    if request.method not in ("GET", "POST"):
        raise BadRequest("use GET with a query string or POST with a JSON object")
    return read(model, _body(request, limit), request.args, Limits(max_k=max_k))


def _served(cursor_key: bytes | None, subject: str, cursor: str) -> list[str]:
    """The items earlier pages served, from a cursor signed for `subject` ([] without one)."""
    if not cursor:
        return []
    if cursor_key is None:
        raise CursorKeyUnavailable("page cursors cannot be checked while Redis is unreachable: "
                                   "retry soon, or ask for the first page (no cursor)")
    try:
        return decode_cursor(cursor_key, subject, cursor)
    except ValueError as e:
        raise BadRequest(str(e)) from None


def query(request: flask.Request, max_k: int, limit: int,
          cursor_key: bytes | None) -> Query:
    """The /recommend query from the query string and, for POST, the JSON body (which wins).

    Args:
        max_k: the largest k (RECSYS_MAX_K).
        limit: the largest body in bytes.
        cursor_key: the key page cursors are signed with (None: unknown for now).

    Raises:
        BadRequest: the message says which parameter is wrong.
        CursorKeyUnavailable: a cursor came while its key is unknown (Redis unreachable).
    """
    if request.method == "GET" and _PLAIN.issuperset(request.args.keys()):
        v = _plain(RecommendRequest, _PLAIN, request.args, max_k)  # the usual GET
        return Query(user_id=v["user_id"], k=v["k"])
    r = _read(RecommendRequest, request, max_k, limit)
    served = _served(cursor_key, r.user_id, r.cursor)
    return Query(user_id=r.user_id, k=r.k, events=list(r.events), exclude=list(r.exclude),
                 categories=list(r.category), served=served, features=r.features,
                 explain=r.explain)


# A GET of only these fields (/recommend's, /similar's) skips the other fields' rules.
_PLAIN, _PLAIN_SIMILAR = frozenset(("user_id", "k")), frozenset(("item_id", "user_id", "k"))


def _plain(model, names: frozenset, args, max_k: int) -> dict:
    """The values of `names` (`model`'s id field and k) from a GET whose query string holds
    only those (the usual request), through their rules in declaration order, as `read` (so
    the same values and the same errors), without reading the absent fields one by one."""
    limits, values = _limits(max_k), {}
    for name, rule in rules(model).items():
        if name in names:
            raw = rule.from_query(args.getlist(name), name) if name in args else None
            values[name] = rule.parse(raw, name, limits)
    return values


@functools.lru_cache(maxsize=8)
def _limits(max_k: int) -> Limits:
    return Limits(max_k=max_k)


@dataclass(frozen=True)
class ItemQuery:
    """A parsed /similar or /trending request (`item_id`, `user_id` and `window` "" where
    unused or not given)."""

    k: int
    exclude: list[str]
    categories: list[str]
    served: list[str]
    item_id: str = ""
    window: str = ""
    user_id: str = ""


CURSOR_SUBJECT = "\x00similar\x00"  # /similar's cursors sign this + the item id


def similar_query(request: flask.Request, max_k: int, limit: int,
                  cursor_key: bytes | None) -> ItemQuery:
    """The /similar query (query string, or a POST body that wins), as `query`.

    Raises:
        BadRequest: the message names the parameter.
        CursorKeyUnavailable: a cursor came while its key is unknown (Redis unreachable).
    """
    if request.method == "GET" and _PLAIN_SIMILAR.issuperset(request.args.keys()):
        v = _plain(SimilarRequest, _PLAIN_SIMILAR, request.args, max_k)  # the usual GET
        return ItemQuery(v["k"], [], [], [], item_id=v["item_id"], user_id=v["user_id"])
    r = _read(SimilarRequest, request, max_k, limit)
    served = _served(cursor_key, CURSOR_SUBJECT + r.item_id, r.cursor)
    return ItemQuery(r.k, list(r.exclude), list(r.category), served, item_id=r.item_id,
                     user_id=r.user_id)


def trending_query(request: flask.Request, max_k: int, limit: int) -> ItemQuery:
    """The /trending query; `window` one of infra.redis.trending.WINDOWS (default 1h).

    Raises:
        BadRequest: the message names the parameter.
    """
    r = _read(TrendingRequest, request, max_k, limit)
    window = r.window or DEFAULT_WINDOW
    if window not in TRENDING_WINDOWS:
        raise BadRequest(f"window must be one of {list(TRENDING_WINDOWS)}, got {window[:40]!r}")
    return ItemQuery(r.k, list(r.exclude), list(r.category), [], window=window)


def _event(raw, now: int) -> tuple[dict | None, str | None]:
    if not isinstance(raw, dict):
        return None, "event must be a JSON object"
    reason = problem(raw, 2)  # text must be valid Unicode (the fields' types are checked below)
    if reason:
        return None, reason
    try:
        ids = {name: "" if raw.get(name) is None else rule.text(raw[name], name)
               for name, rule in EVENT_IDS.items()}
    except BadRequest as e:
        return None, str(e)
    try:
        clean, reason = validate_interaction({"timestamp": now, **raw})
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        clean, reason = None, "unparseable timestamp"
    if clean is None:
        return None, reason
    event_id = ids["event_id"]
    if not event_id:  # derived from the content: a resent event gets the same id
        key = "\x1f".join(str(clean[c]) for c in ("user_id", "item_id", "event_type",
                                                   "timestamp", "weight"))
        if clean.get("value") is not None:  # only then: older events keep their ids
            key += f"\x1fvalue={clean['value']!r}"
        event_id = "h" + hashlib.sha1(key.encode()).hexdigest()[:24]
    clean["event_id"] = event_id
    if raw.get("recommendation_id") is not None:
        clean["recommendation_id"] = ids["recommendation_id"]
    return clean, None


def event_batch(request: flask.Request, max_events: int,
                limit: int) -> tuple[list[dict], list[dict], list[int]]:
    """Validates every event of a POST /events body (of at most `limit` bytes) before any is
    stored.

    Returns:
        (valid clean events, [{"index", "reason"}] for the others, the batch index of each
        valid event).
    """
    body = json_body(request, limit, check=False)  # each event is checked on its own
    batch = body.get("events") if isinstance(body, dict) else body
    batch = rules(EventBatch)["events"].parse(batch, "events", Limits(max_events=max_events))
    now, valid, rejected, positions = int(time.time()), [], [], []
    for n, raw in enumerate(batch):
        clean, reason = _event(raw, now)
        if clean is None:
            rejected.append({"index": n, "reason": reason})
        else:
            valid.append(clean)
            positions.append(n)
    return valid, rejected, positions


def item_changes(request: flask.Request, limit: int) -> dict:
    """The arguments of ItemFilters.update from a POST /admin/items body (<= `limit` bytes):
    an item's categories are `|`-separated, as in an items table (docs/SCHEMA.md)."""
    c = read(ItemChanges, _body(request, limit))
    categories = {item: join_categories(split_categories(value))
                  for item, value in c.categories.items()}
    empty = [item for item, value in categories.items() if not value]
    if empty:
        raise BadRequest(f"categories.{empty[0][:40]}: no category in "
                         f"{c.categories[empty[0]][:40]!r}; separate several with '|'")
    changes = {"unavailable": list(c.unavailable), "available": list(c.available),
               "categories": categories}
    both = set(changes["unavailable"]) & set(changes["available"])
    if both:
        raise BadRequest(f"{len(both)} item(s) are both unavailable and available, e.g. "
                         f"{sorted(both)[0]!r}: give each item once")
    if not any(changes.values()):
        raise BadRequest("nothing to change: give unavailable, available or categories")
    return changes
