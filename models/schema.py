"""The input schema shared by every loader, the batch job and the functions.

Interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int, seconds since the Unix
epoch, UTC), optional ``event_type`` (str) and optional ``weight`` (float >= 0).
Users: ``user_id`` + feature columns. Items: ``item_id`` + feature columns.
See docs/SCHEMA.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("event_type", "weight")
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "purchase": 5.0,
                                              "rating": 1.0}


@dataclass
class Dataset:
    """Interactions plus optional user and item feature tables (pandas DataFrames)."""

    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    name: str = "dataset"
    extras: dict = field(default_factory=dict)


class SchemaError(ValueError):
    """A file is missing, unreadable or has the wrong columns; names the file and the columns."""


def check_columns(path: str, found: Iterable[str], required: Iterable[str]) -> None:
    """Raises SchemaError naming the file, the expected and the found columns."""
    found = list(found)
    missing = [c for c in required if c not in found]
    if missing:
        raise SchemaError(
            f"{path}: missing column(s) {missing}; expected at least {list(required)}, "
            f"found {found}. See docs/SCHEMA.md for the input schema."
        )


def natural_key(item_id: str) -> tuple:
    """Sort key ordering numeric ids numerically and others lexicographically after them."""
    s = str(item_id)
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def _parse_timestamp(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if (isinstance(value, float) and not math.isfinite(value)) else int(value)
    if value is pd.NaT:
        return None
    if isinstance(value, datetime):  # pd.Timestamp too; naive means UTC, never local time
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    s = str(value).strip()
    if not s:
        return None
    try:
        number = float(s)
    except ValueError:
        pass
    else:
        return int(number) if math.isfinite(number) else None
    try:
        ts = pd.Timestamp(s)
    except (ValueError, TypeError):
        return None
    if pd.isna(ts):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())


def _clean_id(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    s = str(value).strip()
    return s or None


def validate_interaction(
    row: Mapping, event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
) -> tuple[dict | None, str | None]:
    """Checks one interaction row.

    Args:
        row: a mapping with at least user_id, item_id, timestamp.
        event_weights: the known event types; None accepts any event type.

    Returns:
        (clean_row, None) for a valid row, with ids as str, timestamp as int seconds,
        event_type as str or None and weight as float or None; (None, reason) otherwise.
    """
    user_id = _clean_id(row.get("user_id"))
    if user_id is None:
        return None, "missing user_id"
    item_id = _clean_id(row.get("item_id"))
    if item_id is None:
        return None, "missing item_id"
    raw_ts = row.get("timestamp")
    if raw_ts is None or (isinstance(raw_ts, float) and math.isnan(raw_ts)) or raw_ts == "":
        return None, "missing timestamp"
    ts = _parse_timestamp(raw_ts)
    if ts is None:
        return None, "unparseable timestamp"
    event_type = row.get("event_type")
    if event_type is not None and not (isinstance(event_type, float) and math.isnan(event_type)):
        event_type = str(event_type).strip() or None
    else:
        event_type = None
    if event_type is not None and event_weights is not None and event_type not in event_weights:
        return None, "unknown event_type"
    weight = row.get("weight")
    if weight is None or (isinstance(weight, float) and math.isnan(weight)) or weight == "":
        weight = None
    else:
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            return None, "non-numeric weight"
        if not math.isfinite(weight):
            return None, "non-numeric weight"
        if weight < 0:
            return None, "negative weight"
    return {"user_id": user_id, "item_id": item_id, "timestamp": ts,
            "event_type": event_type, "weight": weight}, None


def interactions_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Builds the canonical interactions DataFrame from clean rows."""
    df = pd.DataFrame(list(rows), columns=list(INTERACTION_COLUMNS + OPTIONAL_INTERACTION_COLUMNS))
    df = df.astype({"user_id": str, "item_id": str, "timestamp": "int64", "weight": "float64"})
    event_type = df["event_type"].astype(object)
    df["event_type"] = event_type.where(event_type.notna(), None)
    return df


def validate_frame(df: pd.DataFrame, path: str = "<frame>",
                   event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
                   ) -> tuple[pd.DataFrame, list[dict]]:
    """Validates every row of an interactions table, as the nightly job's Beam step does.

    Args:
        df: raw interactions with at least user_id, item_id, timestamp.
        path: the file's name, for messages and dead letters.
        event_weights: the known event types (None accepts any).

    Returns:
        (clean interactions DataFrame, dead letters [{"file", "reason", "row"}]); exact
        duplicates of an earlier clean row are dead letters with reason "exact duplicate".

    Raises:
        SchemaError: a required column is missing.
    """
    import json

    check_columns(path, df.columns, INTERACTION_COLUMNS)
    clean, dead, seen = [], [], set()
    for raw in df.to_dict("records"):
        row, reason = validate_interaction(raw, event_weights)
        if row is not None:
            key = tuple(row.values())
            if key in seen:
                row, reason = None, "exact duplicate"
            seen.add(key)
        if row is None:
            dead.append({"file": path, "reason": reason,
                         "row": json.dumps(raw, default=str)})
        else:
            clean.append(row)
    return interactions_frame(clean), dead
