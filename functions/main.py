"""HTTP functions (functions-framework): `recommend`, `events`, `health`, and `router`.

    functions-framework --source functions/main.py --target router --port 8080
    curl 'localhost:8080/recommend?user_id=42&k=10'

Each of `recommend`, `events` and `health` deploys as its own Cloud Function (gen2) or Cloud
Run service; `router` serves them all from one process by path (what `recsys serve` runs),
with `/admin/items`. Every target also answers `/metrics` (Prometheus) and `/openapi.json`.
Configuration comes from the environment once at import (functions/serving.Settings); the
current version's bundle loads at import too, so the first request finds it ready.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
import time
from json.encoder import encode_basestring_ascii as _quote

import flask
import redis

from functions import chain, metrics
from functions.openapi import document
from functions.params import BadRequest, event_batch, item_changes, query
from functions.serving import NoBundleError, Serving, Settings

log = logging.getLogger("recsys.functions")
# One JSON line per request on stdout, which Cloud Logging parses. This logger's level switches
# the lines on (INFO, the default) or off; they are written straight to stdout because a
# logging.LogRecord per request cost ~10% of a cached answer's throughput (docs/SERVING.md).
requests_log = logging.getLogger("recsys.requests")
if requests_log.level == logging.NOTSET:
    requests_log.setLevel(logging.INFO if os.environ.get("RECSYS_REQUEST_LOG", "1") != "0"
                          else logging.WARNING)

SETTINGS = Settings.from_env()
SERVING = Serving(SETTINGS)
try:
    SERVING.state()  # cold start: load the current bundle and its tower before any request
except (NoBundleError, redis.RedisError) as e:
    log.warning("no bundle loaded at start (%s); the first request retries", e)


_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def _json(body: dict, status: int = 200, headers: dict | None = None) -> flask.Response:
    return flask.Response(_encode(body), status=status, mimetype="application/json",
                          headers=headers)


def _error(status: int, message: str, headers: dict | None = None) -> flask.Response:
    return _json({"error": message}, status, headers)


def _key_ok(request: flask.Request, key: str | None) -> bool:
    given = request.headers.get("X-API-Key", "")
    return key is None or hmac.compare_digest(given.encode(), key.encode())


def _observed(path: str, handler, request: flask.Request) -> flask.Response:
    """Runs a handler; logs one JSON line and records its latency by source."""
    started = time.perf_counter()
    info: dict = {}
    common = _COMMON.get(request.environ.get("PATH_INFO"))
    if common is not None:  # a single-function deployment answers these paths too
        return common(request)
    try:
        response = handler(request, info)
    except BadRequest as e:
        response = _error(400, str(e))
    except Exception:
        log.exception("%s failed", path)
        response = _error(500, "internal error; see the server log")
    seconds = time.perf_counter() - started
    source = info.get("source", "-")
    metrics.REQUEST_SECONDS.observe(seconds, path, source)
    if requests_log.isEnabledFor(logging.INFO):
        status, extra = response.status_code, info.get("extra")
        method = _quote(request.environ.get("REQUEST_METHOD", "?"))[1:-1]
        sys.stdout.write(
            f'{{"severity":"{"INFO" if status < 500 else "ERROR"}",'
            f'"message":"{method} {path} {status}","path":"{path}","status":{status},'
            f'"source":"{source}","version":{_encode(info.get("version"))},'
            f'"latency_ms":{1000 * seconds:.3f}{"," + _encode(extra)[1:-1] if extra else ""}}}\n')
        sys.stdout.flush()
    return response


# recommend ------------------------------------------------------------------------------------
def _recommend(request: flask.Request, info: dict) -> flask.Response:
    if SETTINGS.recommend_requires_key and not _key_ok(request, SETTINGS.api_key):
        return _error(401, "missing or wrong X-API-Key header")
    q = query(request, SETTINGS.max_k)
    try:
        answer = chain.recommend(SERVING, q)
    except NoBundleError as e:
        return _error(503, str(e), {"Retry-After": "60"})
    except redis.RedisError:
        return _error(503, "Redis is unreachable and no bundle is loaded yet", {"Retry-After": "5"})
    rid = os.urandom(16).hex()
    info.update(source=answer.source, version=answer.version,
                extra={"recommendation_id": rid, "items": len(answer.items)})
    metrics.RECOMMENDATIONS.inc(answer.source)
    # Written out by hand: a third faster than json over a dict per item (docs/SERVING.md).
    items = ",".join([f'{{"item_id":{_quote(i)},"score":{"null" if s is None else f"{s:.4f}"}}}'
                      for i, s in answer.items])
    cursor = "null" if answer.next_cursor is None else f'"{answer.next_cursor}"'
    return flask.Response(
        f'{{"user_id":{_quote(q.user_id)},"model_version":{_quote(answer.version)},'
        f'"source":"{answer.source}","filled_by":{_encode(answer.filled_by)},'
        f'"recommendation_id":"{rid}","next_cursor":{cursor},"items":[{items}]}}',
        mimetype="application/json")


def recommend(request: flask.Request) -> flask.Response:
    """GET/POST user_id, k, filters, cursor (and events, features) -> ranked items."""
    return _observed("recommend", _recommend, request)


# events ---------------------------------------------------------------------------------------
def _events(request: flask.Request, info: dict) -> flask.Response:
    if not _key_ok(request, SETTINGS.api_key):
        return _error(401, "missing or wrong X-API-Key header")
    if request.method != "POST":
        return _error(405, 'use POST with a JSON body {"events": [...]}')
    valid, rejected = event_batch(request, SETTINGS.max_events)
    metrics.EVENTS.inc("rejected", amount=len(rejected))
    ids = []
    if valid:
        if not SERVING.redis_up():
            return _unavailable(len(valid))
        try:
            ids = SERVING.lists.append_events(valid, SETTINGS.history_len, SETTINGS.dedup_ttl)
        except redis.RedisError as e:
            SERVING.mark_down(e)
            return _unavailable(len(valid))
    stored = sum(i is not None for i in ids)
    metrics.EVENTS.inc("stored", amount=stored)
    metrics.EVENTS.inc("duplicate", amount=len(ids) - stored)
    info["extra"] = {"stored": stored, "rejected": len(rejected)}
    return _json({"stored": stored, "duplicates": len(ids) - stored, "rejected": rejected,
                  "event_ids": [e["event_id"] for e in valid]}, 400 if rejected else 200)


def _unavailable(n: int) -> flask.Response:
    metrics.EVENTS.inc("unavailable", amount=n)
    return _error(503, "event store unreachable; nothing was stored, send the batch again",
                  {"Retry-After": "5"})


def events(request: flask.Request) -> flask.Response:
    """POST {"events": [{user_id, item_id, event_type, timestamp, event_id}, ...]}."""
    return _observed("events", _events, request)


# health, admin, metrics, openapi ----------------------------------------------------------------
def _health(request: flask.Request, info: dict) -> flask.Response:
    try:
        loaded = SERVING.state()
    except NoBundleError as e:
        return _json({"status": "no_bundle", "error": str(e)}, 503, {"Retry-After": "60"})
    except redis.RedisError as e:
        return _json({"status": "degraded", "error": f"redis: {e}"}, 503, {"Retry-After": "5"})
    info["version"] = loaded.version
    up = SERVING.redis_up()
    return _json({"status": "ok" if up else "degraded", "redis": "ok" if up else "down",
                  "model_version": loaded.version, "items": len(loaded.bundle.item_ids),
                  "on_demand": loaded.on_demand})


def health(request: flask.Request) -> flask.Response:
    """The served version; 200 while answers are possible, 503 before the first bundle."""
    return _observed("health", _health, request)


def _admin_items(request: flask.Request, info: dict) -> flask.Response:
    if SETTINGS.admin_key is None:
        return _error(403, "admin calls are disabled: set RECSYS_ADMIN_KEY (or RECSYS_API_KEY)")
    if not _key_ok(request, SETTINGS.admin_key):
        return _error(401, "missing or wrong X-API-Key header")
    if request.method not in ("GET", "POST"):
        return _error(405, "use GET to read the item filters or POST to change them")
    changes = item_changes(request) if request.method == "POST" else None
    try:
        if changes is None:
            rev, unavailable, category = SERVING.lists.item_filters()
            return _json({"rev": rev, "unavailable": sorted(unavailable),
                          "categories": len(category)})
        return _json({"rev": SERVING.lists.set_items(**changes)})
    except redis.RedisError:
        return _error(503, "Redis is unreachable; nothing was read or changed",
                      {"Retry-After": "5"})


def admin_items(request: flask.Request) -> flask.Response:
    """GET the item filters; POST {"unavailable": [...], "available": [...], "categories": {}}."""
    return _observed("admin_items", _admin_items, request)


def metrics_page(request: flask.Request) -> flask.Response:
    return flask.Response(metrics.render(), mimetype="text/plain; version=0.0.4")


def openapi(request: flask.Request) -> flask.Response:
    return _json(document(SETTINGS.max_k, SETTINGS.max_events))


_COMMON = {"/metrics": metrics_page, "/openapi.json": openapi}
ROUTES = {"/recommend": recommend, "/events": events, "/health": health,
          "/admin/items": admin_items, **_COMMON}


def router(request: flask.Request) -> flask.Response:
    """Dispatches by path to the functions above (one server for all of them)."""
    handler = ROUTES.get(request.path.rstrip("/") or "/health")
    if handler is None:
        return _error(404, f"unknown path {request.path}; try one of {sorted(ROUTES)}")
    return handler(request)
