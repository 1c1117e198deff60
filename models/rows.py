"""The rules for one interaction row, in plain Python: the one rule set of every validator.

`validate_interaction` checks a row for the functions (`POST /events`) and the events drain;
`models.schema.validate_batch` applies the same code to whole columns for the nightly job and
the dataset loaders: the value rules (`clean_id`, `clean_event_type`, `parse_timestamp`,
`parse_weight`) once per distinct value, and the numeric checks (`timestamp_failures`,
`weight_failures`, written for a number or a NumPy array alike) to numeric columns at once.
This module imports neither pandas nor pyarrow nor NumPy, so the functions' light path stays
light (docs/SERVING.md). The limits and the reason strings are documented in docs/SCHEMA.md.

    python -c "from models.rows import validate_interaction as v; print(v({'user_id': 'u',
    'item_id': 'i', 'timestamp': 1e20}))"
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("event_type", "weight")
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "purchase": 5.0,
                                              "rating": 1.0}

MAX_ID_CHARS = 256  # after stripping; ids are Redis key parts and JSON in every answer
TS_MIN = 0  # 1970-01-01T00:00:00Z, inclusive
TS_MAX = 4_102_444_800  # 2100-01-01T00:00:00Z, exclusive: epoch milliseconds fall outside
MAX_WEIGHT = 1000.0  # 200x the largest default event weight (purchase: 5); see docs/SCHEMA.md
MAX_NUMBER_CHARS = 64  # a timestamp or weight written as text longer than this is not one
MAX_VALUE = 1_000_000_000.0  # an event's `value` (a purchase's amount); see docs/SCHEMA.md

# Reason strings (stable: dead-letter files, Beam counters and HTTP 400 bodies use them).
TS_UNPARSEABLE = "unparseable timestamp"
TS_OUT_OF_RANGE = ("timestamp out of range: expected epoch seconds from 1970-01-01 to before "
                   "2100-01-01 UTC (milliseconds?)")
EVENT_UNKNOWN = "unknown event_type"
WEIGHT_NON_NUMERIC = "non-numeric weight"
WEIGHT_NEGATIVE = "negative weight"
WEIGHT_OUT_OF_RANGE = f"weight out of range [0, {MAX_WEIGHT:g}]"
VALUE_NON_NUMERIC = "non-numeric value"
VALUE_NEGATIVE = "negative value"
VALUE_OUT_OF_RANGE = f"value out of range [0, {MAX_VALUE:.0f}]"

# A version's name: infra.bundle.new_version's ("20250101T000000Z-1a2b") and short test names
# ("v1"); no Redis key separator, no glob character. infra/redis/keys.py and the experiments'
# arms (models/experiments/assignment.py) both check versions with it.
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# C0 and C1 control characters, DEL, and UTF-16 surrogates (which no UTF-8 text can hold).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NA_TYPES = ("NAType", "NaTType")  # pandas.NA and pandas.NaT, recognised without pandas


def id_reasons(field: str) -> dict[str, str]:
    """The reasons `clean_id` gives for `field`, by kind: missing, type, long, chars."""
    return {"missing": f"missing {field}",
            "type": f"{field} must be a string or a finite number",
            "long": f"{field} is longer than {MAX_ID_CHARS} characters",
            "chars": f"{field} holds a control character or a lone surrogate"}


_ID_REASONS = {f: id_reasons(f) for f in ("user_id", "item_id", "event_type", "event_id",
                                          "recommendation_id")}


def is_missing(value) -> bool:
    """None, a NaN number, pandas.NA or pandas.NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    if type(value).__name__ in _NA_TYPES:
        return True
    return (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
            and math.isnan(value))


def _is_bool(value) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def clean_id(value, field: str = "id") -> tuple[str | None, str | None]:
    """An id as stripped text: a string, an integer or a finite float (12.0 -> "12").

    Returns:
        (text, None), or (None, reason): missing (None, NaN, empty or whitespace only), not a
        string or finite number (bool, list, dict, bytes, inf), longer than MAX_ID_CHARS, or
        holding a control character or a lone surrogate.
    """
    reasons = _ID_REASONS.get(field) or id_reasons(field)
    if isinstance(value, str):
        text = value.strip()
    elif is_missing(value):
        return None, reasons["missing"]
    elif _is_bool(value) or not isinstance(value, numbers.Real):
        return None, reasons["type"]
    elif isinstance(value, numbers.Integral):
        number = int(value)
        if number.bit_length() > 1000:  # > 300 digits; str() of a huge int is slow or refused
            return None, reasons["long"]
        text = str(number)
    else:
        try:
            number = float(value)
        except OverflowError:
            return None, reasons["long"]
        if not math.isfinite(number):
            return None, reasons["type"]
        text = str(int(number)) if number.is_integer() else repr(number)
    if not text:
        return None, reasons["missing"]
    if len(text) > MAX_ID_CHARS:
        return None, reasons["long"]
    if _BAD_CHARS.search(text):
        return None, reasons["chars"]
    return text, None


def timestamp_failures(seconds) -> tuple[tuple[str, Any], ...]:
    """The checks of a timestamp in seconds, in order: (reason, failed) pairs.

    Args:
        seconds: a number (int or float) or a NumPy array of them; `failed` is a bool or a
            bool array alike. The first failed check names the value.
    """
    return ((TS_UNPARSEABLE, (seconds != seconds) | (abs(seconds) == math.inf)),  # NaN, inf
            (TS_OUT_OF_RANGE, (seconds < TS_MIN) | (seconds >= TS_MAX)))


def weight_failures(weight) -> tuple[tuple[str, Any], ...]:
    """The checks of a weight, in order: (reason, failed) pairs, for a number or a NumPy
    array of them (as `timestamp_failures`). NaN fails here: where NaN means missing (a float
    column), the caller checks that first."""
    return ((WEIGHT_NON_NUMERIC, (weight != weight) | (abs(weight) == math.inf)),
            (WEIGHT_NEGATIVE, weight < 0), (WEIGHT_OUT_OF_RANGE, weight > MAX_WEIGHT))


def _first_failure(checks) -> str | None:
    return next((reason for reason, failed in checks if failed), None)


def _seconds(number) -> tuple[int | None, str | None]:
    reason = _first_failure(timestamp_failures(number))
    return (None, reason) if reason else (int(number), None)


def _datetime_seconds(value: datetime) -> tuple[int | None, str | None]:
    """Exact seconds (floored) of a datetime; naive means UTC, never local time."""
    try:
        if value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)
        delta = value - _EPOCH  # pandas.Timestamp - datetime is a pandas.Timedelta: exact ns
    except (OverflowError, ValueError):
        return None, TS_OUT_OF_RANGE
    return _seconds(int(delta // _SECOND))


def _text_number(value: str) -> tuple[str, float | None]:
    """(the stripped text, the number it holds or None); text longer than MAX_NUMBER_CHARS
    holds none."""
    text = value.strip()
    if len(text) > MAX_NUMBER_CHARS:
        return text, None
    try:
        return text, float(text)
    except ValueError:
        return text, None


def parse_timestamp(value) -> tuple[int | None, str | None]:
    """Seconds since the Unix epoch (UTC) from a number, a numeric or ISO-8601 string, or a
    datetime/date; fractions of a second are cut off.

    Returns:
        (seconds, None) with TS_MIN <= seconds < TS_MAX, or (None, reason): "missing
        timestamp", TS_UNPARSEABLE (bool, inf, not a number or ISO-8601 date) or
        TS_OUT_OF_RANGE.
    """
    if isinstance(value, str):
        text, number = _text_number(value)
        if not text:
            return None, "missing timestamp"
        if number is not None:
            return _seconds(number)
        if len(text) > MAX_NUMBER_CHARS:
            return None, TS_UNPARSEABLE
        try:
            return _datetime_seconds(datetime.fromisoformat(text))
        except ValueError:
            return None, TS_UNPARSEABLE
    if is_missing(value):
        return None, "missing timestamp"
    if _is_bool(value):
        return None, TS_UNPARSEABLE
    if isinstance(value, datetime):
        return _datetime_seconds(value)
    if isinstance(value, date):
        return _datetime_seconds(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, numbers.Integral):
        return _seconds(int(value))
    if isinstance(value, numbers.Real):
        try:
            return _seconds(float(value))
        except OverflowError:
            return None, TS_OUT_OF_RANGE
    return None, TS_UNPARSEABLE


def value_failures(value) -> tuple[tuple[str, Any], ...]:
    """The checks of an event's `value` (a purchase's amount), as `weight_failures`."""
    return ((VALUE_NON_NUMERIC, (value != value) | (abs(value) == math.inf)),
            (VALUE_NEGATIVE, value < 0), (VALUE_OUT_OF_RANGE, value > MAX_VALUE))


def _parse_number(value, failures) -> tuple[float | None, str | None]:
    """A number in the range `failures` checks (weight_failures, value_failures): from a
    number or a string holding one; (None, None) when missing; (None, the first failed
    reason) otherwise."""
    non_numeric, negative, too_big = (reason for reason, _ in failures(0.0))
    if isinstance(value, str):
        text, number = _text_number(value)
        if not text:
            return None, None
        if number is None:
            return None, non_numeric
    elif is_missing(value):
        return None, None
    elif _is_bool(value) or not isinstance(value, numbers.Real):
        return None, non_numeric
    elif isinstance(value, numbers.Integral):
        number = int(value)  # compared exactly, before any rounding to float
    else:
        try:
            number = float(value)
        except OverflowError:
            return None, negative if value < 0 else too_big
    reason = _first_failure(failures(number))
    return (None, reason) if reason else (float(number) + 0.0, None)  # -0.0 -> 0.0


def parse_weight(value) -> tuple[float | None, str | None]:
    """A weight: a number, or a string holding one, with 0 <= weight <= MAX_WEIGHT.

    Returns:
        (weight, None); (None, None) when missing (None, NaN, empty); (None, reason) for
        WEIGHT_NON_NUMERIC (bool, text that is no number, inf, "nan"), WEIGHT_NEGATIVE or
        WEIGHT_OUT_OF_RANGE.
    """
    return _parse_number(value, weight_failures)


def parse_value(value) -> tuple[float | None, str | None]:
    """An event's `value` (a purchase's amount, in the shop's currency): as `parse_weight`,
    with 0 <= value <= MAX_VALUE and the reasons VALUE_NON_NUMERIC, VALUE_NEGATIVE and
    VALUE_OUT_OF_RANGE."""
    return _parse_number(value, value_failures)


def clean_event_type(value, event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
                     ) -> tuple[str | None, str | None]:
    """An optional event type: (None, None) when missing; the id rules, then EVENT_UNKNOWN
    unless it is a key of `event_weights` (None accepts any)."""
    text, reason = clean_id(value, "event_type")
    if text is None:
        return None, None if reason == _ID_REASONS["event_type"]["missing"] else reason
    if event_weights is not None and text not in event_weights:
        return None, EVENT_UNKNOWN
    return text, None


def validate_interaction(
    row: Mapping, event_weights: Mapping[str, float] | None = DEFAULT_EVENT_WEIGHTS
) -> tuple[dict | None, str | None]:
    """Checks one interaction row.

    Args:
        row: a mapping with at least user_id, item_id, timestamp.
        event_weights: the known event types; None accepts any event type.

    Returns:
        (clean_row, None) for a valid row, with ids as str, timestamp as int seconds,
        event_type as str or None and weight as float or None, and `value` (float) only when
        the row has one; (None, reason) otherwise, the reason of the first failing field in
        the order user_id, item_id, timestamp, event_type, weight, value. `value` is an
        event's field (the experiments' reports read it from the events log), not a training
        column: models.schema.validate_batch ignores it.
    """
    user_id, reason = clean_id(row.get("user_id"), "user_id")
    if reason:
        return None, reason
    item_id, reason = clean_id(row.get("item_id"), "item_id")
    if reason:
        return None, reason
    ts, reason = parse_timestamp(row.get("timestamp"))
    if reason:
        return None, reason
    event_type, reason = clean_event_type(row.get("event_type"), event_weights)
    if reason:
        return None, reason
    weight, reason = parse_weight(row.get("weight"))
    if reason:
        return None, reason
    value, reason = parse_value(row.get("value"))
    if reason:
        return None, reason
    clean = {"user_id": user_id, "item_id": item_id, "timestamp": ts,
             "event_type": event_type, "weight": weight}
    return (clean if value is None else {**clean, "value": value}), None
