"""Attribution of events to served answers, and each arm's figures at one moment (pandas only).

An event attributes to an impression (one logged /recommend answer) when
- its `recommendation_id` is the impression's,
- its user is the impression's user (a client cannot credit another user's list),
- its item was in the impression's items,
- it happened from the impression's second up to ATTRIBUTION_DAYS (7) days after it,
  and no later than the report's `now`.
Of the event types of models/rows.DEFAULT_EVENT_WEIGHTS, CLICK_TYPES (`click`, `purchase`:
the user chose the item) count as a click, CONVERSION_TYPES (`purchase`) as a conversion;
`view` and `rating` attribute to nothing. A purchase's `value` (docs/SCHEMA.md) is its amount.

Retention: a user counts for 7-day retention once their first impression of the experiment is
at least 7 days before `now`; they returned if they have any impression (of any experiment) or
any event from 1 to 7 days (24 h to 168 h) after that first impression.

    python -c "import pandas as pd; from models.experiments.attribution import attribute;
    print(attribute(pd.DataFrame(columns=['recommendation_id', 'user_id', 'arm', 'items',
    'ts_ms']), pd.DataFrame(columns=['recommendation_id', 'user_id', 'item_id', 'timestamp',
    'event_type', 'value']), now_ms=0))"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.rows import DEFAULT_EVENT_WEIGHTS

CLICK_TYPES = ("click", "purchase")
CONVERSION_TYPES = ("purchase",)
assert set(CLICK_TYPES + CONVERSION_TYPES) <= set(DEFAULT_EVENT_WEIGHTS)
DAY_MS = 86_400_000
ATTRIBUTION_DAYS = 7
RETENTION_DAYS = 7
FALLBACK_SOURCES = ("popular", "fallback")


def attribute(impressions: pd.DataFrame, events: pd.DataFrame, *, now_ms: int) -> pd.DataFrame:
    """The attributed clicks and purchases: one row per (event, impression) it attributes to.

    Args:
        impressions: at least recommendation_id, user_id, arm, items (lists of item ids),
            ts_ms.
        events: at least recommendation_id, user_id, item_id, timestamp (epoch seconds),
            event_type, value; other rows are ignored.
        now_ms: events after this time do not count.

    Returns:
        columns recommendation_id, user_id, arm, event_type, value (0 where absent),
        event_ms.
    """
    cols = ["recommendation_id", "user_id", "arm", "event_type", "value", "event_ms"]
    ev = events[events["recommendation_id"].notna()
                & events["event_type"].isin(CLICK_TYPES)]
    if ev.empty or impressions.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("value", "event_ms") else object)
                             for c in cols})
    shown = (impressions[["recommendation_id", "user_id", "arm", "ts_ms", "items"]]
             .explode("items").rename(columns={"items": "item_id"}).dropna(subset=["item_id"])
             .drop_duplicates(["recommendation_id", "item_id"]))
    value = pd.to_numeric(ev["value"], errors="coerce") if "value" in ev.columns else 0.0
    ev = ev.assign(event_ms=ev["timestamp"].astype("int64") * 1000,
                   value=value).fillna({"value": 0.0})
    m = ev.merge(shown, on=["recommendation_id", "item_id"], suffixes=("", "_imp"))
    m = m[(m["user_id"] == m["user_id_imp"])
          & (m["event_ms"] + 1000 > m["ts_ms"])  # event timestamps are whole seconds
          & (m["event_ms"] <= m["ts_ms"] + ATTRIBUTION_DAYS * DAY_MS)
          & (m["event_ms"] <= now_ms)]
    return m[cols].reset_index(drop=True)


@dataclass(frozen=True)
class ArmFigures:
    """One arm's counts at one moment, and the per-user values (for the Welch interval)."""

    users: int
    impressions: int
    clicks: int  # impressions with at least one attributed click
    buyers: int  # users with an attributed purchase
    purchases: int
    value: float
    user_values: np.ndarray  # [users] attributed purchase value of each user (0 for most)
    retained: int
    retention_eligible: int
    latency_p99_ms: float | None
    error_rate: float | None
    fallback_rate: float | None


def arm_figures(impressions: pd.DataFrame, attributed: pd.DataFrame, activity: pd.DataFrame,
                arms: list[str], *, until_ms: int) -> dict[str, ArmFigures]:
    """Each arm's figures over the impressions and attributed events up to `until_ms`.

    Args:
        impressions: this experiment's impressions (arm, user_id, recommendation_id, ts_ms,
            status, latency_ms, source).
        attributed: `attribute`'s output.
        activity: user_id, t_ms: every impression and event of every user (for retention).
        arms: the arms' names, in the experiment's order.
    """
    imp = impressions[impressions["ts_ms"] <= until_ms]
    att = attributed[attributed["event_ms"] <= until_ms]
    first = imp.groupby("user_id")["ts_ms"].min()
    eligible = first[first <= until_ms - RETENTION_DAYS * DAY_MS]
    act = activity[activity["user_id"].isin(eligible.index) & (activity["t_ms"] <= until_ms)]
    gap = act["t_ms"].to_numpy() - eligible.reindex(act["user_id"]).to_numpy()
    returned = set(act["user_id"][(gap >= DAY_MS) & (gap <= RETENTION_DAYS * DAY_MS)])
    pairs = imp[["arm", "user_id"]].drop_duplicates()
    pairs = pairs.assign(eligible=pairs["user_id"].isin(set(eligible.index)),
                         returned=pairs["user_id"].isin(returned))
    retention = pairs[pairs["eligible"]].groupby("arm")["returned"].agg(["sum", "size"])
    out = {}
    for arm in arms:
        a_imp = imp[imp["arm"] == arm]
        a_att = att[att["arm"] == arm]
        users = a_imp["user_id"].unique()
        buys = a_att[a_att["event_type"].isin(CONVERSION_TYPES)]
        per_user = buys.groupby("user_id")["value"].sum()
        n = len(a_imp)
        out[arm] = ArmFigures(
            users=len(users), impressions=n,
            clicks=int(a_att["recommendation_id"].nunique()),
            buyers=int(buys["user_id"].nunique()), purchases=len(buys),
            value=float(buys["value"].sum()),
            user_values=per_user.reindex(users, fill_value=0.0).to_numpy(float),
            retained=int(retention["sum"].get(arm, 0)),
            retention_eligible=int(retention["size"].get(arm, 0)),
            latency_p99_ms=float(np.percentile(a_imp["latency_ms"], 99)) if n else None,
            error_rate=float((a_imp["status"] >= 500).mean()) if n else None,
            fallback_rate=float(a_imp["source"].isin(FALLBACK_SOURCES).mean()) if n else None)
    return out


def activity_times(impressions: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """user_id, t_ms of every impression (any experiment) and every event: who came back."""
    return pd.concat([
        impressions[["user_id", "ts_ms"]].rename(columns={"ts_ms": "t_ms"}),
        pd.DataFrame({"user_id": events["user_id"],
                      "t_ms": events["timestamp"].astype("int64") * 1000})],
        ignore_index=True)
