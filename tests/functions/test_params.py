"""Request parsing (functions/params.py) on Flask request contexts, without a server: the
query string and the JSON body, which wins; every bad input a BadRequest naming the field."""

import flask
import pytest

from functions.body import BadRequest
from functions.cursor import CursorKeyUnavailable, encode_cursor
from functions.params import event_batch, item_changes, query, similar_query

APP = flask.Flask(__name__)
KEY = b"params-cursor-secret-0123456789"
LIMIT = 1 << 20


def _query(path: str = "/recommend", json=None, max_k: int = 100, key=KEY, **kwargs):
    method = "POST" if json is not None else "GET"
    with APP.test_request_context(path, method=method, json=json, **kwargs):
        return query(flask.request, max_k, LIMIT, key)


def test_query_string_lists_split_on_commas_and_repeat():
    q = _query("/recommend?user_id=%2012%20&k=3&exclude=a,b&exclude=c&category=x&events=,e,")
    assert (q.user_id, q.k) == ("12", 3)
    assert (q.exclude, q.categories, q.events) == (["a", "b", "c"], ["x"], ["e"])
    assert (q.served, q.features) == ([], {})


def test_the_json_body_wins_over_the_query_string():
    q = _query("/recommend?user_id=query&k=2&exclude=q",
               json={"user_id": 12.0, "exclude": ["a", " ", 7], "features": {"country": "JP"}})
    assert (q.user_id, q.k, q.exclude, q.features) == ("12", 2, ["a", "7"], {"country": "JP"})


def test_a_cursor_gives_the_ids_served_and_needs_its_key():
    cursor = encode_cursor(KEY, "u", ["a", "b"])
    assert _query(f"/recommend?user_id=u&cursor={cursor}").served == ["a", "b"]
    with pytest.raises(BadRequest, match="another user_id"):
        _query(f"/recommend?user_id=v&cursor={cursor}")
    with pytest.raises(CursorKeyUnavailable, match="first page"):
        _query(f"/recommend?user_id=u&cursor={cursor}", key=None)


@pytest.mark.parametrize("path,json,message", [
    ("/recommend?k=3", None, "user_id is required"),
    ("/recommend?user_id=%20", None, "user_id is required"),
    ("/recommend?user_id=u&k=6", None, "k must be between 1 and 5, got 6"),
    ("/recommend?user_id=u&k=1.5", None, "k must be an integer"),
    ("/recommend", {"user_id": "u", "k": True}, "k must be an integer"),
    ("/recommend", {"user_id": ["u"]}, "user_id must be a string or a finite number"),
    ("/recommend", {"user_id": "u" * 257}, "user_id is longer than 256 characters"),
    ("/recommend", {"user_id": "u", "exclude": {"a": 1}}, "exclude must be a list of ids"),
    ("/recommend", {"user_id": "u", "events": ["i"] * 501}, "events holds more than 500 ids"),
    ("/recommend", {"user_id": "u", "category": ["a\x00"]}, "category holds a control"),
    ("/recommend", {"user_id": "u", "exclude": ["a", None]}, "missing exclude"),
    ("/recommend", {"user_id": "u", "features": {"a": [1]}}, "features must be an object"),
    ("/recommend", {"user_id": "u", "cursor": 5}, "cursor must be the string next_cursor"),
    ("/recommend", {"user_id": "u", "cursor": "s" * 16385}, "cursor is longer than 16384"),
    ("/recommend?user_id=u&exclude=" + "a" * 4097, None, "exclude is longer than 4096"),
    ("/recommend", [1], "POST body must be a JSON object"),
])
def test_bad_recommend_input_names_the_field(path, json, message):
    with pytest.raises(BadRequest) as e:
        _query(path, json=json, max_k=5)
    assert message in str(e.value) and e.value.status == 400


@pytest.mark.parametrize("qs", [
    "user_id=12&k=3", "user_id=%2012%20", "k=4&user_id=u", "user_id=u&user_id=v&k=2",
    "user_id=12.0", "", "k=3", "user_id=%20", "user_id=u&k=6", "user_id=u&k=0",
    "user_id=u&k=1.5", "user_id=u&k=abc", "user_id=u&k=", "user_id=" + "u" * 257,
    "user_id=a%00b", "user_id=%ED%A0%80", "user_id=u&k=2&k=3", "user_id=u&k=1e308",
    "user_id=u&k=99999999999999999999999", "user_id=u&k=nan", "user_id=*%3F%5B%5D:%1E",
])
def test_a_plain_get_gives_what_the_full_reading_gives(qs):
    """A GET of user_id and k only takes a shorter path (params._plain); with one more field
    at its default (explain=false) the same request goes through every field's rule: the
    same Query, or the same error, either way."""
    def outcome(path):
        try:
            return _query(path, max_k=5)
        except BadRequest as e:
            return ("error", e.status, str(e))
    plain, full = outcome(f"/recommend?{qs}"), outcome(f"/recommend?{qs}&explain=false")
    assert plain == full


@pytest.mark.parametrize("qs", [
    "item_id=12&k=3", "item_id=%2012%20", "k=4&item_id=i", "item_id=i&item_id=j", "", "k=3",
    "item_id=%20", "item_id=i&k=6", "item_id=i&k=1.5", "item_id=" + "i" * 257, "item_id=a%00b",
])
def test_a_plain_similar_get_gives_what_the_full_reading_gives(qs):
    """As above for /similar (item_id and k only; exclude= forces the full reading)."""
    def outcome(path):
        with APP.test_request_context(path):
            try:
                return similar_query(flask.request, 5, LIMIT, KEY)
            except BadRequest as e:
                return ("error", e.status, str(e))
    assert outcome(f"/similar?{qs}") == outcome(f"/similar?{qs}&exclude=")


def _events(body, max_events: int = 4):
    with APP.test_request_context("/events", method="POST", json=body):
        return event_batch(flask.request, max_events, LIMIT)


def test_events_are_checked_one_by_one_and_get_content_ids():
    event = {"user_id": "u", "item_id": 5, "event_type": "click", "timestamp": 100}
    valid, rejected, positions = _events({"events": [
        event, {**event, "item_id": None}, {**event, "recommendation_id": "r" * 65},
        {**event, "event_id": " e1 ", "recommendation_id": "r1"}]})
    assert positions == [0, 3]
    assert [r["reason"] for r in rejected] == [
        "missing item_id", "recommendation_id is longer than 64 characters"]
    assert valid[0]["item_id"] == "5" and valid[0]["event_id"].startswith("h")
    assert (valid[1]["event_id"], valid[1]["recommendation_id"]) == ("e1", "r1")
    again, _, _ = _events([event])  # a bare list is taken too; same content, same id
    assert again[0]["event_id"] == valid[0]["event_id"]


@pytest.mark.parametrize("body,message", [
    ({"events": []}, 'body must be {"events": [...]} with at least one event'),
    ({"other": 1}, 'body must be {"events": [...]}'),
    ([{"user_id": "u", "item_id": "i"}] * 5, "at most 4 events per request, got 5"),
])
def test_a_malformed_batch_is_refused_whole(body, message):
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("{", r"\{")):
        _events(body)


def _changes(body):
    with APP.test_request_context("/admin/items", method="POST", json=body):
        return item_changes(flask.request, LIMIT)


def test_item_changes_take_lists_and_categories():
    assert _changes({"unavailable": "a, b", "categories": {" c ": 12, "d": "x| y|x"}}) == {
        "unavailable": ["a", "b"], "available": [], "categories": {"c": "12", "d": "x|y"}}


@pytest.mark.parametrize("body,message", [
    ({}, "nothing to change"),
    ({"unavailable": ["a"], "available": ["a"]}, "both unavailable and available"),
    ({"categories": ["a"]}, "categories must be an object {item_id: category}"),
    ({"categories": {"a": " "}}, "may be blank"),
    ({"categories": {"a": " | "}}, "categories.a: no category in '|'; separate several"),
])
def test_bad_item_changes_say_what_to_fix(body, message):
    with pytest.raises(BadRequest) as e:
        _changes(body)
    assert message in str(e.value)
