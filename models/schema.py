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

import numpy as np
import pandas as pd
import pyarrow as pa

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
CLEAN_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                          ("timestamp", pa.int64()), ("event_type", pa.string()),
                          ("weight", pa.float64())])
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


def _ids(column: pd.Series) -> pd.Series:
    return column.map(_clean_id, na_action="ignore").astype(object)


def _timestamps(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(int seconds or NaN, missing mask) for a column of numbers, datetimes or strings."""
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = pd.to_datetime(column, utc=True)
        secs = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        return secs.astype("float64"), column.isna().to_numpy()
    text = column.astype(object).where(column.notna(), None)
    text = text.map(lambda v: v.strip() if isinstance(v, str) else v, na_action="ignore")
    missing = text.isna().to_numpy() | (text == "").to_numpy()
    numeric = pd.to_numeric(text.where(~missing, None), errors="coerce").astype("float64")
    numeric = numeric.where(np.isfinite(numeric))
    rest = numeric.isna().to_numpy() & ~missing
    if rest.any():
        parsed = pd.to_datetime(text[rest], utc=True, errors="coerce", format="mixed")
        numeric[rest] = ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))
    return numeric, missing


def validate_batch(df: pd.DataFrame, path: str = "<frame>",
                   event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
                   ) -> tuple[pd.DataFrame, list[dict]]:
    """validate_interaction over a whole table at once (same rules, same reasons).

    Returns:
        (clean interactions DataFrame, dead letters [{"file", "reason", "row"}]).
    """
    import json

    check_columns(path, df.columns, INTERACTION_COLUMNS)
    df = df.reset_index(drop=True)
    n = len(df)
    users, items = _ids(df["user_id"]), _ids(df["item_id"])
    ts, ts_missing = _timestamps(df["timestamp"])
    event = df["event_type"] if "event_type" in df else pd.Series([None] * n)
    event = _ids(event)
    weight_raw = df["weight"] if "weight" in df else pd.Series([None] * n)
    weight_text = weight_raw.astype(object).where(weight_raw.notna(), None)
    weight_missing = weight_text.isna().to_numpy() | (weight_text == "").to_numpy()
    weight = pd.to_numeric(weight_text.where(~weight_missing, None), errors="coerce"
                           ).astype("float64")
    checks = [
        ("missing user_id", users.isna().to_numpy()),
        ("missing item_id", items.isna().to_numpy()),
        ("missing timestamp", ts_missing),
        ("unparseable timestamp", ts.isna().to_numpy()),
        ("unknown event_type", (event.notna() & ~event.isin(list(event_weights))).to_numpy()
         if event_weights is not None else np.zeros(n, bool)),
        ("non-numeric weight", ~weight_missing & ~np.isfinite(weight.to_numpy())),
        ("negative weight", (weight < 0).to_numpy()),
    ]
    reason = np.full(n, None, dtype=object)
    for name, bad in reversed(checks):  # the first failing check names the row
        reason[bad] = name
    bad = reason != None  # noqa: E711 (element-wise)
    dead = [{"file": path, "reason": r, "row": json.dumps(row, default=str)}
            for r, row in zip(reason[bad], df[bad].to_dict("records"), strict=True)]
    ok = ~bad
    clean = pd.DataFrame({"user_id": users[ok].astype(str), "item_id": items[ok].astype(str),
                          "timestamp": ts[ok].astype("int64"),
                          "event_type": event[ok].astype(object),
                          "weight": weight[ok].where(~weight_missing[ok])})
    clean["event_type"] = clean["event_type"].where(clean["event_type"].notna(), None)
    return clean.reset_index(drop=True), dead
