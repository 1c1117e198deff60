"""Served lists: each user's top-K under a version, and the NS:current pointer that picks one.

The nightly job writes a new version's lists (write_shard from its shards, copy_lists for the
lists it carries over), then flips the pointer in one Lua step that first checks every shard
wrote (flip); it expires old versions (expire_old) and, at its start, deletes the keys of
versions that failed before their flip (drop_unpublished). The functions read the pointer
(current_and_rev; serving_state adds the running experiment and the published versions) and a
user's list with their recent history (read_user). Keys: keys.py.
expire_old keeps `current` and every version a running experiment serves (in_use).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import numpy as np
import redis

from infra.redis.codec import decode_list, encode_lists, remap_lists
from infra.redis.keys import VERSION_RE, Namespaced, check_version, mark_started

log = logging.getLogger(__name__)

# Flip only if the shards' counts add up to the expected number of users (and, with KEYS[5],
# the similar-items shards' to ARGV[5] items: -2 - their count otherwise); a flipped version
# leaves the started record (KEYS[4]) in the same step. ARGV[4] = "0" publishes without moving
# the pointer (a canary: an experiment serves the version to some users).
_FLIP = """
local total = 0
local vals = redis.call('HVALS', KEYS[2])
for _, v in ipairs(vals) do total = total + tonumber(v) end
if total ~= tonumber(ARGV[2]) then return total end
if #KEYS == 5 then
  local items = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[5])) do items = items + tonumber(v) end
  if items ~= tonumber(ARGV[5]) then return -2 - items end
end
if ARGV[4] == '1' then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
return -1
"""

# Copies the users' list keys KEYS[2..n+1] to KEYS[n+2..2n+1] and records the count in the
# shards hash KEYS[1] (field ARGV[1]) in the same atomic step; returns 1/0 (source missing)
# per key.
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


class ServedLists(Namespaced):
    """Versioned per-user lists and the pointer to the version served.

    Contract: a reader that reads `current`, then that version's keys, sees the whole of one
    published version; the pointer moves only to a version whose shards wrote every user;
    every version that started writing is either published or deleted by the next
    drop_unpublished; versions never share keys, so rollback serves the old bytes.
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        super().__init__(client, namespace)
        self._flip = self.r.register_script(_FLIP)
        self._copy = self.r.register_script(_COPY)
        self._local = threading.local()  # read_user's connections of each thread

    # Writing a version ----------------------------------------------------------------------
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
        mark_started(self.r, self.keys, version)
        values = encode_lists(items, scores)
        for lo in range(0, len(values), batch):
            self._mset({self.keys.user(version, str(u)): v for u, v in
                        zip(user_ids[lo:lo + batch], values[lo:lo + batch], strict=True)})
        # Recorded last: a shard counts only once all its lists are in Redis.
        self.r.hset(self.keys.shards(version), shard, len(user_ids))
        return len(user_ids)

    def copy_lists(self, src: str, dst: str, shard: str, user_ids,
                   item_map: np.ndarray | None = None, batch: int = 1000) -> np.ndarray:
        """Copies users' lists from version `src` to `dst` inside Redis, `batch` per round trip.

        Each batch's lists and its count (field `<shard>:<n>` of dst's shards hash) are written
        in one atomic step, so the flip's check covers copied users as it covers computed ones
        and `drop_unpublished` finds every copy of a failed run. In a Redis Cluster the count
        is written once the batch's lists are in (as write_shard's): the lists live in their
        users' slots, the count in the pointer's.

        Args:
            user_ids: [n] user ids.
            item_map: None when both versions index items alike: `COPY` moves the bytes
                unchanged; else [src items] new index of each src item (codec.remap_lists),
                and the lists go out by `MGET`, remap, `MSET`.

        Returns:
            [n] bool: False where src had no list for the user (nothing written for them).
        """
        check_version(src)
        mark_started(self.r, self.keys, dst)
        shards, copied = self.keys.shards(dst), np.zeros(len(user_ids), bool)
        for n, lo in enumerate(range(0, len(user_ids), batch)):
            users = [str(u) for u in user_ids[lo:lo + batch]]
            src_keys = [self.keys.user(src, u) for u in users]
            dst_keys = [self.keys.user(dst, u) for u in users]
            if item_map is None and self.keys.cluster:
                # Each user's lists share their bucket's slot: COPYs grouped per node by the
                # cluster pipeline, then the count (in the pointer's slot), as write_shard.
                pipe = self.r.pipeline(transaction=False)
                for s, d in zip(src_keys, dst_keys, strict=True):
                    pipe.copy(s, d, replace=True)
                done = np.array(pipe.execute(), bool)
                self.r.hset(shards, f"{shard}:{n}", int(done.sum()))
            elif item_map is None:  # COPY in a script: ~1.3x a pipeline of COPYs, and atomic
                done = np.array(self._copy(keys=[shards, *src_keys, *dst_keys],
                                           args=[f"{shard}:{n}"]), bool)
            elif self.keys.cluster:
                values = self.r.mget_nonatomic(src_keys)
                done = np.array([v is not None for v in values], bool)
                if done.any():
                    self._mset(dict(zip([k for k, ok in zip(dst_keys, done, strict=True) if ok],
                                        remap_lists([v for v in values if v is not None],
                                                    item_map), strict=True)))
                self.r.hset(shards, f"{shard}:{n}", int(done.sum()))
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

    def _mset(self, mapping: dict) -> None:
        """MSET, split per slot and grouped per node in a cluster (mset_nonatomic)."""
        if self.keys.cluster:
            self.r.mset_nonatomic(mapping)
        else:
            self.r.mset(mapping)

    # The pointer ----------------------------------------------------------------------------
    def flip(self, version: str, expected_users: int, move_current: bool = True,
             expected_similar: int | None = None) -> None:
        """Points `current` at `version` if its shards wrote `expected_users`; raises otherwise.

        One Lua step: the count check, `SET current`, `ZADD versions` and the version's exit
        from the started record. Write the run's summary (BuildRecords.put_summary) first.
        With `move_current=False` the version is published (checked, in NS:versions, out of
        NS:started) but `current` stays: an experiment serves it to its share of users (a
        canary), and `recsys rollback` or Experiments.promote can point `current` at it later.
        With `expected_similar` the same step also checks that the items' neighbours
        (infra/redis/similar.py) were written for that many items.
        """
        keys = [self.keys.current, self.keys.shards(check_version(version)),
                self.keys.versions, self.keys.started]
        args = [version, expected_users, time.time(), "1" if move_current else "0"]
        if expected_similar is not None:  # the items' neighbours publish in the same step
            keys, args = keys + [self.keys.similar_shards(version)], args + [expected_similar]
        written = self._flip(keys=keys, args=args)
        if written is not None and written <= -2:
            raise RuntimeError(f"version {version}: similar-items shards wrote {-2 - written} "
                               f"items, expected {expected_similar}; the pointer was not moved")
        if written != -1:
            raise RuntimeError(f"version {version}: shards wrote {written} users, expected "
                               f"{expected_users}; the pointer was not moved")

    def rollback(self, version: str) -> None:
        """Points `current` back at an earlier published version; ValueError otherwise."""
        check_version(version)
        if self.r.zscore(self.keys.versions, version) is None:
            raise ValueError(f"version {version} was never published; see `recsys versions`")
        self.r.set(self.keys.current, version)

    def current(self) -> str | None:
        """The version served, None before the first flip."""
        v = self.r.get(self.keys.current)
        return v.decode() if v is not None else None

    def versions(self) -> list[str]:
        """The published versions, oldest first."""
        return [v.decode() for v in self.r.zrange(self.keys.versions, 0, -1)]

    # Reading --------------------------------------------------------------------------------
    def current_and_rev(self) -> tuple[str | None, int]:
        """The `current` pointer and the item filters' revision (item_filters.py), in one
        round trip: what a function checks to know whether to reload anything."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.keys.current)
        pipe.get(self.keys.items_rev)
        current, rev = pipe.execute()
        return (current.decode() if current is not None else None), int(rev or 0)

    def serving_state(self) -> tuple[str | None, int, dict[str, bytes], set[str]]:
        """What a function instance checks every few seconds, in one round trip: the `current`
        pointer, the item filters' revision, the running experiments (NS:exp:running, name ->
        JSON definition as stored by infra/redis/experiments.py, parsed by the caller) and the
        published versions (NS:versions: an arm whose version left it was expired)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.keys.current)
        pipe.get(self.keys.items_rev)
        pipe.hgetall(self.keys.experiments_running)
        pipe.zrange(self.keys.versions, 0, -1)
        current, rev, running, published = pipe.execute()
        return ((current.decode() if current is not None else None), int(rev or 0),
                {k.decode(): v for k, v in running.items()}, {v.decode() for v in published})

    def get_list(self, version: str, user_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's list in `version` as ([k] int32 items, [k] float32 scores), or None."""
        raw = self.r.get(self.keys.user(version, user_id))
        return decode_list(raw) if raw is not None else None

    def read_user(self, version: str, user_id: str, n: int = 50) -> tuple[bytes | None, list]:
        """The user's list in `version` (encoded, codec.py) and their `n` most recent items
        (newest first, bytes; event_stream.py writes them).

        The serving hot path: both commands go out in one write and come back in one round
        trip, on a connection this thread keeps for itself (same settings as the client's
        pool). That skips the pool's lock, bookkeeping and per-checkout readiness poll, a
        third of the call's time (benchmarks/serving.py); a connection that fails is
        dropped and the next call opens a new one. In a Redis Cluster the two keys share the
        user's slot: the thread keeps a connection per node and sends both to the slot's
        node (a seventh of a cluster pipeline's CPU); an error (MOVED after a resharding, a
        node gone) goes through the cluster client's pipeline, which follows the cluster.
        """
        user_key, hist_key = self.keys.user(version, user_id), self.keys.hist(user_id)
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conns, local.pid = {}, os.getpid()
        if self.keys.cluster:  # both keys in the user's bucket: one node, one round trip
            try:
                node = self.r.get_node_from_key(user_key)
                return self._send(local, node.name, node.redis_connection.connection_pool,
                                  user_key, hist_key, n)
            except (redis.ResponseError, redis.ConnectionError):  # MOVED, a node gone: the
                # cluster client's pipeline follows the cluster (a timeout is not retried)
                pipe = self.r.pipeline(transaction=False)
                pipe.get(user_key)
                pipe.lrange(hist_key, 0, n - 1)
                raw, hist = pipe.execute()
                return raw, hist
        return self._send(local, None, self.r.connection_pool, user_key, hist_key, n)

    @staticmethod
    def _send(local, name, pool, user_key: str, hist_key: str, n: int) -> tuple:
        """GET + LRANGE in one write on this thread's own connection to `pool`'s server."""
        conn = local.conns.get(name)
        if conn is None:
            conn = local.conns[name] = pool.connection_class(**pool.connection_kwargs)
        try:
            conn.send_packed_command(conn.pack_commands([
                ("GET", user_key), ("LRANGE", hist_key, 0, n - 1)]))
            return conn.read_response(), conn.read_response()
        except BaseException:
            del local.conns[name]  # a reply may be left unread: never reuse this connection
            conn.disconnect()
            raise

    # Deleting versions ----------------------------------------------------------------------
    def _unlink_version(self, version: str) -> int:
        """Deletes every key of a checked version (NS:v:VER:*); returns how many."""
        deleted, batch = 0, []
        for pattern in self.keys.version_patterns(version):  # on every primary of a cluster
            for key in self.r.scan_iter(pattern, count=10_000):
                if not self.keys.is_version_key(key, version):
                    continue  # a cluster pattern matched another key: leave it
                batch.append(key)
                if len(batch) == 1000:
                    deleted += self.r.unlink(*batch)  # split per slot in a cluster
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
        for version in sorted(v.decode() for v in self.r.smembers(self.keys.started)):
            if version in published or version == current:
                self.r.srem(self.keys.started, version)  # flipped: not a failed run
                continue
            if not VERSION_RE.fullmatch(version):  # not written by these stores: leave its keys
                log.warning("started record holds a malformed version %r; removed from the "
                            "record, its keys (if any) are left alone", version)
                self.r.srem(self.keys.started, version)
                continue
            self._unlink_version(version)
            self.r.srem(self.keys.started, version)
            dropped.append(version)
        return dropped

    def expire_old(self, keep: int) -> list[str]:
        """Deletes the keys of published versions beyond the newest `keep`, except `current`
        and the versions a running experiment serves (`in_use`), so that neither stopping nor
        rolling back an experiment leaves a user without a list.

        Each version leaves NS:versions and joins NS:started in one transaction that watches
        the pointer and the running experiments, before any key goes: from then on no
        experiment can start on it nor `recsys rollback` point at it, and a deletion cut short
        is finished by the next drop_unpublished.
        """
        dropped = []
        for version in self.versions()[:-keep] if keep > 0 else []:
            if not VERSION_RE.fullmatch(version):
                log.warning("NS:versions holds a malformed version %r; not expired (remove "
                            "it by hand: its keys cannot be matched safely)", version)
                continue
            if self._retire(version):
                self._unlink_version(version)
                self.r.srem(self.keys.started, version)
                dropped.append(version)
        return dropped

    def in_use(self, client=None) -> set[str] | None:
        """`current` and every version named by an arm of a running experiment (NS:exp:running);
        None if a running definition cannot be read (then nothing may be expired)."""
        client = client or self.r
        current = client.get(self.keys.current)
        used = {current.decode()} if current is not None else set()
        for name, raw in client.hgetall(self.keys.experiments_running).items():
            try:
                used.update(arm["version"] for arm in json.loads(raw)["arms"])
            except (ValueError, KeyError, TypeError):
                log.warning("running experiment %r has an unreadable definition; no version is "
                            "expired while it runs", name)
                return None
        return used

    def _retire(self, version: str) -> bool:
        """Moves a version not in use from NS:versions to NS:started (one transaction);
        False if it is in use (kept)."""

        def change(pipe: redis.client.Pipeline) -> bool:
            used = self.in_use(pipe)
            if used is None or version in used:
                return False
            pipe.multi()
            pipe.zrem(self.keys.versions, version)
            pipe.sadd(self.keys.started, version)
            return True

        return self.r.transaction(change, self.keys.current, self.keys.experiments_running,
                                  self.keys.versions, value_from_callable=True)
