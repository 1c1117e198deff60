"""Request parsing for the functions: every bad input becomes a BadRequest (HTTP 400; TooLarge,
413, for a body over the size limit) that names the field and says what is wrong, never an
exception further down. Bodies are read and parsed by functions/body.py.
"""

from __future__ import annotations

import hashlib
import time

import flask

from functions.body import BadRequest, json_body, problem
from functions.chain import Query
from functions.cursor import CursorKeyUnavailable, decode_cursor
from models.rows import MAX_ID_CHARS, clean_id, validate_interaction  # one id rule for all

MAX_RECOMMENDATION_ID_CHARS = 64  # the functions make 32 hex characters
MAX_LIST = 500
MAX_FEATURES = 100
MAX_ADMIN = 100_000  # items per admin call
ID_FIELDS = ("user_id", "item_id", "event_type", "event_id", "recommendation_id")


def _text(value, name: str, limit: int = MAX_ID_CHARS) -> str:
    """A string or number as a stripped string (12.0 -> "12") of at most `limit` characters,
    by the id rules of the nightly's validators (models.rows.clean_id); "" for a blank string.
    """
    if isinstance(value, str) and not value.strip():
        return ""
    text, reason = clean_id(value, name)
    if text is None:
        raise BadRequest(reason)
    if len(text) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return text


def _body(request: flask.Request, limit: int) -> dict:
    if request.method != "POST":
        return {}
    body = json_body(request, limit)
    if not isinstance(body, dict):
        raise BadRequest("POST body must be a JSON object")
    return body


def _ids(args, body: dict, name: str, limit: int = MAX_LIST) -> list[str]:
    """A list of ids: a JSON list, or comma-separated strings (query strings may repeat it)."""
    if name in body:
        value = body[name]
        if value is None:
            return []
        if isinstance(value, str):
            parts = value.split(",")
        elif isinstance(value, list):
            parts = value
        else:
            raise BadRequest(f"{name} must be a list of ids or a comma-separated string")
    elif name not in args:
        return []
    else:
        parts = [p for v in args.getlist(name) for p in v.split(",")]
    if len(parts) > limit:
        raise BadRequest(f"{name} holds more than {limit} ids")
    return [t for t in (_text(p, name) for p in parts) if t]


def _k(value, max_k: int) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        k = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"k must be an integer, got {value!r:.40}") from None
    if not 1 <= k <= max_k:
        raise BadRequest(f"k must be between 1 and {max_k}, got {k}")
    return k


def _features(value) -> dict:
    if value is None:
        return {}
    ok = isinstance(value, dict) and len(value) <= MAX_FEATURES and all(
        isinstance(v, str | int | float | bool) or v is None for v in value.values())
    if not ok:
        raise BadRequest(f"features must be an object of at most {MAX_FEATURES} scalar values")
    return value


def query(request: flask.Request, max_k: int, limit: int,
          cursor_key: bytes | None) -> Query:
    """The /recommend query from the query string and, for POST, the JSON body (which wins).

    Args:
        limit: the largest body in bytes.
        cursor_key: the key page cursors are signed with (None: unknown for now).

    Raises:
        BadRequest: the message says which parameter is wrong.
        CursorKeyUnavailable: a cursor came while its key is unknown (Redis unreachable).
    """
    if request.method not in ("GET", "POST"):
        raise BadRequest("use GET with a query string or POST with a JSON object")
    args, body = request.args, _body(request, limit)
    get = args.get
    if body:
        def get(name):
            return body[name] if name in body else args.get(name)
    user_id = get("user_id")
    user_id = "" if user_id is None else _text(user_id, "user_id")
    if not user_id:
        raise BadRequest("user_id is required")
    cursor = get("cursor")
    if cursor not in (None, "") and not isinstance(cursor, str):
        raise BadRequest("cursor must be the string next_cursor of the previous page")
    if cursor and cursor_key is None:
        raise CursorKeyUnavailable("page cursors cannot be checked while Redis is unreachable: "
                                   "retry soon, or ask for the first page (no cursor)")
    try:
        served = decode_cursor(cursor_key, user_id, cursor) if cursor else []
    except ValueError as e:
        raise BadRequest(str(e)) from None
    k = get("k")
    return Query(user_id=user_id, k=10 if k is None else _k(k, max_k),
                 events=_ids(args, body, "events"), exclude=_ids(args, body, "exclude"),
                 categories=_ids(args, body, "category"), served=served,
                 features=_features(body.get("features")))


def _event(raw, now: int) -> tuple[dict | None, str | None]:
    if not isinstance(raw, dict):
        return None, "event must be a JSON object"
    reason = problem(raw, 2)  # text must be valid Unicode (the fields' types are checked below)
    if reason:
        return None, reason
    for name in ID_FIELDS:
        if raw.get(name) is not None:
            try:
                _text(raw[name], name, MAX_RECOMMENDATION_ID_CHARS
                      if name == "recommendation_id" else MAX_ID_CHARS)
            except BadRequest as e:
                return None, str(e)
    try:
        clean, reason = validate_interaction({"timestamp": now, **raw})
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        clean, reason = None, "unparseable timestamp"
    if clean is None:
        return None, reason
    event_id = _text(raw["event_id"], "event_id") if raw.get("event_id") is not None else ""
    if not event_id:  # derived from the content: a resent event gets the same id
        key = "\x1f".join(str(clean[c]) for c in ("user_id", "item_id", "event_type",
                                                   "timestamp", "weight"))
        event_id = "h" + hashlib.sha1(key.encode()).hexdigest()[:24]
    clean["event_id"] = event_id
    if raw.get("recommendation_id") is not None:
        clean["recommendation_id"] = _text(raw["recommendation_id"], "recommendation_id",
                                           MAX_RECOMMENDATION_ID_CHARS)
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
    if not isinstance(batch, list) or not batch:
        raise BadRequest('body must be {"events": [...]} with at least one event')
    if len(batch) > max_events:
        raise BadRequest(f"at most {max_events} events per request, got {len(batch)}")
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
    """The arguments of ItemFilters.update from a POST /admin/items body (<= `limit` bytes)."""
    body = _body(request, limit)
    changes = {name: _ids({}, body, name, MAX_ADMIN) if name in body else []
               for name in ("unavailable", "available")}
    categories = body.get("categories") or {}
    if not isinstance(categories, dict) or len(categories) > MAX_ADMIN:
        raise BadRequest("categories must be an object {item_id: category}")
    changes["categories"] = {_text(i, "item_id"): _text(c, "category")
                             for i, c in categories.items()}
    if "" in changes["categories"] or "" in changes["categories"].values():
        raise BadRequest("categories: item ids and categories must not be blank")
    both = set(changes["unavailable"]) & set(changes["available"])
    if both:
        raise BadRequest(f"{len(both)} item(s) are both unavailable and available, e.g. "
                         f"{sorted(both)[0]!r}: give each item once")
    if not any(changes.values()):
        raise BadRequest("nothing to change: give unavailable, available or categories")
    return changes
