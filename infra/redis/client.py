"""One way to open Redis for every store: a single server or a Redis Cluster, from the URL.

    redis://HOST:PORT[/DB]           one server (redis.Redis), as before
    rediss://HOST:PORT[/DB]          the same over TLS
    redis+cluster://HOST:PORT        a Redis Cluster (redis.cluster.RedisCluster): HOST:PORT is
    rediss+cluster://HOST:PORT       any node, the client discovers the others; db 0 only

The scheme, not a flag, says which: one REDIS_URL (or --redis_url) carries everything, so a
deployment points every part (functions, nightly, CLI) at a cluster by changing one value.
Keys are laid out for the client they are used with (keys.Keys: `cluster=`), see keys.py.
"""

from __future__ import annotations

import functools
import threading
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.exceptions import RedisClusterException

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(url: str, **kwargs) -> redis.Redis | LazyCluster:
    """A client for `url`: a RedisCluster (LazyCluster: made on first use) for
    redis+cluster:// (rediss+cluster://), else redis.Redis; `kwargs` go to the client's
    from_url (socket_timeout, ...).

    Raises:
        ValueError: a cluster URL naming a database other than 0 (a cluster has only db 0).
    """
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        return redis.Redis.from_url(url, **kwargs)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"REDIS_URL {parts.scheme}://{parts.hostname}:{parts.port}"
                         f"{parts.path}: a Redis Cluster has only database 0; drop the "
                         f"/{parts.path.strip('/')}")
    return LazyCluster(urlunsplit(parts._replace(scheme=scheme, path="")), **kwargs)


class LazyCluster:
    """A RedisCluster made on first use, whose errors are all redis.RedisError.

    RedisCluster reaches a node as it is made and raises RedisClusterException (not a
    RedisError) when none answers; made lazily, a function instance starts while the cluster
    is down and answers from what it has (as with one server, whose client connects on first
    use), and every call's RedisClusterException becomes a redis.ConnectionError, which the
    callers already handle. Attributes and methods are the RedisCluster's.
    """

    def __init__(self, url: str, **kwargs):
        self._url, self._kwargs = url, kwargs
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster_client(self) -> RedisCluster:
        """The RedisCluster (made now if need be).

        Raises:
            redis.ConnectionError: no node of the cluster answers.
        """
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = RedisCluster.from_url(self._url, **self._kwargs)
                    except RedisClusterException as e:
                        raise redis.ConnectionError(f"Redis Cluster unreachable: {e}") from e
        return self._client

    def register_script(self, script) -> Script:
        return Script(self, script)  # loaded on its first call

    def get_encoder(self) -> Encoder:
        return Encoder(self._kwargs.get("encoding", "utf-8"),
                       self._kwargs.get("encoding_errors", "strict"),
                       self._kwargs.get("decode_responses", False))

    def __getattr__(self, name):
        attr = getattr(self.cluster_client(), name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                out = attr(*args, **kwargs)
            except RedisClusterException as e:
                raise redis.ConnectionError(f"Redis Cluster: {e}") from e
            return _Pipeline(out) if isinstance(out, ClusterPipeline) else out

        return call


class _Pipeline:
    """A ClusterPipeline whose execute raises redis.ConnectionError for RedisClusterException
    (as LazyCluster's calls do); everything else is the pipeline's."""

    def __init__(self, pipe: ClusterPipeline):
        self._pipe = pipe

    def execute(self, *args, **kwargs):
        try:
            return self._pipe.execute(*args, **kwargs)
        except RedisClusterException as e:
            raise redis.ConnectionError(f"Redis Cluster: {e}") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pipe.reset()

    def __getattr__(self, name):
        return getattr(self._pipe, name)


def is_cluster(client) -> bool:
    """True for a Redis Cluster client (LazyCluster, RedisCluster) or one of its pipelines."""
    return isinstance(client, (LazyCluster, RedisCluster, ClusterPipeline, _Pipeline))


def is_cluster_url(url: str) -> bool:
    """True when `url` names a Redis Cluster (redis+cluster:// or rediss+cluster://)."""
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES
