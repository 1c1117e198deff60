"""An event's optional `value` (a purchase's amount, read by the experiments' report): checked by
POST /events (a bad one is rejected naming `value`), carried through the stream into the events
log's `value` column."""

import pytest

from infra.events_log import drain_events, read_events_log
from infra.redis.event_stream import EventStream
from infra.store import LocalStore
from tests.functions.conftest import make_app

KEY = {"X-API-Key": "secret"}


@pytest.fixture
def app(redis_url, tmp_path):
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": str(tmp_path / "store"),
           "RECSYS_NAMESPACE": "val", "RECSYS_API_KEY": "secret", "RECSYS_ADMIN_KEY": "admin",
           "RECSYS_RECOMMEND_KEY": None}
    return make_app(env).test_client()


@pytest.mark.parametrize("value,reason", [
    (-1, "negative value"), ("ten", "non-numeric value"), (True, "non-numeric value"),
    ("inf", "non-numeric value"), (1e10, "value out of range [0, 1000000000]"),
    ([3], "non-numeric value")])
def test_a_bad_value_is_rejected_naming_value(app, value, reason):
    r = app.post("/events", headers=KEY, json={"events": [
        {"user_id": "u", "item_id": "i", "event_type": "purchase", "value": value}]})
    assert r.status_code == 400
    assert r.get_json()["rejected"] == [{"index": 0, "reason": reason}]


def test_a_value_reaches_the_events_log(app, redis_client, tmp_path):
    r = app.post("/events", headers=KEY, json={"events": [
        {"user_id": "u", "item_id": "i", "event_type": "purchase", "value": "12.5",
         "recommendation_id": "r1", "event_id": "p1"},
        {"user_id": "u", "item_id": "j", "event_type": "click", "event_id": "c1"}]})
    assert r.status_code == 200, r.get_json()
    store = LocalStore(str(tmp_path / "log"))
    drain_events(EventStream(redis_client, "val"), store)
    log = read_events_log(store).set_index("event_id")
    assert log.loc["p1", "value"] == 12.5 and log.loc["p1", "recommendation_id"] == "r1"
    assert log["value"].isna()["c1"]  # no value: null


def test_a_bad_value_written_to_the_stream_by_hand_is_dead_lettered(redis_client, tmp_path):
    stream, store = EventStream(redis_client, "val"), LocalStore(str(tmp_path / "dl"))
    stream.append([{"user_id": "u", "item_id": "i", "timestamp": 5, "event_id": "ok"}])
    redis_client.xadd("val:events", {"user_id": "u", "item_id": "i", "timestamp": "5",
                                     "value": "-3"})
    stats = drain_events(stream, store)
    assert stats["events"] == 1 and stats["dead"] == 1
    log = read_events_log(store)
    assert log["event_id"].tolist() == ["ok"] and log["value"].isna().all()


def test_two_purchases_differing_only_in_value_are_two_events(app):
    # Without an event_id, an event's id is derived from its content: the value is part of it.
    base = {"user_id": "u", "item_id": "i", "event_type": "purchase", "timestamp": 1_750_000_000}
    r = app.post("/events", headers=KEY, json={"events": [{**base, "value": 10},
                                                          {**base, "value": 25}]})
    assert r.status_code == 200 and r.get_json()["stored"] == 2, r.get_json()
    again = app.post("/events", headers=KEY, json={"events": [{**base, "value": 25}]})
    assert again.get_json()["duplicates"] == 1  # a resent one is still recognised
