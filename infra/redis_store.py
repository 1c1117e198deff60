"""The Redis side of serving: versioned top-K lists, the `current` pointer, event history.

Key layout (NS = namespace, "recsys" by default; see docs/ARCHITECTURE.md):
  NS:current                 -> version being served (one SET flips it)
  NS:versions                -> sorted set: version -> publish time
  NS:started                 -> set: versions that started writing and never flipped; added
                                before a version's first key, removed by the flip or by
                                drop_unpublished once the version's keys are gone
  NS:v:VER:meta              -> JSON summary of the version (bundle, users, ...)
  NS:v:VER:shards            -> hash: shard id -> users written (checked before the flip)
  NS:v:VER:built             -> per user of the bundle's user_ids.json: uint32 build time of
                                the list (epoch s) + uint64 fingerprint of the user's data
  NS:v:VER:u:USER            -> list: K little-endian int32 item indices, then K float16 scores
  NS:events                  -> stream of ingested events (consumer group `nightly` drains
                                it into the artifact store: infra/events_log.py)
  NS:eid:EVENT_ID            -> marks an event id as ingested (TTL): a resent event is skipped
  NS:hist:USER               -> list: the user's most recent item ids (newest first)
  NS:items:unavailable       -> set of item ids that must not be recommended
  NS:items:category          -> hash: item id -> category (for the category filter)
  NS:items:rev               -> counter bumped by every change of the two above

A version (VER) matches VERSION_RE: letters, digits, `.`, `_`, `-`, so no key separator and
no glob character can come with it. Key patterns are built only from the namespace and a
checked version, escaped all the same; never from a user, item or event id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import time

import numpy as np
import redis

log = logging.getLogger(__name__)

# infra.bundle.new_version's names ("20250101T000000Z-1a2b") and short test names ("v1").
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GLOB = re.compile(r"([*?\[\]\\])")

# Flip only if the shards' counts add up to the expected number of users; a flipped version
# leaves the started record (KEYS[4]) in the same step.
_FLIP = """
local total = 0
local vals = redis.call('HVALS', KEYS[2])
for _, v in ipairs(vals) do total = total + tonumber(v) end
if total ~= tonumber(ARGV[2]) then return total end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return -1
"""

# Copies lists KEYS[2..n+1] to KEYS[n+2..2n+1] and records the count in the shards hash
# KEYS[1] (field ARGV[1]) in the same atomic step; returns 1/0 (source missing) per list.
_COPY = """
local n = (#KEYS - 1) / 2
local out, copied = {}, 0
for i = 2, n + 1 do
  out[i - 1] = redis.call('COPY', KEYS[i], KEYS[i + n], 'REPLACE')
  copied = copied + out[i - 1]
end
redis.call('HSET', KEYS[1], ARGV[1], copied)
return out
"""

# Per event (ARGV[4..], JSON [event_id or "", user_id, item_id, field, value, ...]): skip it if
# its id was seen within the TTL, else XADD it and push the item on the user's history.
# Redis does not undo a script's writes when it fails part way, so every entry is decoded and
# checked, and every key's type too, before the first write: a bad batch writes nothing.
_APPEND = """
local function bad(n, why)
  return redis.error_reply('event ' .. (n - 4) .. ': ' .. why .. '; nothing was stored')
end
local function type_ok(key, want)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == want
end
if not type_ok(KEYS[1], 'stream') then
  return redis.error_reply(KEYS[1] .. ' is not a stream; nothing was stored')
end
local events = {}
for n = 4, #ARGV do
  local ok, e = pcall(cjson.decode, ARGV[n])
  if not ok or type(e) ~= 'table' then return bad(n, 'not a JSON array') end
  if #e < 5 or (#e - 3) % 2 ~= 0 then
    return bad(n, 'not [event_id, user_id, item_id, field, value, ...]')
  end
  for f = 1, #e do
    if type(e[f]) ~= 'string' then return bad(n, 'entry ' .. f .. ' is not a string') end
  end
  if not type_ok(ARGV[1] .. ':hist:' .. e[2], 'list') then
    return bad(n, 'the history key of its user is not a list')
  end
  events[#events + 1] = e
end
local out = {}
for _, e in ipairs(events) do
  local fresh = true
  if e[1] ~= '' then
    fresh = redis.call('SET', ARGV[1] .. ':eid:' .. e[1], '1', 'NX', 'EX', ARGV[3])
  end
  if fresh then
    local fields = {}
    for f = 4, #e do fields[#fields + 1] = e[f] end
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
    local hist = ARGV[1] .. ':hist:' .. e[2]
    redis.call('LPUSH', hist, e[3])
    redis.call('LTRIM', hist, 0, tonumber(ARGV[2]) - 1)
  else
    out[#out + 1] = false
  end
end
return out
"""


def check_version(version: str) -> str:
    """Returns `version` if it is a well-formed version name; raises ValueError otherwise.

    Checked wherever a version reaches a key that is written or a key pattern, so that no
    separator (`:`) or glob character (`* ? [ ] \\`) can widen what a pattern matches.
    """
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise ValueError(f"malformed version {version!r}: use 1-64 letters, digits, '.', '_' "
                         "or '-', starting with a letter or digit, as infra.bundle.new_version "
                         "makes them; see `recsys versions`")
    return version


def glob_escape(text: str) -> str:
    """Escapes Redis glob characters (`* ? [ ] \\`) so that `text` matches only itself."""
    return _GLOB.sub(r"\\\1", text)


def encode_list(items: np.ndarray, scores: np.ndarray) -> bytes:
    """Packs [k] item indices (int32) and [k] scores (float16): 6 bytes per entry."""
    return items.astype("<i4").tobytes() + scores.astype("<f2").tobytes()


def encode_lists(items: np.ndarray, scores: np.ndarray) -> list[bytes]:
    """encode_list for each row of [n, k] items (-1 = none) and scores, vectorised."""
    n, k = items.shape
    packed = np.concatenate([items.astype("<i4").view(np.uint8).reshape(n, 4 * k),
                             scores.astype("<f2").view(np.uint8).reshape(n, 2 * k)], axis=1)
    full = items[:, -1] >= 0 if k else np.ones(n, bool)
    out = [row.tobytes() for row in packed]
    for r in np.flatnonzero(~full):  # lists shorter than k (-1 padded): pack their prefix
        keep = items[r] >= 0
        out[r] = encode_list(items[r][keep], scores[r][keep])
    return out


def decode_list(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of encode_list: returns ([k] int32 items, [k] float32 scores)."""
    k = len(data) // 6
    items = np.frombuffer(data, "<i4", count=k)
    scores = np.frombuffer(data, "<f2", count=k, offset=4 * k).astype(np.float32)
    return items, scores


def remap_lists(values: list[bytes], item_map: np.ndarray) -> list[bytes]:
    """Re-indexes encoded lists into another item vocabulary, scores untouched.

    Args:
        values: encoded lists (encode_list) indexing the old vocabulary.
        item_map: [old_items] int: each old item's index in the new vocabulary, -1 = gone
            (dropped from the list, which gets shorter).
    """
    out = []
    for data in values:
        k = len(data) // 6
        items = item_map[np.frombuffer(data, "<i4", count=k)]
        keep = items >= 0
        out.append(items[keep].astype("<i4").tobytes()
                   + np.frombuffer(data, "<f2", count=k, offset=4 * k)[keep].tobytes())
    return out


BUILT = np.dtype([("built_at", "<u4"), ("fingerprint", "<u8")])  # 12 bytes per user

_LAYOUTS: dict[int, struct.Struct] = {}


def decode_list_py(data: bytes) -> tuple[list[int], list[float]]:
    """decode_list as Python lists, without NumPy: the serving hot path (one struct call)."""
    k = len(data) // 6
    layout = _LAYOUTS.get(k)
    if layout is None:
        layout = _LAYOUTS[k] = struct.Struct(f"<{k}i{k}e")
    values = layout.unpack_from(data)
    return list(values[:k]), list(values[k:])


def _encode_event(n: int, event: dict) -> bytes:
    """One _APPEND argument: UTF-8 JSON [event_id or "", user_id, item_id, field, value, ...].

    Raises:
        ValueError: `event <n>: ...` when the event lacks an id or holds text that UTF-8
            cannot encode (lone surrogates).
    """
    try:
        fields = [str(x) for k, v in event.items() if v is not None for x in (k, v)]
        row = [str(event.get("event_id") or ""), str(event["user_id"]), str(event["item_id"]),
               *fields]
        return json.dumps(row, ensure_ascii=False).encode("utf-8")
    except KeyError as e:
        raise ValueError(f"event {n}: missing field {e.args[0]!r}; nothing was stored") from None
    except AttributeError:
        raise ValueError(f"event {n}: not an object of fields; nothing was stored") from None
    except UnicodeEncodeError as e:
        raise ValueError(f"event {n}: text that is not valid Unicode ({e.reason}, e.g. a lone "
                         "surrogate); nothing was stored") from None


class ListStore:
    """Versioned recommendation lists in Redis."""

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        self.r, self.ns = client, namespace
        self._flip = self.r.register_script(_FLIP)
        self._copy = self.r.register_script(_COPY)
        self._append = self.r.register_script(_APPEND)
        self.events_key = f"{namespace}:events"
        self.started_key = f"{namespace}:started"
        self._local = threading.local()  # read_user's connection of each thread

    @classmethod
    def from_url(cls, url: str, namespace: str = "recsys", **kwargs) -> ListStore:
        return cls(redis.Redis.from_url(url, **kwargs), namespace)

    def _v(self, version: str) -> str:
        return f"{self.ns}:v:{version}"

    def user_key(self, version: str, user_id: str) -> str:
        return f"{self._v(version)}:u:{user_id}"

    def _start(self, version: str) -> None:
        """Records `version` as started, before its first key: drop_unpublished's record."""
        self.r.sadd(self.started_key, check_version(version))

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
        self._start(version)
        prefix = f"{self._v(version)}:u:"
        values = encode_lists(items, scores)
        for lo in range(0, len(values), batch):
            self.r.mset({prefix + str(u): v for u, v in
                         zip(user_ids[lo:lo + batch], values[lo:lo + batch], strict=True)})
        # Recorded last: a shard counts only once all its lists are in Redis.
        self.r.hset(f"{self._v(version)}:shards", shard, len(user_ids))
        return len(user_ids)

    def copy_lists(self, src: str, dst: str, shard: str, user_ids,
                   item_map: np.ndarray | None = None, batch: int = 1000) -> np.ndarray:
        """Copies users' lists from version `src` to `dst` inside Redis, `batch` per round trip.

        Each batch's lists and its count (field `<shard>:<n>` of dst's shards hash) are written
        in one atomic step, so the flip's check covers copied users as it covers computed ones
        and `drop_unpublished` finds every copy of a failed run.

        Args:
            user_ids: [n] user ids.
            item_map: None when both versions index items alike: `COPY` moves the bytes
                unchanged; else [src items] new index of each src item (remap_lists), and
                the lists go out by `MGET`, remap, `MSET`.

        Returns:
            [n] bool: False where src had no list for the user (nothing written for them).
        """
        check_version(src)
        self._start(dst)
        shards, copied = f"{self._v(dst)}:shards", np.zeros(len(user_ids), bool)
        for n, lo in enumerate(range(0, len(user_ids), batch)):
            users = [str(u) for u in user_ids[lo:lo + batch]]
            src_keys = [self.user_key(src, u) for u in users]
            dst_keys = [self.user_key(dst, u) for u in users]
            if item_map is None:  # COPY in a script: ~1.3x a pipeline of COPYs, and atomic
                done = np.array(self._copy(keys=[shards, *src_keys, *dst_keys],
                                           args=[f"{shard}:{n}"]), bool)
            else:
                values = self.r.mget(src_keys)
                done = np.array([v is not None for v in values], bool)
                pipe = self.r.pipeline(transaction=True)
                if done.any():
                    pipe.mset(dict(zip([k for k, ok in zip(dst_keys, done, strict=True) if ok],
                                       remap_lists([v for v in values if v is not None],
                                                   item_map), strict=True)))
                pipe.hset(shards, f"{shard}:{n}", int(done.sum()))
                pipe.execute()
            copied[lo:lo + len(users)] = done
        return copied

    def put_built(self, version: str, built_at: np.ndarray, fingerprints: np.ndarray) -> None:
        """Records each user's list build time and data fingerprint (bundle user order)."""
        record = np.empty(len(built_at), BUILT)
        record["built_at"], record["fingerprint"] = built_at, fingerprints
        self._start(version)
        self.r.set(f"{self._v(version)}:built", record.tobytes())

    def built(self, version: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(built_at [users] uint32 epoch s, fingerprints [users] uint64), None if unrecorded."""
        raw = self.r.get(f"{self._v(version)}:built")
        if raw is None:
            return None
        record = np.frombuffer(raw, BUILT)
        return record["built_at"].astype(np.uint32), record["fingerprint"].astype(np.uint64)

    def flip(self, version: str, expected_users: int, meta: dict) -> None:
        """Points `current` at `version` if every shard wrote; raises otherwise.

        The flip also removes `version` from the started record, in the same script.
        """
        self._start(version)
        self.r.set(f"{self._v(version)}:meta", json.dumps(meta))
        written = self._flip(keys=[f"{self.ns}:current", f"{self._v(version)}:shards",
                                   f"{self.ns}:versions", self.started_key],
                             args=[version, expected_users, time.time()])
        if written != -1:
            raise RuntimeError(f"version {version}: shards wrote {written} users, expected "
                               f"{expected_users}; the pointer was not moved")

    def rollback(self, version: str) -> None:
        """Points `current` back at an earlier published version; ValueError otherwise."""
        check_version(version)
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

    def _unlink_version(self, version: str) -> int:
        """Deletes every key of a checked version (NS:v:VER:*); returns how many."""
        pattern = glob_escape(f"{self._v(check_version(version))}:") + "*"
        deleted, batch = 0, []
        for key in self.r.scan_iter(pattern, count=10_000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += self.r.unlink(*batch)
                batch = []
        return deleted + (self.r.unlink(*batch) if batch else 0)

    def drop_unpublished(self) -> list[str]:
        """Deletes the keys of versions that started writing but never flipped (failed runs).

        The versions come from the started record (NS:started), which every write of a
        version joins before its first key, never from scanning keys: user ids are part of
        key names. A version leaves the record only once its keys are gone, so a drop cut
        short is finished by the next call. Only one nightly run may write at a time (the
        scheduler runs them in sequence): this deletes a concurrent run's keys.

        Returns:
            The dropped versions, sorted.
        """
        published, current = set(self.versions()), self.current()
        dropped = []
        for version in sorted(v.decode() for v in self.r.smembers(self.started_key)):
            if version in published or version == current:
                self.r.srem(self.started_key, version)  # flipped: not a failed run
                continue
            if not VERSION_RE.fullmatch(version):  # not written by this class: leave its keys
                log.warning("started record holds a malformed version %r; removed from the "
                            "record, its keys (if any) are left alone", version)
                self.r.srem(self.started_key, version)
                continue
            self._unlink_version(version)
            self.r.srem(self.started_key, version)
            dropped.append(version)
        return dropped

    def expire_old(self, keep: int) -> list[str]:
        """Deletes the keys of published versions beyond the newest `keep` (never current)."""
        current, dropped = self.current(), []
        for version in self.versions()[:-keep] if keep > 0 else []:
            if version == current:
                continue
            if not VERSION_RE.fullmatch(version):
                log.warning("NS:versions holds a malformed version %r; not expired (remove "
                            "it by hand: its keys cannot be matched safely)", version)
                continue
            self._unlink_version(version)
            self.r.zrem(f"{self.ns}:versions", version)
            dropped.append(version)
        return dropped

    # Events and history -------------------------------------------------------------------
    def hist_key(self, user_id: str) -> str:
        return f"{self.ns}:hist:{user_id}"

    def append_events(self, events: list[dict], history_len: int = 50,
                      dedup_ttl: int = 86_400) -> list[str | None]:
        """Adds events to the durable stream and to each user's recent history, atomically.

        All or nothing: every event is encoded and checked before the first write, in Python
        and again in the script, so a batch that fails stores none of its events.

        An event whose `event_id` was already ingested within `dedup_ttl` seconds is skipped,
        so a client may resend a batch it is unsure about. Events without an id are always
        added.

        Args:
            events: dicts with at least `user_id` and `item_id`; every non-None field is
                stored as text.
            history_len: history entries kept per user (>= 1).
            dedup_ttl: seconds an event id is remembered (>= 1).

        Returns:
            Per event, its stream id, or None for a skipped duplicate.

        Raises:
            ValueError: an event cannot be stored as given (a missing `user_id`/`item_id`,
                text that is not valid Unicode such as a lone surrogate "\\udfff"); the
                message starts with `event <index>:` (0-based). Nothing was stored.
            redis.ResponseError: the script refused the batch (a malformed entry, a key of
                the wrong type); nothing was stored.
            redis.ConnectionError, redis.TimeoutError: the reply was lost; the batch may or
                may not be stored (all or nothing). Resending is safe for events with an
                `event_id`: stored ones are skipped as duplicates.
        """
        if not events:
            return []
        if int(history_len) < 1 or int(dedup_ttl) < 1:
            raise ValueError(f"history_len={history_len}, dedup_ttl={dedup_ttl}: use >= 1")
        args = [_encode_event(n, e) for n, e in enumerate(events)]
        out = self._append(keys=[self.events_key], args=[self.ns, history_len, dedup_ttl, *args])
        return [x.decode() if x is not None else None for x in out]

    def read_user(self, version: str, user_id: str, n: int = 50) -> tuple[bytes | None, list]:
        """The user's nightly list and their `n` most recent items (newest first, bytes).

        The serving hot path: both commands go out in one write and come back in one round
        trip, on a connection this thread keeps for itself (same settings as the client's
        pool). That skips the pool's lock, bookkeeping and per-checkout readiness poll, a
        third of the call's time (benchmarks/serving.py); a connection that fails is
        dropped and the next call opens a new one.
        """
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            pool = self.r.connection_pool
            conn = local.conn = pool.connection_class(**pool.connection_kwargs)
            local.pid = os.getpid()
        try:
            conn.send_packed_command(conn.pack_commands([
                ("GET", self.user_key(version, user_id)),
                ("LRANGE", self.hist_key(user_id), 0, n - 1)]))
            return conn.read_response(), conn.read_response()
        except BaseException:
            local.conn = None  # a reply may be left unread: never reuse this connection
            conn.disconnect()
            raise

    def history(self, user_id: str, n: int = 50) -> list[str]:
        """The user's most recent item ids, oldest first."""
        return [x.decode() for x in self.r.lrange(self.hist_key(user_id), 0, n - 1)][::-1]

    # Draining the stream (infra/events_log.py) ---------------------------------------------
    def ensure_group(self, group: str) -> None:
        """Creates the consumer group (from the stream's start) unless it exists."""
        try:
            self.r.xgroup_create(self.events_key, group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def last_event_id(self) -> str:
        """The id of the newest entry in the stream ("0-0" when it is empty)."""
        newest = self.r.xrevrange(self.events_key, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def read_events(self, group: str, consumer: str, count: int,
                    after: str = ">") -> list[tuple[str, dict]]:
        """Entries for `consumer`: new ones (after=">") or its own pending ones after an id.

        Returns:
            [(stream id, {field: value} or None for an entry deleted while pending)], oldest
            first.
        """
        reply = self.r.xreadgroup(group, consumer, {self.events_key: after}, count=count)
        entries = reply[0][1] if reply else []
        # surrogateescape: bytes that are not UTF-8 (written to the stream by hand) reach the
        # drain's validator, which dead-letters them, instead of stalling every drain.
        return [(i.decode(), None if f is None else {k.decode(errors="surrogateescape"):
                                                    v.decode(errors="surrogateescape")
                                                    for k, v in f.items()})
                for i, f in entries]

    def claim_events(self, group: str, consumer: str, count: int) -> int:
        """Moves every pending entry of other consumers of `group` to `consumer`."""
        claimed, start = 0, "0-0"
        while True:
            start, entries, *_ = self.r.xautoclaim(self.events_key, group, consumer, 0,
                                                   start_id=start, count=count)
            claimed += len(entries)
            if start in (b"0-0", "0-0"):
                return claimed

    def ack_events(self, group: str, ids: list[str]) -> None:
        """Acknowledges entries and deletes them from the stream, in one transaction."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.events_key, group, *ids)
        pipe.xdel(self.events_key, *ids)
        pipe.execute()

    # Item availability and categories -----------------------------------------------------
    def set_items(self, unavailable=(), available=(), categories: dict | None = None) -> int:
        """Marks items unavailable or available again and sets their categories.

        Returns:
            The new revision (NS:items:rev), which the functions compare to reload.
        """
        pipe = self.r.pipeline(transaction=True)
        if unavailable:
            pipe.sadd(f"{self.ns}:items:unavailable", *unavailable)
        if available:
            pipe.srem(f"{self.ns}:items:unavailable", *available)
        if categories:
            pipe.hset(f"{self.ns}:items:category", mapping=categories)
        pipe.incr(f"{self.ns}:items:rev")
        return int(pipe.execute()[-1])

    def items_rev_key(self) -> str:
        return f"{self.ns}:items:rev"

    def current_and_rev(self) -> tuple[str | None, int]:
        """The `current` pointer and the item filters' revision, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(f"{self.ns}:current")
        pipe.get(self.items_rev_key())
        current, rev = pipe.execute()
        return (current.decode() if current is not None else None), int(rev or 0)

    def item_filters(self) -> tuple[int, set[str], dict[str, str]]:
        """(revision, unavailable item ids, item id -> category), read in one transaction."""
        pipe = self.r.pipeline(transaction=True)
        pipe.get(self.items_rev_key())
        pipe.smembers(f"{self.ns}:items:unavailable")
        pipe.hgetall(f"{self.ns}:items:category")
        rev, unavailable, categories = pipe.execute()
        return (int(rev or 0), {x.decode() for x in unavailable},
                {k.decode(): v.decode() for k, v in categories.items()})
