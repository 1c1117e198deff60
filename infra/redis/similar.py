"""Each item's neighbours under a version: what the nightly precomputes for /similar.

The nightly writes the neighbours of every item of the version's bundle (`write_shard`, each
shard's count recorded last in NS:v:VER:similar), before the flip; the flip checks that count
with the users' in the same Lua step (lists.ServedLists.flip, `expected_similar`), so users'
lists and items' neighbours of one version are published together or not at all, and expire
and are dropped with the version (they are keys of NS:v:VER:). The functions read one item's
neighbours in one round trip (`read`). Keys: keys.py; the bytes: codec.py (indices into the
version's item_ids.json, float16 scores).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import redis

from infra.redis.codec import encode_lists
from infra.redis.keys import Namespaced, check_version, mark_started


class SimilarLists(Namespaced):
    """Versioned per-item neighbour lists.

    Contract: a shard's count is recorded only once all its lists are in Redis, so the flip's
    check (`expected_similar`) publishes a version only with every item's neighbours; writing a
    shard again is idempotent; `read` returns what `write_shard` wrote (None: no list).
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        super().__init__(client, namespace)
        self._local = threading.local()  # read's connections of each thread

    def write_shard(self, version: str, shard: str, item_ids, idx: np.ndarray,
                    scores: np.ndarray, batch: int = 1000) -> int:
        """Writes the neighbours of `item_ids`, then records the shard's count.

        Args:
            item_ids: [n] item ids.
            idx: [n, k] neighbour indices (-1 = none).
            scores: [n, k] scores.

        Returns:
            Items written.
        """
        check_version(version)
        mark_started(self.r, self.keys, version)
        values = encode_lists(np.asarray(idx), np.asarray(scores))
        for lo in range(0, len(values), batch):
            mapping = {self.keys.similar(version, str(i)): v for i, v in
                       zip(item_ids[lo:lo + batch], values[lo:lo + batch], strict=True)}
            if self.keys.cluster:
                self.r.mset_nonatomic(mapping)
            else:
                self.r.mset(mapping)
        self.r.hset(self.keys.similar_shards(version), shard, len(item_ids))
        return len(item_ids)

    def count(self, version: str) -> int:
        """Items whose neighbours the shards of `version` recorded."""
        return sum(int(v) for v in self.r.hvals(self.keys.similar_shards(check_version(version))))

    def read(self, version: str, item_id: str) -> bytes | None:
        """The item's neighbours in `version` (codec.py bytes), or None.

        The serving hot path: one GET on a connection this thread keeps for itself (as
        lists.ServedLists.read_user, and for the same reason: the pool's checkout was a third
        of the call); in a Redis Cluster, on the node of the key's slot, falling back to the
        cluster client after an error (MOVED, a node gone).
        """
        key = self.keys.similar(version, item_id)
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conns, local.pid = {}, os.getpid()
        if self.keys.cluster:
            try:
                node = self.r.get_node_from_key(key)
                return self._get(local, node.name, node.redis_connection.connection_pool, key)
            except (redis.ResponseError, redis.ConnectionError):
                return self.r.get(key)
        return self._get(local, None, self.r.connection_pool, key)

    @staticmethod
    def _get(local, name, pool, key: str) -> bytes | None:
        conn = local.conns.get(name)
        if conn is None:
            conn = local.conns[name] = pool.connection_class(**pool.connection_kwargs)
        try:
            conn.send_command("GET", key)
            return conn.read_response()
        except BaseException:
            del local.conns[name]  # a reply may be left unread: never reuse this connection
            conn.disconnect()
            raise
