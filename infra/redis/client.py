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

from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import ClusterPipeline, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(url: str, **kwargs) -> redis.Redis | RedisCluster:
    """A client for `url`: RedisCluster for redis+cluster:// (rediss+cluster://), else
    redis.Redis; `kwargs` go to the client's from_url (socket_timeout, ...).

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
    return RedisCluster.from_url(urlunsplit(parts._replace(scheme=scheme, path="")), **kwargs)


def is_cluster(client) -> bool:
    """True for a RedisCluster client or one of its pipelines."""
    return isinstance(client, (RedisCluster, ClusterPipeline))


def is_cluster_url(url: str) -> bool:
    """True when `url` names a Redis Cluster (redis+cluster:// or rediss+cluster://)."""
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES
