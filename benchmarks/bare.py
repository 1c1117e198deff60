"""The benchmark's baseline: a functions-framework function that answers one Redis GET.

    RECSYS_BARE_PREFIX='recsys:v:<version>:u:' \
    functions-framework --source benchmarks/bare.py --target bare --port 8081
    curl 'localhost:8081/?user_id=42'

It runs under the same server (functions-framework's gunicorn, same WORKERS/THREADS) as the
real functions, so `benchmarks/serving.py` can tell what the recommend logic costs on top of
the framework, the network and Redis.
"""

from __future__ import annotations

import os

import flask
import redis

_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
_prefix = os.environ.get("RECSYS_BARE_PREFIX", "recsys:bare:")


def bare(request: flask.Request) -> flask.Response:
    """GET `<RECSYS_BARE_PREFIX><user_id>` and return the stored bytes as they are."""
    value = _client.get(_prefix + request.args.get("user_id", ""))
    return flask.Response(value or b"", status=200 if value is not None else 404,
                          mimetype="application/octet-stream")
