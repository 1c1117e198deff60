"""Page cursors: signed lists of the ids already served to a user.

A later page never repeats an item, even if the version moved in between: the cursor carries
the ids served so far. It is signed (HMAC-SHA256 over the user id and the ids, with a server
secret: CursorKey), so a client can neither forge one nor reuse another user's.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import zlib

import redis

MAX_SERVED = 1000  # items a cursor may carry; past that the last page has no next_cursor
MAX_CURSOR_CHARS = 16_384
SEP = "\x1e"  # ASCII record separator between the ids in a cursor


class CursorKeyUnavailable(RuntimeError):
    """No cursor secret is configured and Redis, which holds the shared one, is unreachable."""


class CursorKey:
    """The HMAC key of the page cursors, the same in every instance and worker.

    RECSYS_CURSOR_SECRET when set; otherwise a random secret created once in Redis under
    `NS:cursor_secret` (SET NX, so the first instance to start makes it and every other one
    reads the same) and kept for the life of the process.
    """

    def __init__(self, secret: str | None, client: redis.Redis, name: str):
        self.value = secret.encode() if secret else None
        self._client, self._name = client, name

    def load(self) -> bytes:
        """The key, fetched (or created) in Redis the first time.

        Raises:
            redis.RedisError: Redis failed and no key is known yet.
        """
        if self.value is None:
            self._client.set(self._name, secrets.token_hex(32), nx=True)
            value = self._client.get(self._name)
            if value is None or len(value) < 16:
                raise redis.ResponseError(
                    f"{self._name} holds no secret of 16 bytes or more: delete the key (the "
                    "next start makes a new one) or set RECSYS_CURSOR_SECRET")
            self.value = value
        return self.value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(key: bytes, user_id: str, payload: bytes) -> bytes:
    """HMAC-SHA256 of the user id and the cursor's payload: the cursor is bound to its user."""
    message = user_id.encode("utf-8", "surrogatepass") + b"\x00" + payload
    return hmac.digest(key, message, "sha256")  # OpenSSL's one-shot: no HMAC object


def encode_cursor(key: bytes, user_id: str, served: list[str]) -> str:
    """`<kind><base64url payload>.<base64url HMAC>`: the served ids joined by SEP ("s"),
    deflated once long ("z"), or as JSON ("j") in the unlikely case an id holds SEP; signed
    with `key` together with the user id."""
    kind, text = "s", SEP.join(served)
    if text.count(SEP) != max(len(served) - 1, 0):  # an id holds SEP (one count, in C)
        kind, text = "j", json.dumps(served)
    raw = text.encode()
    if kind == "s" and len(raw) > 1024:
        kind, raw = "z", zlib.compress(raw, 6)
    return f"{kind}{_b64(raw)}.{_b64(_mac(key, user_id, kind.encode() + raw))}"


_INVALID = ("cursor is not valid: pass the next_cursor of the previous page unchanged, or "
            "leave cursor out for the first page")


def decode_cursor(key: bytes, user_id: str, cursor: str) -> list[str]:
    """The ids served so far. Raises ValueError (message for the client) for a cursor that is
    malformed, altered, forged or made for another user."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValueError(f"cursor is longer than {MAX_CURSOR_CHARS} characters")
    body, dot, tag = cursor.rpartition(".")
    kind = body[:1]
    if not dot or kind not in ("s", "z", "j"):
        raise ValueError(_INVALID)
    try:
        raw, mac = _unb64(body[1:]), _unb64(tag)
    except (binascii.Error, ValueError):
        raise ValueError(_INVALID) from None
    if _b64(raw) != body[1:] or _b64(mac) != tag:  # one spelling per cursor
        raise ValueError(_INVALID)
    if not hmac.compare_digest(mac, _mac(key, user_id, kind.encode() + raw)):
        raise ValueError("cursor was made for another user_id, or altered: pass the "
                         "next_cursor of this user's previous page unchanged")
    try:  # signed by this service, so well formed; checked all the same
        if kind == "z":
            raw = zlib.decompressobj().decompress(raw, 1 << 20)
        text = raw.decode()
        served = json.loads(text) if kind == "j" else (text.split(SEP) if text else [])
    except (zlib.error, ValueError, RecursionError):
        raise ValueError(_INVALID) from None
    if not isinstance(served, list) or not all(isinstance(i, str) for i in served):
        raise ValueError(_INVALID)
    return served
