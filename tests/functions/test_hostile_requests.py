"""Issue 15, findings 6-9: keys, hostile JSON, the /events acknowledgment and page cursors,
through functions-framework's test client on a real published version and redis-server."""

import base64
import threading
import time
import zlib

import pytest
import redis

from functions.settings import Settings
from infra.redis_server import local_redis
from tests.functions.conftest import make_app

KEY = {"X-API-Key": "secret"}
ADMIN = {"X-API-Key": "admin"}
READ_KEY = "read-key-0123456789abcdef"
JSON = {"Content-Type": "application/json"}
DEEP = "[" * 5000 + "]" * 5000


def _fine(r, status: int, *words: str) -> dict:
    """Asserts the status, a JSON error naming `words`, and no traceback; returns the body."""
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert r.mimetype == "application/json" and b"Traceback" not in r.get_data()
    body = r.get_json()
    for word in words:
        assert word in body["error"], body
    return body


# 06 --------------------------------------------------------------------------------------------
def test_hardening_06_recommend_key_is_required_and_is_not_the_write_key(served_env, warm_user):
    app = make_app({**served_env, "RECSYS_RECOMMEND_KEY": READ_KEY}).test_client()
    url = f"/recommend?user_id={warm_user}&k=2"
    _fine(app.get(url), 401, "X-API-Key")
    _fine(app.get(url, headers=KEY), 401, "RECSYS_RECOMMEND_KEY")  # the write key does not read
    _fine(app.get(url, headers={"X-API-Key": READ_KEY[:-1]}), 401)
    assert app.get(url, headers={"X-API-Key": READ_KEY}).get_json()["source"] == "cache"
    # ... nor does the read key write.
    _fine(app.post("/events", json=[{"user_id": "k", "item_id": "1"}],
                   headers={"X-API-Key": READ_KEY}), 401)


@pytest.mark.parametrize("env,words", [
    ({"RECSYS_RECOMMEND_KEY": "1"}, ["RECSYS_RECOMMEND_KEY", "switch"]),
    ({"RECSYS_RECOMMEND_KEY": "true"}, ["RECSYS_RECOMMEND_KEY", "switch"]),
    ({"RECSYS_RECOMMEND_KEY": "YES"}, ["RECSYS_RECOMMEND_KEY", "switch"]),
    ({"RECSYS_RECOMMEND_KEY": "s3cr3t-but-short"[:15]}, ["RECSYS_RECOMMEND_KEY", "16"]),
    ({"RECSYS_RECOMMEND_KEY": READ_KEY + " "}, ["RECSYS_RECOMMEND_KEY", "spaces"]),
    ({"RECSYS_RECOMMEND_KEY": READ_KEY, "RECSYS_API_KEY": READ_KEY}, ["write key"]),
    ({"RECSYS_RECOMMEND_KEY": READ_KEY, "RECSYS_ADMIN_KEY": READ_KEY}, ["admin key"]),
    ({"RECSYS_API_KEY": "yes"}, ["RECSYS_API_KEY", "switch"]),
    ({"RECSYS_CURSOR_SECRET": "short"}, ["RECSYS_CURSOR_SECRET", "16"]),
    ({"RECSYS_MAX_BODY_BYTES": "1e6"}, ["RECSYS_MAX_BODY_BYTES", "integer"]),
])
def test_hardening_06_settings_that_cannot_mean_what_they_say_refuse_to_start(
        monkeypatch, env, words):
    for name in ("RECSYS_API_KEY", "RECSYS_ADMIN_KEY", "RECSYS_RECOMMEND_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as e:
        Settings.from_env()
    assert all(w in str(e.value) for w in words), str(e.value)


# 07 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,body,words", [
    ("/recommend", DEEP, ["nests deeper"]),
    ("/recommend", '{"user_id": "u", "features": ' + DEEP + "}", ["nests deeper"]),
    ("/recommend", '{"user_id": "\\ud800"}', ["user_id", "lone surrogate"]),
    ("/recommend", '{"user_id": "u", "exclude": ["a", "\\udfff"]}', ["exclude[1]", "surrogate"]),
    ("/recommend", '{"user_id": "u", "features": {"\\ud800": 1}}', ["key of features"]),
    ("/recommend", '{"user_id": "u", "cursor": "s\\ud800"}', ["cursor", "surrogate"]),
    ("/events", DEEP, ["nests deeper"]),
    ("/events", '{"events": ' + DEEP + "}", ["nests deeper"]),
    ("/admin/items", '{"unavailable": ' + DEEP + "}", ["nests deeper"]),
    ("/admin/items", '{"unavailable": ["\\ud800"]}', ["unavailable[0]", "surrogate"]),
    ("/admin/items", '{"categories": {"i1": "\\udc00x"}}', ["categories.i1", "surrogate"]),
    ("/recommend", '{"user_id": "u", "k": NaN}', ["k is NaN", "JSON does not allow"]),
    ("/admin/items", '{"categories": {"i1": -Infinity}}', ["categories.i1", "-Infinity"]),
    ("/recommend", b'{"user_id": "\xff"}', ["UTF-8"]),
    ("/recommend", '{"user_id": ', ["not valid JSON"]),
])
def test_hardening_07_deep_nesting_and_lone_surrogates_are_400_naming_the_field(
        client, path, body, words):
    app, _ = client
    r = app.post(path, data=body, headers={**JSON, **(ADMIN if "admin" in path else KEY)})
    _fine(r, 400, *words)


def test_hardening_07_a_nested_or_surrogate_cursor_is_400(client):
    app, _ = client
    deep = "j" + base64.urlsafe_b64encode(f'["{0:08x}", {DEEP}]'.encode()).decode()
    for cursor in (deep, deep + ".AAAA", "s\udfff.AAAA"):
        r = app.post("/recommend", json={"user_id": "u", "cursor": cursor})
        _fine(r, 400, "cursor")
    _fine(app.get("/recommend?user_id=u&cursor=" + deep), 400, "cursor")


def test_an_unexpected_error_answers_without_a_traceback(client, monkeypatch):
    from functions.serving import Serving

    app, _ = client

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Serving, "refresh", broken)  # under state() and route()
    body = _fine(app.get("/recommend?user_id=u"), 500, "internal error")
    assert "secret internals" not in body["error"]


# 08 --------------------------------------------------------------------------------------------
def _stream(redis_url: str, namespace: str) -> list[bytes]:
    r = redis.Redis.from_url(redis_url)
    return [f[b"event_id"] for _, f in r.xrange(f"{namespace}:events")]


def test_hardening_08_events_answer_says_exactly_what_was_stored(served_env, published):
    env = {**served_env, "RECSYS_NAMESPACE": "ack08"}
    app = make_app(env).test_client()
    batch = [{"user_id": "a8", "item_id": "1", "event_type": "view", "event_id": "good-1"},
             {"user_id": "a8", "item_id": "2", "event_type": "view", "event_id": "\udfff"},
             {"user_id": "a8", "item_id": "3", "event_type": "view", "note": "\ud800"},
             {"user_id": "a8", "item_id": "5", "event_type": "view", "weight": float("nan")},
             {"user_id": "a8", "item_id": "4", "event_type": "view", "event_id": "good-4"}]
    r = app.post("/events", json={"events": batch}, headers=KEY)
    body = _fine(r, 400)
    assert (body["stored"], body["duplicates"]) == (2, 0)
    assert [x["index"] for x in body["rejected"]] == [1, 2, 3]
    assert "event_id" in body["rejected"][0]["reason"]
    assert "note" in body["rejected"][1]["reason"]
    assert "weight is NaN" in body["rejected"][2]["reason"]
    assert body["event_ids"] == ["good-1", "good-4"]
    assert _stream(published[1], "ack08") == [b"good-1", b"good-4"]
    again = app.post("/events", json={"events": batch}, headers=KEY).get_json()
    assert (again["stored"], again["duplicates"]) == (0, 2)
    assert _stream(published[1], "ack08") == [b"good-1", b"good-4"]


def test_hardening_08_a_write_cut_short_says_so_and_a_resend_stores_each_once(served_env):
    with local_redis() as url:
        env = {**served_env, "REDIS_URL": url, "RECSYS_NAMESPACE": "cut08",
               "RECSYS_REDIS_TIMEOUT_S": "0.3", "RECSYS_REDIS_RETRY_S": "0"}
        app = make_app(env).test_client()
        batch = [{"user_id": "c8", "item_id": str(n), "event_id": f"cut-{n}"} for n in range(5)]
        other = redis.Redis.from_url(url)
        other.client_pause(1500, all=False)  # write commands (the script) wait 1.5 s
        started = time.monotonic()
        r = app.post("/events", json={"events": batch}, headers=KEY)
        assert time.monotonic() - started < 1.4  # timed out while Redis held the write
        body = _fine(r, 503, "may or may not be stored", "send the same batch again")
        assert body["stored"] is None and body["event_ids"] == [f"cut-{n}" for n in range(5)]
        while time.monotonic() - started < 1.6:
            time.sleep(0.05)
        again = app.post("/events", json={"events": batch}, headers=KEY).get_json()
        assert again["stored"] + again["duplicates"] == 5
        assert sorted(_stream(url, "cut08")) == [f"cut-{n}".encode() for n in range(5)]


# 09 --------------------------------------------------------------------------------------------
def _first_cursor(app, user):
    body = app.get(f"/recommend?user_id={user}&k=3").get_json()
    assert body["next_cursor"], body
    return body["next_cursor"]


def test_hardening_09_cursors_cannot_be_forged_or_replayed(client, warm_user):
    app, _ = client
    cursor = _first_cursor(app, warm_user)
    second = app.get(f"/recommend?user_id={warm_user}&k=3&cursor={cursor}")
    assert second.status_code == 200  # pages still chain
    # Another user's cursor replayed.
    _fine(app.get(f"/recommend?user_id=someone-else&k=3&cursor={cursor}"), 400, "cursor")
    # One byte flipped, anywhere.
    for at in (1, len(cursor) // 2, len(cursor) - 1):
        flipped = cursor[:at] + ("A" if cursor[at] != "A" else "B") + cursor[at + 1:]
        _fine(app.get(f"/recommend?user_id={warm_user}&k=3&cursor={flipped}"), 400, "cursor")
    # A cursor made with the old scheme (CRC32 of the user id) that claims nothing was served.
    tag = f"{zlib.crc32(warm_user.encode()):08x}"
    forged = "s" + base64.urlsafe_b64encode(f"{tag}\x1eX".encode()).decode().rstrip("=")
    _fine(app.get(f"/recommend?user_id={warm_user}&k=3&cursor={forged}"), 400, "cursor")


def test_hardening_09_every_instance_checks_the_others_cursors(served_env, warm_user):
    env = {**served_env, "RECSYS_NAMESPACE": "pub"}
    one, two = make_app(env).test_client(), make_app(env).test_client()
    cursor = _first_cursor(one, warm_user)
    assert two.get(f"/recommend?user_id={warm_user}&k=3&cursor={cursor}").status_code == 200
    # With a configured secret, instances agree too, and the Redis one no longer applies.
    secret = {**env, "RECSYS_CURSOR_SECRET": "cursor-secret-0123456789"}
    three, four = make_app(secret).test_client(), make_app(secret).test_client()
    _fine(three.get(f"/recommend?user_id={warm_user}&k=3&cursor={cursor}"), 400, "cursor")
    cursor = _first_cursor(three, warm_user)
    assert four.get(f"/recommend?user_id={warm_user}&k=3&cursor={cursor}").status_code == 200


def test_cursor_secret_is_made_once_by_concurrent_instances(redis_client):
    from functions.cursor import CursorKey

    keys = [CursorKey(None, redis_client, "race:cursor_secret") for _ in range(8)]
    threads = [threading.Thread(target=k.load) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({k.value for k in keys}) == 1 and len(keys[0].value) >= 16
    assert redis_client.get("race:cursor_secret") == keys[0].value


# 07 (admin side) ----------------------------------------------------------------------------
@pytest.mark.parametrize("body,words", [
    ({"unavailable": ["a\x00b"]}, ["unavailable", "control"]),
    ({"categories": {"i1": "Com\x1bedy"}}, ["category", "control"]),
    ({"categories": {"i1": " "}}, ["blank"]),
    ({"unavailable": ["i1", "i2"], "available": ["i2"]}, ["both", "i2"]),
])
def test_hardening_07_admin_items_take_the_id_rules_of_the_validators(served_env, body, words):
    """/admin/items checks ids and categories as `recsys items` and the nightly do: control
    characters and blanks are 400s naming the field, and one item cannot be made unavailable
    and available in one call (it used to end up silently available)."""
    app = make_app(served_env).test_client()
    before = app.get("/admin/items", headers=ADMIN).get_json()
    _fine(app.post("/admin/items", json=body, headers=ADMIN), 400, *words)
    assert app.get("/admin/items", headers=ADMIN).get_json() == before
