from datetime import UTC, datetime

import pandas as pd
import pytest

from models.schema import validate_interaction


@pytest.mark.parametrize("ts,expected", [
    (1700000000, 1700000000),
    ("1700000000.9", 1700000000),
    ("2024-01-01T00:00:00Z", 1704067200),
    ("2024-01-01 00:00:00", 1704067200),  # naive strings are UTC
    (datetime(2024, 1, 1), 1704067200),  # naive datetimes too, whatever the machine's zone
    (datetime(2024, 1, 1, tzinfo=UTC), 1704067200),
    (pd.Timestamp("2024-01-01"), 1704067200),
])
def test_timestamps_accepted(ts, expected):
    row, reason = validate_interaction({"user_id": "u", "item_id": "i", "timestamp": ts})
    assert reason is None and row["timestamp"] == expected


@pytest.mark.parametrize("ts", ["inf", "1e400", "nan", "soon", float("inf"), pd.NaT])
def test_timestamps_rejected_not_crashing(ts):
    row, reason = validate_interaction({"user_id": "u", "item_id": "i", "timestamp": ts})
    assert row is None and reason in {"unparseable timestamp", "missing timestamp"}


@pytest.mark.parametrize("weight,reason", [("-1", "negative weight"), ("x", "non-numeric weight"),
                                           ("inf", "non-numeric weight")])
def test_bad_weights(weight, reason):
    assert validate_interaction({"user_id": "u", "item_id": "i", "timestamp": 1,
                                 "weight": weight}) == (None, reason)
