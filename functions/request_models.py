"""The functions' requests, declared once: each field's rule both parses it and documents it.

functions/params.py reads requests through these models (a bad value is a BadRequest naming
the field); functions/openapi.py generates `/openapi.json` from them, so every documented limit
is the enforced one. The rules are functions/field_rules.py.

The models are frozen dataclasses with the rule in each field's metadata rather than pydantic
models: importing pydantic and building these models cost ~100 ms, against a cold start of
`import functions.main` of ~250 ms (python -X importtime).
"""

from __future__ import annotations

from dataclasses import dataclass

from functions.cursor import MAX_CURSOR_CHARS
from functions.field_rules import (
    Checked,
    Flag,
    Id,
    IdMap,
    Ids,
    Integer,
    Objects,
    Scalars,
    Text,
    rule,
)
from infra.redis.trending import WINDOWS as TRENDING_WINDOWS
from models.rows import DEFAULT_EVENT_WEIGHTS, MAX_VALUE, MAX_WEIGHT, TS_MAX, TS_MIN

MAX_RECOMMENDATION_ID_CHARS = 64  # the functions make 32 hex characters
MAX_LIST = 500  # ids per list of a /recommend request
MAX_FEATURES = 100  # user features per /recommend request
MAX_ADMIN = 100_000  # items per /admin/items call


@dataclass(frozen=True)
class RecommendRequest:
    """GET /recommend (query string) or POST (JSON body, whose fields win)."""

    user_id: str = rule(Id("The user to recommend for.", required=True))
    cursor: str = rule(Text("next_cursor of the previous page: later pages never repeat an "
                            "item.", MAX_CURSOR_CHARS,
                            "the string next_cursor of the previous page"))
    k: int = rule(Integer("Items per page.", 1, "max_k", 10))
    events: tuple = rule(Ids("Item ids the user just touched, for a fresh user", MAX_LIST))
    exclude: tuple = rule(Ids("Item ids never to return", MAX_LIST))
    category: tuple = rule(Ids("Only items having one of these categories (an item may have "
                               "several; a category no served item has answers 400)", MAX_LIST))
    features: dict = rule(Scalars("User features (scalars) for rankers that use them; MF "
                                  "ignores them.", MAX_FEATURES))
    explain: bool = rule(Flag("Give each item a `reason` worked out from the ranker's "
                              "features (docs/SERVING.md, Reasons)."))


@dataclass(frozen=True)
class SimilarRequest:
    """GET /similar (query string) or POST (JSON body, whose fields win)."""

    item_id: str = rule(Id("The item whose neighbours to list.", required=True))
    user_id: str = rule(Id("The user asking, if known: in a running experiment the neighbours "
                           "are those of the user's arm's version, as /recommend's lists; "
                           "without it, the current version's."))
    cursor: str = rule(Text("next_cursor of the previous page: later pages never repeat an "
                            "item.", MAX_CURSOR_CHARS,
                            "the string next_cursor of the previous page"))
    k: int = rule(Integer("Items per page.", 1, "max_k", 10))
    exclude: tuple = rule(Ids("Item ids never to return", MAX_LIST))
    category: tuple = rule(Ids("Only items having one of these categories (an item may have "
                               "several; a category no served item has answers 400)", MAX_LIST))


@dataclass(frozen=True)
class TrendingRequest:
    """GET /trending (query string) or POST (JSON body, whose fields win)."""

    window: str = rule(Id("The window engagement is summed over.",
                          enum=tuple(TRENDING_WINDOWS)))
    k: int = rule(Integer("Items per page.", 1, "max_k", 10))
    exclude: tuple = rule(Ids("Item ids never to return", MAX_LIST))
    category: tuple = rule(Ids("Only items having one of these categories (an item may have "
                               "several; a category no served item has answers 400)", MAX_LIST))


@dataclass(frozen=True)
class Event:
    """One event of POST /events (checked by models.rows.validate_interaction after the ids)."""

    user_id: str = rule(Id(required=True))
    item_id: str = rule(Id(required=True))
    event_type: str = rule(Id(enum=tuple(DEFAULT_EVENT_WEIGHTS)))
    timestamp: object = rule(Checked({
        "description": "Epoch seconds or ISO-8601; default: time received.",
        "oneOf": [{"type": "integer", "minimum": TS_MIN, "maximum": TS_MAX - 1},
                  {"type": "string"}]}))
    weight: float = rule(Checked({"type": "number", "minimum": 0, "maximum": MAX_WEIGHT}))
    event_id: str = rule(Id("Idempotency key: a resent id is stored once."))
    recommendation_id: str = rule(Id(max_chars=MAX_RECOMMENDATION_ID_CHARS))
    value: float = rule(Checked({
        "type": "number", "minimum": 0, "maximum": MAX_VALUE,
        "description": "A purchase's amount (shop currency): the experiments' value per user "
                       "and average order value."}))


@dataclass(frozen=True)
class EventBatch:
    """POST /events: {"events": [...]} (a bare list is taken too)."""

    events: list = rule(Objects("The events, each validated on its own.", Event,
                                "event", 1, "max_events"))


@dataclass(frozen=True)
class ItemChanges:
    """POST /admin/items: the arguments of ItemFilters.update."""

    unavailable: tuple = rule(Ids("Item ids not to recommend", MAX_ADMIN, in_query=False))
    available: tuple = rule(Ids("Item ids to recommend again", MAX_ADMIN, in_query=False))
    categories: dict = rule(IdMap("{item_id: category}; several categories of one item are "
                                  "'|'-separated ('Comedy|Drama'), replacing the item's earlier "
                                  "ones", MAX_ADMIN, "item_id", "category"))
