"""The fallback chain of /recommend: cache -> on_demand -> popular, under the live filters.

Every source sees the same exclusions: the items the user touched since the nightly run (their
recent-history list plus the request's `events`), unavailable items, the request's `exclude`,
the items served on earlier pages (the cursor), and, with a `category` filter, every item of
another category. When a source leaves fewer than k items, the next one fills. The filtering
itself is models.rules (`apply_rules`, `fill`), the module the batch job uses.

The page cursor carries the ids already served to the user, so a later page never repeats them,
even if the version moved in between. It is signed (HMAC-SHA256 over the user id and the ids,
with a server secret: CursorKey), so a client can neither forge one nor reuse another user's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import zlib
from dataclasses import dataclass, field

import numpy as np
import redis

from functions import metrics
from functions.serving import Loaded, Serving
from infra.redis.codec import decode_list_py
from models.rules import fill

MAX_SERVED = 1000  # items a cursor may carry; past that the last page has no next_cursor
MAX_CURSOR_CHARS = 16_384
SEP = "\x1e"  # ASCII record separator between the ids in a cursor


@dataclass
class Query:
    user_id: str
    k: int
    events: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    features: dict = field(default_factory=dict)  # user features: the served model's; MF not


@dataclass
class Answer:
    version: str
    source: str  # cache | on_demand | popular | fallback: where the list starts
    items: list[tuple[str, float | None]]
    filled_by: list[str]  # later sources that topped the list up
    next_cursor: str | None


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
    return hmac.new(key, message, hashlib.sha256).digest()


def encode_cursor(key: bytes, user_id: str, served: list[str]) -> str:
    """`<kind><base64url payload>.<base64url HMAC>`: the served ids joined by SEP ("s"),
    deflated once long ("z"), or as JSON ("j") in the unlikely case an id holds SEP; signed
    with `key` together with the user id."""
    kind, text = "s", SEP.join(served)
    if any(SEP in i for i in served):
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


def recommend(s: Serving, q: Query, cursor_key: bytes | None = None) -> Answer:
    """Runs the chain for one request; the next page's cursor is signed with `cursor_key`
    (None: no next_cursor).

    Raises:
        NoBundleError: nothing is published (or loadable) yet.
        redis.RedisError: Redis failed before any bundle was loaded.
    """
    loaded = s.state()
    degraded, raw, hist = not s.redis_up(), None, []
    if not degraded:
        try:
            raw, hist = s.fetch(loaded.version, q.user_id)
        except redis.RedisError as e:
            s.mark_down(e)
            degraded = True
    flt = loaded.filters
    blocked = {*hist, *q.events, *q.exclude, *q.served}
    popular = loaded.bundle.popular
    if q.categories:
        cats = set(q.categories)
        popular = [i for i in popular if flt.category.get(i) in cats]
    if degraded:
        metrics.FALLBACKS.inc("redis_down")
        return _answer(loaded, q, "fallback", [], _popular(popular, q.k, blocked, flt),
                       cursor_key)
    index, names = loaded.item_index, loaded.item_names
    blocked_idx = {index[i] for i in blocked if i in index} if blocked else set()
    out, sources = [], []
    metrics.CACHE_LOOKUPS.inc("hit" if raw is not None else "miss")
    if raw is not None:
        out = _from_cache(raw, q, blocked_idx, flt, names)
    if out:
        sources.append("cache")
    history = [*hist, *q.events]
    # The served model also ranks a user known only by request features.
    if len(out) < q.k and (history or (q.features and loaded.served is not None)):
        exclude = np.fromiter(blocked_idx | flt.unavailable_idx | {index[i] for i, _ in out},
                              np.int64)
        if q.categories:
            allowed = [flt.codes[c] for c in q.categories if c in flt.codes]
            exclude = np.union1d(exclude, np.flatnonzero(~np.isin(flt.item_codes, allowed)))
        seen = np.array([index[i] for i in history if i in index], np.int64)
        got = [(names[i], d) for i, d in s.on_demand(loaded, seen, exclude, q.k - len(out),
                                                      q.user_id, q.features)]
        if got:
            out, sources = out + got, sources + ["on_demand"]
    if len(out) < q.k:
        got = _popular(popular, q.k - len(out), blocked | {i for i, _ in out}, flt)
        if got:
            out, sources = out + got, sources + ["popular"]
    source = sources[0] if sources else "popular"
    return _answer(loaded, q, source, sources[1:], out, cursor_key)


def _from_cache(raw: bytes, q: Query, blocked_idx: set, flt, names: list) -> list:
    """The nightly list under the filters: [(item id, score)], at most k."""
    items, scores = decode_list_py(raw)
    exclude = blocked_idx | flt.unavailable_idx.intersection(items)
    if q.categories:
        allowed = {flt.codes[c] for c in q.categories if c in flt.codes}
        codes = flt.item_codes
        exclude.update(i for i in items if codes[i] not in allowed)
    picked = fill(items, [], q.k, exclude)
    # A list holds each item once, so the picks are among its first k + |exclude| items;
    # reversed, so that a repeated item keeps its first score.
    head = min(len(items), q.k + len(exclude))
    score = dict(zip(reversed(items[:head]), reversed(scores[:head]), strict=True))
    if not all(i in score for i in picked):
        score = dict(zip(reversed(items), reversed(scores), strict=True))
    return [(names[i], score[i]) for i in picked]


def _popular(popular: list[str], k: int, blocked: set, flt) -> list[tuple[str, None]]:
    exclude = blocked | flt.unavailable.intersection(popular)
    return [(i, None) for i in fill([], popular, k, exclude)]


def _answer(loaded: Loaded, q: Query, source: str, filled_by: list[str],
            items: list, cursor_key: bytes | None) -> Answer:
    served = q.served + [i for i, _ in items]
    more = len(items) == q.k and len(served) < MAX_SERVED and cursor_key is not None
    return Answer(loaded.version, source, items, filled_by,
                  encode_cursor(cursor_key, q.user_id, served) if more else None)
