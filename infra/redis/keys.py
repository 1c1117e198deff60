"""The Redis key layout of one namespace, in one place, and the base of the stores over it.

Key layout (NS = namespace, "recsys" by default; see docs/ARCHITECTURE.md):
  NS:current             string: the version being served (one SET flips it)      lists.py
  NS:versions            sorted set: published version -> publish time            lists.py
  NS:started             set: versions that started writing and never flipped;    lists.py
                         joined before a version's first key (mark_started),
                         left by the flip or once drop_unpublished deleted its keys
  NS:v:VER:shards        hash: shard id -> users written (checked by the flip)     lists.py
  NS:v:VER:u:USER        string: the user's top-K list (codec.py: K int32 item     lists.py
                         indices, then K float16 scores)
  NS:v:VER:meta          string: JSON summary of the nightly run (bundle, users…)  builds.py
  NS:v:VER:built         string: per user of the bundle's user_ids.json, uint32    builds.py
                         build time of the list (epoch s) + uint64 fingerprint
  NS:v:VER:i:ITEM        string: the item's neighbours (/similar; codec.py, as a   similar.py
                         user's list: indices into the version's item_ids.json)
  NS:v:VER:similar       hash: shard id -> items whose neighbours it wrote         similar.py
                         (checked by the flip with the users' shards)
  NS:trend:T             sorted set: item id -> summed event weights of the        trending.py
                         events stored in the 5-minute bucket T (epoch s // 300),
                         expiring once no window reads it
  NS:trend:sum           sorted set, only inside the read script: a window's sum   trending.py
  NS:events              stream of ingested events (consumer group `nightly`       event_stream.py
                         drains it into the artifact store: infra/events_log.py)
  NS:eid:EVENT_ID        string with a TTL: the event id was ingested; a resent    event_stream.py
                         event is skipped
  NS:hist:USER           list: the user's most recent item ids, newest first       event_stream.py
  NS:items:unavailable   set of item ids that must not be recommended             item_filters.py
  NS:items:category      hash: item id -> its categories, `|`-separated (for the  item_filters.py
                         category filter)
  NS:items:rev           counter bumped by every change of the two above           item_filters.py
  NS:exp:defs            hash: experiment name -> JSON record (definition, state,  experiments.py
                         draft/running/stopped, timestamps)
  NS:exp:running         hash: name -> JSON definition of each running experiment  experiments.py
                         (what the functions read, one HGETALL; at most one runs)
  NS:impressions         stream of served answers (recommendation id, user, arm,   impressions.py
                         version, items…), drained like NS:events into Parquet
  NS:drain:lock          string with a TTL: a drain of NS:events or NS:impressions  stream_log.py
                         is running (redis-py Lock; drains take turns)

In a Redis Cluster (client.py: a redis+cluster:// URL) the same keys carry hash tags, so every
script and transaction touches one slot: each `NS:` above that is not per user becomes `{NS}:`
(the pointer, versions, started record, a version's shards/meta/built, experiments, item filters,
impressions, drain lock: one slot, so the flip, rollback, expiry and promote stay single
atomic steps), and each per-user key becomes `{NS:J}:` with J the hash tag of the user's bucket
(BUCKETS of them, spread evenly over the slots): `{NS:J}:v:VER:u:USER`, `{NS:J}:hist:USER`,
`{NS:J}:eid:EVENT_ID` (the bucket of the event's user), one event stream per bucket,
`{NS:J}:events`, and one trending counter per bucket and 5 minutes, `{NS:J}:trend:T` (the
events script writes it in the slot of its other keys; a read sums every bucket's); an item's
neighbours go to the bucket of the item id, `{NS:J}:v:VER:i:ITEM`. So a user's lists of every
version share a slot (COPY carries them over), an event's dedup key, history, stream shard and
trending counter share one (its script stays all-or-nothing), and users spread over the
cluster. One server keeps the names above: an existing deployment moves
to a cluster by a fresh nightly publish there (lists and filters are rebuilt from the artifact
store); drain the events first.

A version (VER) matches VERSION_RE: letters, digits, `.`, `_`, `-`, so no key separator and
no glob character can come with it. Key patterns are built only from the namespace and a
checked version, escaped all the same (Keys.version_patterns); never from a user, item or
event id.
"""

from __future__ import annotations

import re
import zlib

import redis
from redis.crc import key_slot

from infra.redis.client import connect, is_cluster
from models.rows import VERSION_RE  # one rule, also for experiments' arms (models/experiments/)

_GLOB = re.compile(r"([*?\[\]\\])")


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


BUCKETS = 64  # slots a cluster spreads each namespace's per-user keys and event streams over


def bucket_of(user_id: str, buckets: int = BUCKETS) -> int:
    """The bucket of a user (CRC-32 of the UTF-8 id): their lists, history, event dedup keys
    and event stream shard share it, so each event's script and each read touch one slot."""
    return zlib.crc32(str(user_id).encode("utf-8", "surrogatepass")) % buckets


def _bucket_tags(namespace: str, buckets: int) -> list[str]:
    """A hash tag per bucket, `NS:J`, J chosen so bucket i's slot is in the i-th of `buckets`
    equal slot ranges: nodes holding equal slot ranges (as `redis-cli --cluster create` and
    rebalancing make them) hold equal numbers of buckets."""
    tags: list[str | None] = [None] * buckets
    j, left = 0, buckets
    while left:
        tag = f"{namespace}:{j}"
        i = key_slot(tag.encode()) * buckets // 16384
        if tags[i] is None:
            tags[i], left = tag, left - 1
        j += 1
    return tags  # type: ignore[return-value]


class Keys:
    """The key names of one namespace (the table above); ids go in as they are.

    With `cluster=True` the names carry hash tags (docs/ARCHITECTURE.md, "Redis key layout"):
    the namespace's shared keys `{NS}:...` in one slot (the pointer, versions, started record,
    shard counts, summaries, experiments, item filters, impressions), and every per-user key
    `{NS:J}:...` in its user's bucket (lists of every version, history, event dedup keys, the
    bucket's event stream). Single-server names are unchanged.
    """

    def __init__(self, namespace: str = "recsys", cluster: bool = False,
                 buckets: int = BUCKETS):
        if cluster and ("{" in namespace or "}" in namespace):
            raise ValueError(f"namespace {namespace!r}: no '{{' or '}}' in a Redis Cluster "
                             "namespace (they would change its hash tags)")
        self.namespace, self.cluster = namespace, cluster
        self.buckets = buckets if cluster else 1
        ns = f"{{{namespace}}}" if cluster else namespace
        self.shared = ns
        self.current = f"{ns}:current"
        self.versions = f"{ns}:versions"
        self.started = f"{ns}:started"
        self.items_unavailable = f"{ns}:items:unavailable"
        self.items_category = f"{ns}:items:category"
        self.items_rev = f"{ns}:items:rev"
        self.experiments = f"{ns}:exp:defs"
        self.experiments_running = f"{ns}:exp:running"
        self.impressions = f"{ns}:impressions"
        self.drain_lock = f"{ns}:drain:lock"
        self._tags = ([f"{{{t}}}" for t in _bucket_tags(namespace, buckets)] if cluster
                      else [namespace])
        # The event streams, one per bucket (a single NS:events on one server).
        self.event_streams = [f"{t}:events" for t in self._tags]
        self.events = self.event_streams[0]

    def _user_prefix(self, user_id: str) -> str:
        return self._tags[bucket_of(user_id, self.buckets)] if self.cluster else self.namespace

    def bucket(self, user_id: str) -> int:
        """The bucket (index into event_streams) of `user_id`; 0 on one server."""
        return bucket_of(user_id, self.buckets) if self.cluster else 0

    def version(self, version: str) -> str:
        """The prefix of the version's shared keys: NS:v:VER ({NS}:v:VER in a cluster)."""
        return f"{self.shared}:v:{version}"

    def version_patterns(self, version: str) -> list[str]:
        """SCAN patterns matching every key of `version` (checked, escaped); in a cluster
        they may match more, so keep only keys for which `is_version_key` holds."""
        check_version(version)
        if not self.cluster:
            return [glob_escape(f"{self.version(version)}:") + "*"]
        ns = glob_escape(self.namespace)
        return [glob_escape(f"{self.version(version)}:") + "*",
                f"\\{{{ns}:*\\}}:v:{glob_escape(version)}:*"]

    def is_version_key(self, key: bytes, version: str) -> bool:
        """True if `key` (as SCAN returns it) is a key of `version` in this namespace."""
        text = key.decode("utf-8", "surrogateescape")
        return any(text.startswith(f"{t}:v:{version}:") for t in
                   ([self.shared, *self._tags] if self.cluster else [self.namespace]))

    def shards(self, version: str) -> str:
        return f"{self.shared}:v:{version}:shards"

    def user(self, version: str, user_id: str) -> str:
        """The key of a user's list in `version`."""
        return f"{self._user_prefix(user_id)}:v:{version}:u:{user_id}"

    def meta(self, version: str) -> str:
        return f"{self.shared}:v:{version}:meta"

    def built(self, version: str) -> str:
        return f"{self.shared}:v:{version}:built"

    def similar(self, version: str, item_id: str) -> str:
        """The key of an item's neighbours in `version` (in the bucket of the item id)."""
        return f"{self._user_prefix(item_id)}:v:{version}:i:{item_id}"

    def similar_shards(self, version: str) -> str:
        """The hash of the items each shard of neighbours wrote (checked by the flip)."""
        return f"{self.shared}:v:{version}:similar"

    def trend(self, user_id: str, bucket: int) -> str:
        """The trending counter of time bucket `bucket` in the slot of `user_id`'s events."""
        return f"{self._user_prefix(user_id)}:trend:{int(bucket)}"

    def trend_parts(self, buckets) -> list[list[str]]:
        """The trending counters of the time buckets `buckets`, one list per hash slot
        (every user bucket's in a cluster; one list on one server)."""
        return [[f"{t}:trend:{int(b)}" for b in buckets] for t in self._tags]

    def trend_sums(self) -> list[str]:
        """The scratch key a window's sum goes through, one per hash slot of trend_parts."""
        return [f"{t}:trend:sum" for t in self._tags]

    def hist(self, user_id: str) -> str:
        """The key of a user's recent history (a Redis list)."""
        return f"{self._user_prefix(user_id)}:hist:{user_id}"

    def event_id(self, user_id: str, event_id: str) -> str:
        """The dedup key of an event id (in the bucket of the event's user in a cluster)."""
        return f"{self._user_prefix(user_id)}:eid:{event_id}"


class Namespaced:
    """A Redis client and the keys of one namespace: what every store here is built on.

    Stores of one namespace may share a client (and so its connection pool):
    `EventStream(lists.r, lists.keys.namespace)`. The client may be a redis.Redis or a
    RedisCluster (client.connect picks one from the URL); the keys follow it.
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        self.r, self.keys = client, Keys(namespace, cluster=is_cluster(client))

    @classmethod
    def from_url(cls, url: str, namespace: str = "recsys", **kwargs):
        """A store on a new client for `url` (client.connect: redis:// or redis+cluster://);
        `kwargs` go to the client's from_url."""
        return cls(connect(url, **kwargs), namespace)


def mark_started(client: redis.Redis, keys: Keys, version: str) -> None:
    """Records `version` in NS:started: every writer of a version's keys calls this before
    its first key, so drop_unpublished finds a run that failed at any point.

    Raises:
        ValueError: a malformed version, before anything is written.
    """
    client.sadd(keys.started, check_version(version))
