"""The functions' configuration: read once from the environment at import (docs/SERVING.md).

A setting that cannot mean what it says stops the start with a message naming the variable:
a key that reads like a switch (`RECSYS_RECOMMEND_KEY=1`), a read key shorter than 16
characters or equal to the write key, a size that is not a positive integer.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIN_SECRET_CHARS = 16
# Values of a yes/no switch: as a key each would be guessed at once, and most likely the
# operator meant to switch something on (RECSYS_RECOMMEND_KEY was once a "1"/"0" switch).
SWITCH_WORDS = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off", "y", "n"})
_HOW = "e.g. `openssl rand -hex 16`"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _number(name: str, default: str, kind: type, minimum: float):
    text = _env(name, default)
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a{'n integer' if kind is int else ' number'}"
                         f"; set it to one >= {minimum} or unset it (default {default})") from None
    if not value >= minimum:
        raise ValueError(f"{name}={text!r} is below {minimum}; set it to at least {minimum} "
                         f"or unset it (default {default})")
    return value


def _switch(name: str, default: bool) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={text[:40]!r} is not a switch; set it to 1 or 0 (on or off), or "
                     f"unset it (default {int(default)})")


def check_secret(name: str, value: str | None, min_chars: int = MIN_SECRET_CHARS) -> None:
    """Raises ValueError if `value` cannot work as the secret named by `name`.

    Args:
        name: the environment variable, for the message.
        value: the secret, or None (unset: nothing to check).
        min_chars: the shortest secret accepted; 0 checks only the form.
    """
    if value is None:
        return
    if value.strip().lower() in SWITCH_WORDS:
        raise ValueError(f"{name}={value!r} looks like a switch, but it is the secret itself "
                         f"that clients send in X-API-Key: set it to a random string of at least "
                         f"{MIN_SECRET_CHARS} characters ({_HOW}), or unset it")
    if not (value.isascii() and value.isprintable()) or value != value.strip():
        raise ValueError(f"{name} holds spaces at its ends, control or non-ASCII characters, "
                         f"which an HTTP header cannot carry unchanged: use letters and digits "
                         f"({_HOW})")
    if len(value) < min_chars:
        raise ValueError(f"{name} is {len(value)} characters long; use at least {min_chars} "
                         f"random characters ({_HOW})")


@dataclass(frozen=True)
class Settings:
    """The functions' settings (docs/SERVING.md lists the variables); checked when made.

    Keys: `api_key` is the write key (/events), `recommend_key` the read key (/recommend; None
    leaves it open), `admin_key` the key of /admin/items (None: disabled).
    """

    redis_url: str
    store: str
    namespace: str = "recsys"
    api_key: str | None = None
    admin_key: str | None = None
    recommend_key: str | None = None
    cursor_secret: str | None = None  # None: a random one shared through Redis
    pointer_ttl: float = 2.0
    max_k: int = 100
    history_len: int = 50
    max_events: int = 1000
    dedup_ttl: int = 86_400
    max_body_bytes: int = 1 << 20
    max_admin_body_bytes: int = 16 << 20
    redis_timeout: float = 0.5
    redis_retry: float = 1.0
    faiss_threads: int = 1
    impressions: bool = True  # log every /recommend answer to NS:impressions
    metrics: bool = True  # record the Prometheus metrics (RECSYS_METRICS=0: off, for benchmarks)

    def __post_init__(self):
        # Write and admin keys: only their form (short ones are warned about below).
        check_secret("RECSYS_API_KEY", self.api_key, 0)
        check_secret("RECSYS_ADMIN_KEY", self.admin_key, 0)
        check_secret("RECSYS_RECOMMEND_KEY", self.recommend_key)
        check_secret("RECSYS_CURSOR_SECRET", self.cursor_secret)
        if self.recommend_key is not None and self.recommend_key in (self.api_key,
                                                                     self.admin_key):
            raise ValueError("RECSYS_RECOMMEND_KEY equals the write key (RECSYS_API_KEY) or the "
                             "admin key (RECSYS_ADMIN_KEY): whoever may read could then write; "
                             f"give reads a key of their own ({_HOW})")
        for name, key in (("RECSYS_API_KEY", self.api_key),
                          ("RECSYS_ADMIN_KEY", self.admin_key)):
            if key is not None and len(key) < MIN_SECRET_CHARS:
                log.warning("%s is shorter than %d characters: easy to guess", name,
                            MIN_SECRET_CHARS)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment.

        Raises:
            ValueError: a variable holds a value that cannot mean what it says (the message
                names it and says what to set).
        """
        api_key = os.environ.get("RECSYS_API_KEY") or None
        return cls(redis_url=_env("REDIS_URL", "redis://localhost:6379/0"),
                   store=_env("RECSYS_STORE", "./artifacts"),
                   namespace=_env("RECSYS_NAMESPACE", "recsys"),
                   api_key=api_key,
                   admin_key=os.environ.get("RECSYS_ADMIN_KEY") or api_key,
                   recommend_key=os.environ.get("RECSYS_RECOMMEND_KEY") or None,
                   cursor_secret=os.environ.get("RECSYS_CURSOR_SECRET") or None,
                   pointer_ttl=_number("RECSYS_POINTER_TTL_S", "2", float, 0),
                   max_k=_number("RECSYS_MAX_K", "100", int, 1),
                   max_events=_number("RECSYS_MAX_EVENTS", "1000", int, 1),
                   dedup_ttl=_number("RECSYS_EVENT_DEDUP_TTL_S", "86400", int, 1),
                   max_body_bytes=_number("RECSYS_MAX_BODY_BYTES", str(1 << 20), int, 1024),
                   max_admin_body_bytes=_number("RECSYS_MAX_ADMIN_BODY_BYTES", str(16 << 20),
                                                int, 1024),
                   redis_timeout=_number("RECSYS_REDIS_TIMEOUT_S", "0.5", float, 0.001),
                   redis_retry=_number("RECSYS_REDIS_RETRY_S", "1", float, 0),
                   faiss_threads=_number("RECSYS_FAISS_THREADS", "1", int, 1),
                   impressions=_switch("RECSYS_IMPRESSIONS", True),
                   metrics=_switch("RECSYS_METRICS", True))
