"""One rule set for interaction rows: the per-row validator (models/rows.py, used by the functions
and the events drain) and the batch validator (models/schema.validate_batch, the nightly job)
give the same clean rows and the same reasons, for any input."""

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.rows import validate_interaction
from models.schema import validate_batch

OUT_OF_RANGE = ("timestamp out of range: expected epoch seconds from 1970-01-01 to before "
                "2100-01-01 UTC (milliseconds?)")
TS_MAX = 4_102_444_800  # 2100-01-01T00:00:00Z


def _outcomes(df: pd.DataFrame) -> list:
    """Per row of df, batch-validated: the clean row (weight NaN -> None) or the reason."""
    clean, dead = validate_batch(df.assign(_n=range(len(df))))  # extra columns reach `row`
    reasons = {json.loads(d["row"])["_n"]: d["reason"] for d in dead}
    assert len(reasons) == len(dead) and len(clean) + len(dead) == len(df)
    rows = iter(clean.to_dict("records"))
    return [reasons[n] if n in reasons else
            {**(r := next(rows)), "weight": None if pd.isna(r["weight"]) else r["weight"]}
            for n in range(len(df))]


def _expected(rows: list) -> list:
    return [row if row is not None else reason
            for row, reason in (validate_interaction(r) for r in rows)]


def _both(rows: list[dict]) -> tuple[list, list]:
    """(per-row validator outcomes, batch validator outcomes) for the same raw rows."""
    df = pd.DataFrame(rows, dtype=object)
    return _expected(rows), _outcomes(df)


def _row(**fields) -> dict:
    return {"user_id": "u", "item_id": "i", "timestamp": 1_700_000_000, "event_type": None,
            "weight": None, **fields}


# -- finding 3: weights are bounded ----------------------------------------------------------


@pytest.mark.parametrize("weight", [1e39, 1000.5, "1e39", "1e+39", 10**40, 2**1024])
def test_hardening_03_weights_above_1000_are_rejected_by_both_validators(weight):
    expected, batch = _both([_row(weight=weight)])
    assert expected == batch == ["weight out of range [0, 1000]"]


@pytest.mark.parametrize("weight,clean", [(0, 0.0), ("1000", 1000.0), (1000.0, 1000.0),
                                          (-0.0, 0.0), ("2.5", 2.5)])
def test_weights_in_range_are_kept(weight, clean):
    expected, batch = _both([_row(weight=weight)])
    assert expected == batch and batch[0]["weight"] == clean


# -- finding 4: ids and types ------------------------------------------------------------------


@pytest.mark.parametrize("value,reason", [
    (["1", "2"], "user_id must be a string or a finite number"),
    (np.array([1, 2]), "user_id must be a string or a finite number"),  # was "[1 2]"
    ({"a": 1}, "user_id must be a string or a finite number"),
    (True, "user_id must be a string or a finite number"),
    (b"u1", "user_id must be a string or a finite number"),
    (float("inf"), "user_id must be a string or a finite number"),
    ("x" * 257, "user_id is longer than 256 characters"),
    ("x" * 100_000, "user_id is longer than 256 characters"),
    (10**400, "user_id is longer than 256 characters"),
    ("a\x00b", "user_id holds a control character or a lone surrogate"),
    ("a\nb", "user_id holds a control character or a lone surrogate"),
    ("\ud800", "user_id holds a control character or a lone surrogate"),
])
def test_hardening_04_bad_ids_are_rejected_naming_the_field_by_both_validators(value, reason):
    expected, batch = _both([_row(user_id=value)])
    assert expected == batch == [reason]


@pytest.mark.parametrize("ts", [True, False, np.bool_(True)])
def test_hardening_04_booleans_are_no_timestamps_in_either_validator(ts):
    expected, batch = _both([_row(timestamp=ts)])
    assert expected == batch == ["unparseable timestamp"]


@pytest.mark.parametrize("value", [None, "", " \t", float("nan"), pd.NA])
def test_missing_ids(value):
    expected, batch = _both([_row(item_id=value)])
    assert expected == batch == ["missing item_id"]


def test_ids_keep_their_text():
    expected, batch = _both([_row(user_id=" 007 ", item_id=12.0), _row(user_id=7, item_id=3.5),
                             _row(user_id="x" * 256, item_id="ü€")])
    assert expected == batch
    assert [(r["user_id"], r["item_id"]) for r in batch] == [("007", "12"), ("7", "3.5"),
                                                             ("x" * 256, "ü€")]


# -- finding 5: timestamps out of range are rejected, not wrapped ---------------------------


@pytest.mark.parametrize("ts", [1e20, 9.3e18, "99999999999999999999", -1e30, 1.7e12,
                                "1700000000000", -1, TS_MAX, 10**30,
                                "2100-01-01T00:00:00Z", datetime(1969, 12, 31, 23, 59),
                                pd.Timestamp("2262-04-11")])
def test_hardening_05_timestamps_out_of_range_are_rejected_by_both_validators(ts):
    expected, batch = _both([_row(timestamp=ts)])
    assert expected == batch == [OUT_OF_RANGE]


@pytest.mark.parametrize("ts,seconds", [(0, 0), (TS_MAX - 1, TS_MAX - 1), ("0.5", 0),
                                        ("2099-12-31T23:59:59.999Z", TS_MAX - 1),
                                        (date(2024, 1, 1), 1_704_067_200)])
def test_timestamps_at_the_edges_of_the_range_are_kept(ts, seconds):
    expected, batch = _both([_row(timestamp=ts)])
    assert expected == batch and batch[0]["timestamp"] == seconds


def test_hardening_05_typed_columns_out_of_range_are_rejected():
    """Parquet columns arrive typed (int64, float64, timestamp): the same range applies."""
    frames = [
        pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["i"] * 3,
                      "timestamp": np.array([10**18, -1, 1_700_000_000], dtype=np.int64)}),
        pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["i"] * 3,
                      "timestamp": [1e20, -1e30, 1_700_000_000.5]}),
        pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["i"] * 3,
                      "timestamp": np.array(["1960-01-01", "2300-01-01", "2023-11-14T22:13:20"],
                                            dtype="datetime64[s]")}),
    ]
    for df in frames:
        clean, dead = validate_batch(df)
        assert [d["reason"] for d in dead] == [OUT_OF_RANGE] * 2
        assert clean["timestamp"].tolist() == [1_700_000_000]


# -- property: the two validators agree on anything -----------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
NUMBERS = st.one_of(st.integers(), st.integers(-10**400, 10**400), st.floats(),
                    st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**63, -2**63,
                                     9.3e18, 1e20, -1e30, 1.7e12, 1e39, 0.0, -0.0]))
ODD = st.one_of(st.none(), st.booleans(), st.binary(max_size=4),
                st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                         st.integers(),
                                                                         max_size=2),
                st.sampled_from([np.nan, np.int64(7), np.float32(2.5), np.bool_(True),
                                 np.array([1, 2]), pd.NA, pd.NaT, "x" * 100_000]))
IDS = st.one_of(ANY_TEXT, st.sampled_from(["u1", " u1 ", "007", "", " ", "\ud800", "a\x00b",
                                           "x" * 256, "x" * 257, "[1 2]", "nan", "None"]),
                NUMBERS, ODD)
DATETIMES = st.one_of(st.datetimes(), st.datetimes(timezones=st.timezones()),
                      st.dates(),
                      st.datetimes(min_value=datetime(1677, 9, 22),
                                   max_value=datetime(2262, 4, 10)).map(pd.Timestamp))
TIMESTAMPS = st.one_of(NUMBERS, ODD, DATETIMES, ANY_TEXT, NUMBERS.map(str),
                       DATETIMES.map(lambda d: d.isoformat()),
                       st.sampled_from(["99999999999999999999", "1e20", "-1e30", "9.3e18",
                                        "1.7e12", "2024-01-01T00:00:00Z", "2024-01-01",
                                        "Jan 5 2025", "nan", "inf", "1e400", "", "  ",
                                        " 1700000000.5 ", "NaT", "1_700_000_000",
                                        "4102444799.99", "4102444800"]))
WEIGHTS = st.one_of(NUMBERS, ODD, ANY_TEXT, NUMBERS.map(str),
                    st.sampled_from(["abc", "1e39", "nan", "inf", "", " 5 ", "-0", "1000",
                                     "1000.0000001", "-1"]))
EVENTS = st.one_of(st.sampled_from(["view", "click", "purchase", "rating", "teleport", "View",
                                    " view ", ""]), IDS)
ROWS = st.lists(st.fixed_dictionaries({"user_id": IDS, "item_id": IDS, "timestamp": TIMESTAMPS,
                                       "event_type": EVENTS, "weight": WEIGHTS}),
                min_size=1, max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.large_base_example])
@given(ROWS)
def test_hardening_04_batch_and_row_validators_agree_on_random_rows(rows):
    expected, batch = _both(rows)
    assert batch == expected


@st.composite
def typed_frames(draw):
    """Columns as Parquet gives them: int64, float64, datetime64 (any unit, with or without a
    time zone), bool, int ids."""
    n = draw(st.integers(1, 8))
    ts_kind = draw(st.sampled_from(["int", "float", "datetime", "datetime_tz", "bool"]))
    if ts_kind == "int":
        ts = np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)))
    elif ts_kind == "float":
        ts = np.array(draw(st.lists(st.floats(), min_size=n, max_size=n)), dtype=np.float64)
    elif ts_kind == "bool":
        ts = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    else:
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
        bound = 9 * 10**9 if unit == "ns" else 10**11  # int64 nanoseconds end in 2262
        secs = draw(st.lists(st.integers(-bound, bound), min_size=n, max_size=n))
        ticks = np.array(secs) * per_second + draw(st.integers(0, per_second - 1))
        ts = pd.Series(ticks.astype(f"datetime64[{unit}]"))
        if ts_kind == "datetime_tz":
            ts = ts.dt.tz_localize("UTC").dt.tz_convert(
                timezone(timedelta(minutes=draw(st.integers(-900, 900)))))
    weight_kind = draw(st.sampled_from(["float", "int"]))
    weights = (st.floats() if weight_kind == "float" else st.integers(-2**63, 2**63 - 1))
    df = pd.DataFrame({
        "user_id": draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)),
        "item_id": draw(st.lists(st.floats(), min_size=n, max_size=n)),
        "timestamp": ts,
        "event_type": draw(st.lists(st.sampled_from(["view", "click", "teleport"]),
                                    min_size=n, max_size=n)),
        "weight": draw(st.lists(weights, min_size=n, max_size=n))})
    return df


@settings(max_examples=300, deadline=None)
@given(typed_frames())
def test_hardening_04_batch_and_row_validators_agree_on_typed_columns(df):
    assert _outcomes(df) == _expected(df.to_dict("records"))


def test_row_rules_import_no_pandas_pyarrow_or_numpy():
    """The functions validate events with models/rows.py (finding 12: no pandas there)."""
    code = ("import sys, models.rows; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=".").stdout
    assert out.strip() == "[]"


def test_naive_datetimes_are_utc_whatever_the_machine_zone():
    expected, batch = _both([_row(timestamp=datetime(2024, 1, 1)),
                             _row(timestamp=datetime(2024, 1, 1, 2, tzinfo=timezone(
                                 timedelta(hours=2)))),
                             _row(timestamp=datetime(2024, 1, 1, tzinfo=UTC))])
    assert expected == batch and [r["timestamp"] for r in batch] == [1_704_067_200] * 3
