"""The input schema shared by every loader, the batch job and the functions.

Interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int, seconds since the Unix
epoch, UTC), optional ``event_type`` (str) and optional ``weight`` (float, 0 to MAX_WEIGHT).
Users: ``user_id`` + feature columns. Items: ``item_id`` + feature columns.
The rules for one row live in models/rows.py (no pandas, for the functions); this module
re-exports them and applies them to whole tables. See docs/SCHEMA.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from models.rows import (  # noqa: F401 (re-exported: the rules live in models/rows.py)
    DEFAULT_EVENT_WEIGHTS,
    INTERACTION_COLUMNS,
    MAX_ID_CHARS,
    MAX_WEIGHT,
    OPTIONAL_INTERACTION_COLUMNS,
    TS_MAX,
    TS_MIN,
    TS_OUT_OF_RANGE,
    TS_UNPARSEABLE,
    WEIGHT_NEGATIVE,
    WEIGHT_NON_NUMERIC,
    WEIGHT_OUT_OF_RANGE,
    clean_event_type,
    clean_id,
    parse_timestamp,
    parse_weight,
    validate_interaction,
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


def interactions_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Builds the canonical interactions DataFrame from clean rows."""
    import pandas as pd

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
    """parse_timestamp over a column: (int64 seconds, 0 where rejected; reasons)."""
    import pandas as pd

    n = len(column)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if _plain_dtype(column, "M") and np.datetime_data(column.dtype) in [
            (u, 1) for u in _PER_SECOND]:
        raw = column.to_numpy()
        per_second = _PER_SECOND[np.datetime_data(raw.dtype)[0]]
        ticks, missing = raw.view("int64"), np.isnat(raw)
        ok = (ticks >= TS_MIN * per_second) & (ticks < TS_MAX * per_second) & ~missing
        return (np.where(ok, ticks // per_second, 0),
                _reasons(n, ("missing timestamp", missing), (TS_OUT_OF_RANGE, ~ok)))
    if _plain_dtype(column, "iu"):
        raw = column.to_numpy()
        ok = (raw >= TS_MIN) & (raw < TS_MAX)
        return np.where(ok, raw, 0).astype(np.int64), _reasons(n, (TS_OUT_OF_RANGE, ~ok))
    if _plain_dtype(column, "f"):
        raw = column.to_numpy(dtype=np.float64)
        missing, finite = np.isnan(raw), np.isfinite(raw)
        with np.errstate(invalid="ignore"):
            ok = (raw >= TS_MIN) & (raw < TS_MAX)
        return (np.trunc(np.where(ok, raw, 0)).astype(np.int64),
                _reasons(n, ("missing timestamp", missing), (TS_UNPARSEABLE, ~finite),
                         (TS_OUT_OF_RANGE, ~ok)))
    values, reasons = _per_value(column, parse_timestamp)
    return (np.fromiter((0 if v is None else v for v in values), np.int64, n),
            np.array(reasons, dtype=object))


def _weights(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """parse_weight over a column: (float64 weights, NaN where missing or rejected; reasons)."""
    n = len(column)
    if _plain_dtype(column, "iuf"):
        raw = column.to_numpy(dtype=np.float64) if column.dtype.kind == "f" else None
        if raw is None:  # integers compare exactly, before any rounding to float
            ints = column.to_numpy()
            negative, high = ints < 0, ints > MAX_WEIGHT
            raw = ints.astype(np.float64)
            checks = [(WEIGHT_NEGATIVE, negative), (WEIGHT_OUT_OF_RANGE, high)]
        else:
            finite = np.isfinite(raw)
            with np.errstate(invalid="ignore"):
                checks = [(WEIGHT_NON_NUMERIC, ~finite & ~np.isnan(raw)),
                          (WEIGHT_NEGATIVE, raw < 0), (WEIGHT_OUT_OF_RANGE, raw > MAX_WEIGHT)]
        reasons = _reasons(n, *checks)
        import pandas as pd

        return np.where(pd.isna(reasons), raw + 0.0, np.nan), reasons
    values, reasons = _per_value(column, parse_weight)
    return (np.fromiter((np.nan if v is None else v for v in values), np.float64, n),
            np.array(reasons, dtype=object))


def validate_batch(df: pd.DataFrame, path: str = "<frame>",
                   event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
                   ) -> tuple[pd.DataFrame, list[dict]]:
    """validate_interaction over a whole table at once: the same value rules (models/rows.py)
    and the same reasons, each rule run once per distinct value, or by NumPy on numeric
    and datetime columns.

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
