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

A version (VER) matches VERSION_RE: letters, digits, `.`, `_`, `-`, so no key separator and
no glob character can come with it. Key patterns are built only from the namespace and a
checked version, escaped all the same (Keys.version_pattern); never from a user, item or
event id.
"""

from __future__ import annotations

import re

import redis

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


class Keys:
    """The key names of one namespace (the table above); ids go in as they are."""

    def __init__(self, namespace: str = "recsys"):
        ns = self.namespace = namespace
        self.current = f"{ns}:current"
        self.versions = f"{ns}:versions"
        self.started = f"{ns}:started"
        self.events = f"{ns}:events"
        self.items_unavailable = f"{ns}:items:unavailable"
        self.items_category = f"{ns}:items:category"
        self.items_rev = f"{ns}:items:rev"
        self.experiments = f"{ns}:exp:defs"
        self.experiments_running = f"{ns}:exp:running"
        self.impressions = f"{ns}:impressions"
        self.drain_lock = f"{ns}:drain:lock"

    def version(self, version: str) -> str:
        """The prefix of every key of `version`: NS:v:VER."""
        return f"{self.namespace}:v:{version}"

    def version_pattern(self, version: str) -> str:
        """A SCAN pattern matching every key of `version` and nothing else (checked, escaped)."""
        return glob_escape(f"{self.version(check_version(version))}:") + "*"

    def shards(self, version: str) -> str:
        return f"{self.namespace}:v:{version}:shards"

    def user(self, version: str, user_id: str) -> str:
        """The key of a user's list in `version`."""
        return f"{self.namespace}:v:{version}:u:{user_id}"

    def meta(self, version: str) -> str:
        return f"{self.namespace}:v:{version}:meta"

    def built(self, version: str) -> str:
        return f"{self.namespace}:v:{version}:built"

    def hist(self, user_id: str) -> str:
        """The key of a user's recent history (a Redis list)."""
        return f"{self.namespace}:hist:{user_id}"


class Namespaced:
    """A Redis client and the keys of one namespace: what every store here is built on.

    Stores of one namespace may share a client (and so its connection pool):
    `EventStream(lists.r, lists.keys.namespace)`.
    """

    def __init__(self, client: redis.Redis, namespace: str = "recsys"):
        self.r, self.keys = client, Keys(namespace)

    @classmethod
    def from_url(cls, url: str, namespace: str = "recsys", **kwargs):
        """A store on a new client for `url`; `kwargs` go to redis.Redis.from_url."""
        return cls(redis.Redis.from_url(url, **kwargs), namespace)


def mark_started(client: redis.Redis, keys: Keys, version: str) -> None:
    """Records `version` in NS:started: every writer of a version's keys calls this before
    its first key, so drop_unpublished finds a run that failed at any point.

    Raises:
        ValueError: a malformed version, before anything is written.
    """
    client.sadd(keys.started, check_version(version))
