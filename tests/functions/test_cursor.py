"""Page cursors (functions/cursor.py): signed, bound to their user, one spelling each."""

import json

import pytest
import redis

from functions.cursor import MAX_CURSOR_CHARS, CursorKey, decode_cursor, encode_cursor

KEY = b"test-cursor-secret-0123456789"


def test_cursor_round_trip_and_tampering():
    served = ["1", "x y", "é", "a\x1eb"]
    assert decode_cursor(KEY, "u", encode_cursor(KEY, "u", served)) == served
    long = [str(n) for n in range(400)]
    cursor = encode_cursor(KEY, "u", long)
    assert cursor[0] == "z" and decode_cursor(KEY, "u", cursor) == long
    with pytest.raises(ValueError, match="another user_id"):
        decode_cursor(KEY, "v", encode_cursor(KEY, "u", ["1"]))
    with pytest.raises(ValueError, match="another user_id, or altered"):
        decode_cursor(b"another-secret-0123456789", "u", encode_cursor(KEY, "u", ["1"]))
    with pytest.raises(ValueError, match="not valid"):
        decode_cursor(KEY, "u", "s" + json.dumps(["?"]))
    with pytest.raises(ValueError, match=f"longer than {MAX_CURSOR_CHARS}"):
        decode_cursor(KEY, "u", "s" * (MAX_CURSOR_CHARS + 1))


def test_a_configured_secret_is_used_and_a_short_stored_one_is_refused(redis_client):
    assert CursorKey("configured-secret-0123", redis_client, "c:secret").load() == (
        b"configured-secret-0123")
    assert redis_client.get("c:secret") is None  # Redis is not asked
    redis_client.set("c:short", "tiny")
    with pytest.raises(redis.ResponseError, match="delete the key"):
        CursorKey(None, redis_client, "c:short").load()
