"""The Redis side of serving: versioned top-K lists, the `current` pointer, event history.

Key layout (NS = namespace, "recsys" by default; see docs/ARCHITECTURE.md):
  NS:current                 -> version being served (one SET flips it)
  NS:versions                -> sorted set: version -> publish time
  NS:v:VER:meta              -> JSON summary of the version (bundle, users, ...)
  NS:v:VER:shards            -> hash: shard id -> users written (checked before the flip)
  NS:v:VER:u:USER            -> list: K little-endian int32 item indices, then K float16 scores
  NS:events                  -> stream of ingested events (drained by the nightly job)
  NS:hist:USER               -> list: the user's most recent item ids (newest first)
"""

from __future__ import annotations

import json
import time

import numpy as np
import redis

# Flip only if the shards' counts add up to the expected number of users.
_FLIP = """
local total = 0
local vals = redis.call('HVALS', KEYS[2])
for _, v in ipairs(vals) do total = total + tonumber(v) end
if total ~= tonumber(ARGV[2]) then return total end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return -1
"""


def encode_list(items: np.ndarray, scores: np.ndarray) -> bytes:
    """Packs [k] item indices (int32) and [k] scores (float16): 6 bytes per entry."""
    return items.astype("<i4").tobytes() + scores.astype("<f2").tobytes()


def decode_list(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of encode_list: returns ([k] int32 items, [k] float32 scores)."""
    k = len(data) // 6
    items = np.frombuffer(data, "<i4", count=k)
    scores = np.frombuffer(data, "<f2", count=k, offset=4 * k).astype(np.float32)
    return items, scores


class ListStore:
    """Versioned recommendation lists in Redis."""

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        self.r, self.ns = client, namespace
        self._flip = self.r.register_script(_FLIP)

    @classmethod
    def from_url(cls, url: str, namespace: str = "recsys", **kwargs) -> ListStore:
        return cls(redis.Redis.from_url(url, **kwargs), namespace)

    def _v(self, version: str) -> str:
        return f"{self.ns}:v:{version}"

    def user_key(self, version: str, user_id: str) -> str:
        return f"{self._v(version)}:u:{user_id}"

    def write_shard(self, version: str, shard: str, user_ids, items: np.ndarray,
                    scores: np.ndarray, batch: int = 1000) -> int:
        """Writes one shard's lists, then records its count. Rewriting a shard is idempotent.

        Args:
            user_ids: [n] user ids.
            items: [n, k] item indices (-1 = none).
            scores: [n, k] scores.

        Returns:
            Number of users written.
        """
        pipe = self.r.pipeline(transaction=False)
        for n, user_id in enumerate(user_ids):
            keep = items[n] >= 0
            pipe.set(self.user_key(version, user_id), encode_list(items[n][keep], scores[n][keep]))
            if (n + 1) % batch == 0:
                pipe.execute()
        pipe.hset(f"{self._v(version)}:shards", shard, len(user_ids))
        pipe.execute()
        return len(user_ids)

    def flip(self, version: str, expected_users: int, meta: dict) -> None:
        """Points `current` at `version` if every shard wrote; raises otherwise."""
        self.r.set(f"{self._v(version)}:meta", json.dumps(meta))
        written = self._flip(keys=[f"{self.ns}:current", f"{self._v(version)}:shards",
                                   f"{self.ns}:versions"],
                             args=[version, expected_users, time.time()])
        if written != -1:
            raise RuntimeError(f"version {version}: shards wrote {written} users, expected "
                               f"{expected_users}; the pointer was not moved")

    def rollback(self, version: str) -> None:
        """Points `current` back at an earlier published version."""
        if self.r.zscore(f"{self.ns}:versions", version) is None:
            raise ValueError(f"version {version} was never published; see `recsys versions`")
        self.r.set(f"{self.ns}:current", version)

    def current(self) -> str | None:
        v = self.r.get(f"{self.ns}:current")
        return v.decode() if v is not None else None

    def meta(self, version: str) -> dict | None:
        raw = self.r.get(f"{self._v(version)}:meta")
        return json.loads(raw) if raw else None

    def versions(self) -> list[str]:
        return [v.decode() for v in self.r.zrange(f"{self.ns}:versions", 0, -1)]

    def get_list(self, version: str, user_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        raw = self.r.get(self.user_key(version, user_id))
        return decode_list(raw) if raw is not None else None

    def expire_old(self, keep: int) -> list[str]:
        """Deletes the keys of published versions beyond the newest `keep` (never current)."""
        current, dropped = self.current(), []
        for version in self.versions()[:-keep] if keep > 0 else []:
            if version == current:
                continue
            for key in self.r.scan_iter(f"{self._v(version)}:*", count=10_000):
                self.r.unlink(key)
            self.r.zrem(f"{self.ns}:versions", version)
            dropped.append(version)
        return dropped

    # Events and history -------------------------------------------------------------------
    def append_events(self, events: list[dict], history_len: int = 50) -> list[str]:
        """Adds events to the durable stream and to each user's recent history, atomically."""
        pipe = self.r.pipeline(transaction=True)
        for e in events:
            pipe.xadd(f"{self.ns}:events", {k: str(v) for k, v in e.items() if v is not None})
            pipe.lpush(f"{self.ns}:hist:{e['user_id']}", e["item_id"])
            pipe.ltrim(f"{self.ns}:hist:{e['user_id']}", 0, history_len - 1)
        out = pipe.execute()
        return [x.decode() for x in out[0::3]]

    def history(self, user_id: str, n: int = 50) -> list[str]:
        """The user's most recent item ids, oldest first."""
        return [x.decode() for x in self.r.lrange(f"{self.ns}:hist:{user_id}", 0, n - 1)][::-1]
