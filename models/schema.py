"""The input schema shared by every loader, the batch job and the functions.

Interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int, seconds since the Unix
epoch, UTC), optional ``event_type`` (str) and optional ``weight`` (float, 0 to MAX_WEIGHT).
Users: ``user_id`` + feature columns. Items: ``item_id`` + feature columns.
The rules for one row live in models/rows.py (no pandas, for the functions); this module
applies the same code to whole tables (`validate_batch`) and drops exact duplicates
(`drop_duplicates`). See docs/SCHEMA.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from models.rows import (
    DEFAULT_EVENT_WEIGHTS,
    INTERACTION_COLUMNS,
    clean_event_type,
    clean_id,
    parse_timestamp,
    parse_weight,
    timestamp_failures,
    weight_failures,
)

if TYPE_CHECKING:
    import pandas as pd

SECONDS_PER_DAY = 86_400  # timestamps are epoch seconds


def __getattr__(name: str):
    """CLEAN_SCHEMA, the pyarrow schema of clean interactions, built on first use: pyarrow
    is imported only where Parquet is written (the batch job), not by every user of this
    module (the functions' on-demand path reaches it through models/evaluation.py)."""
    if name == "CLEAN_SCHEMA":
        import pyarrow as pa

        schema = pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                            ("timestamp", pa.int64()), ("event_type", pa.string()),
                            ("weight", pa.float64())])
        globals()["CLEAN_SCHEMA"] = schema
        return schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def drop_duplicates(clean: pd.DataFrame, file: str = "") -> tuple[pd.DataFrame, list[dict]]:
    """Keeps the first of identical clean rows; the copies become dead letters ("exact
    duplicate", `file` as their file: "" where rows of several files are gathered)."""
    import json

    copies = clean.duplicated(keep="first").to_numpy()
    dead = [{"file": file, "reason": "exact duplicate", "row": json.dumps(row, default=str)}
            for row in clean[copies].to_dict("records")]
    return clean[~copies].reset_index(drop=True), dead


def _per_value(column: pd.Series, rule: Callable) -> tuple[list, list]:
    """rule(value) -> (clean, reason) of every value, computed once per distinct value."""
    cache: dict = {}
    out = []
    for value in column.tolist():
        try:
            key = (value.__class__, value)  # 1, 1.0 and True are equal keys: keep types apart
            result = cache.get(key)
            if result is None:
                result = cache[key] = rule(value)
        except TypeError:  # unhashable (a list, an array, a dict) or not comparable (pd.NA)
            result = rule(value)
        out.append(result)
    return [r[0] for r in out], [r[1] for r in out]


def _plain_dtype(column: pd.Series, kinds: str) -> bool:
    """A NumPy (not extension, not bool) dtype of one of `kinds`, where NumPy can apply the
    rules to the whole column at once."""
    return isinstance(column.dtype, np.dtype) and column.dtype.kind in kinds


def _reasons(n: int, *checks: tuple[str, np.ndarray]) -> np.ndarray:
    reasons = np.full(n, None, dtype=object)
    for reason, bad in reversed(checks):  # the first failing check names the value
        reasons[bad] = reason
    return reasons


_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _timestamps(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """parse_timestamp over a column: (int64 seconds, 0 where rejected; reasons). Numeric and
    datetime columns go through `timestamp_failures` at once, others value by value."""
    import pandas as pd

    n = len(column)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if _plain_dtype(column, "M") and np.datetime_data(column.dtype) in [
            (u, 1) for u in _PER_SECOND]:
        raw = column.to_numpy()
        seconds = raw.view("int64") // _PER_SECOND[np.datetime_data(raw.dtype)[0]]  # floored
        reasons = _reasons(n, ("missing timestamp", np.isnat(raw)), *timestamp_failures(seconds))
    elif _plain_dtype(column, "iu"):
        seconds = column.to_numpy()
        reasons = _reasons(n, *timestamp_failures(seconds))
    elif _plain_dtype(column, "f"):
        raw = column.to_numpy(dtype=np.float64)
        seconds = np.trunc(np.nan_to_num(raw))
        with np.errstate(invalid="ignore"):
            reasons = _reasons(n, ("missing timestamp", np.isnan(raw)), *timestamp_failures(raw))
    else:
        values, reasons = _per_value(column, parse_timestamp)
        return (np.fromiter((0 if v is None else v for v in values), np.int64, n),
                np.array(reasons, dtype=object))
    return np.where(pd.isna(reasons), seconds, 0).astype(np.int64), reasons


def _weights(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """parse_weight over a column: (float64 weights, NaN where missing or rejected; reasons).
    Numeric columns go through `weight_failures` at once (integers compared exactly, before
    any rounding to float; NaN is missing), others value by value."""
    import pandas as pd

    n = len(column)
    if _plain_dtype(column, "iuf"):
        raw = column.to_numpy()
        missing = np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(n, bool)
        with np.errstate(invalid="ignore"):
            reasons = _reasons(n, *weight_failures(raw))
        reasons[missing] = None
        ok = pd.isna(reasons) & ~missing
        return np.where(ok, raw.astype(np.float64) + 0.0, np.nan), reasons
    values, reasons = _per_value(column, parse_weight)
    return (np.fromiter((np.nan if v is None else v for v in values), np.float64, n),
            np.array(reasons, dtype=object))


def validate_batch(df: pd.DataFrame, path: str = "<frame>",
                   event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
                   ) -> tuple[pd.DataFrame, list[dict]]:
    """validate_interaction over a whole table at once, with its code (models/rows.py): the
    value rules run once per distinct value, the numeric checks (`timestamp_failures`,
    `weight_failures`) on whole numeric and datetime columns; the same reasons.

    Returns:
        (clean interactions DataFrame, dead letters [{"file", "reason", "row"}]).

    Raises:
        SchemaError: a required column is missing.
    """
    import json

    import pandas as pd

    check_columns(path, df.columns, INTERACTION_COLUMNS)
    df = df.reset_index(drop=True)
    n = len(df)
    absent = pd.Series([None] * n, dtype=object)
    users, user_reasons = _per_value(df["user_id"], lambda v: clean_id(v, "user_id"))
    items, item_reasons = _per_value(df["item_id"], lambda v: clean_id(v, "item_id"))
    ts, ts_reasons = _timestamps(df["timestamp"])
    events, event_reasons = _per_value(df["event_type"] if "event_type" in df else absent,
                                       lambda v: clean_event_type(v, event_weights))
    weights, weight_reasons = _weights(df["weight"] if "weight" in df else absent)
    reason = np.array(weight_reasons, dtype=object)
    for earlier in (event_reasons, ts_reasons, item_reasons, user_reasons):
        earlier = np.array(earlier, dtype=object)
        has = pd.notna(earlier)
        reason[has] = earlier[has]
    bad = pd.notna(reason)
    dead = [{"file": path, "reason": r, "row": json.dumps(row, default=str)}
            for r, row in zip(reason[bad], df[bad].to_dict("records"), strict=True)]
    ok = ~bad
    clean = pd.DataFrame({"user_id": np.array(users, dtype=object)[ok],
                          "item_id": np.array(items, dtype=object)[ok],
                          "timestamp": ts[ok].astype(np.int64),
                          "event_type": pd.Series(np.array(events, dtype=object)[ok],
                                                  dtype=object),  # None, not NaN
                          "weight": weights[ok].astype(np.float64)})
    return clean, dead
