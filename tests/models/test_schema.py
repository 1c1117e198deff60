from datetime import UTC, datetime

import pandas as pd
import pytest

from models.rows import validate_interaction


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


def test_batch_validation_agrees_with_the_row_rules():
    import numpy as np

    from models.schema import validate_batch

    rng = np.random.default_rng(0)
    pool = {
        "user_id": ["u1", "", None, " u2 ", 7, 3.0, "u3"],
        "item_id": ["i1", None, "", "i2", 12, "i3"],
        "timestamp": [1700000000, "1700000000.5", "2024-01-01T00:00:00Z", "2024-01-01 03:00",
                      "soon", "", None, "inf", "1e400", 1.5e9],
        "event_type": ["view", "click", "teleport", None, "purchase"],
        "weight": [None, "2.5", "-1", "x", "inf", 3, ""],
    }
    rows = [{c: pool[c][rng.integers(len(pool[c]))] for c in pool} for _ in range(400)]
    df = pd.DataFrame(rows, dtype=object)
    clean, dead = validate_batch(df)
    expected_clean, expected_dead = [], []
    for row in rows:
        ok, reason = validate_interaction(row)
        (expected_clean if ok else expected_dead).append(ok or reason)
    assert [d["reason"] for d in dead] == expected_dead
    got = clean.to_dict("records")
    assert len(got) == len(expected_clean)
    for g, e in zip(got, expected_clean, strict=True):
        assert (g["user_id"], g["item_id"], g["timestamp"], g["event_type"]) == \
            (e["user_id"], e["item_id"], e["timestamp"], e["event_type"])
        assert (e["weight"] is None and pd.isna(g["weight"])) or g["weight"] == e["weight"]
