"""HTTP functions (functions-framework): `recommend`, `events`, `health`, and `router`.

    functions-framework --source functions/main.py --target router --port 8080
    curl 'localhost:8080/recommend?user_id=42&k=10'

Each of `recommend`, `events` and `health` deploys as its own Cloud Function; `router`
serves all three from one process by path (what `recsys serve` runs).
Configuration comes from the environment once at import (see Settings).
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import flask
import redis

from functions.serving import NoBundleError, Serving, Settings
from models.schema import validate_interaction

log = logging.getLogger("recsys.functions")
SETTINGS = Settings.from_env()
_serving: Serving | None = None


def serving() -> Serving:
    global _serving
    if _serving is None:
        _serving = Serving(SETTINGS)
    return _serving


def _json(body: dict, status: int = 200, headers: dict | None = None) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json",
                          headers=headers)


def _error(status: int, message: str, **extra) -> flask.Response:
    return _json({"error": message, **extra}, status)


def _params(request: flask.Request) -> dict:
    params = dict(request.args)
    if request.method == "POST":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValueError("POST body must be a JSON object")
        params.update(body)
    return params


def recommend(request: flask.Request) -> flask.Response:
    """GET/POST user_id, k, optional events (recent item ids) -> ranked items."""
    started = time.perf_counter()
    try:
        params = _params(request)
        user_id = str(params.get("user_id", "")).strip()
        if not user_id:
            return _error(400, "user_id is required")
        try:
            k = int(params.get("k", 10))
        except (TypeError, ValueError):
            return _error(400, f"k must be an integer, got {params.get('k')!r}")
        if not 1 <= k <= SETTINGS.max_k:
            return _error(400, f"k must be between 1 and {SETTINGS.max_k}, got {k}")
        given = params.get("events") or []
        if isinstance(given, str):
            given = [x for x in given.split(",") if x]
        if not isinstance(given, list):
            return _error(400, "events must be a list of item ids or a comma-separated string")
        given = [str(x) for x in given]
    except ValueError as e:
        return _error(400, str(e))

    s = serving()
    try:
        version = s.version()
        hit = s.cached(user_id, k)
        if hit is not None and len(hit[0]) >= k:
            items, source = hit[0], "cache"
        else:
            history = (hit[1] if hit is not None else s.history(user_id)) + given
            history = list(dict.fromkeys(history))
            if hit is not None:
                items = hit[0] + s.popular(k - len(hit[0]), history + [i for i, _ in hit[0]])
                source = "cache"
            elif history:
                items, source = s.on_demand(history, k), "on_demand"
            else:
                items, source = s.popular(k, []), "popular"
    except NoBundleError as e:
        return _json({"error": str(e)}, 503, {"Retry-After": "60"})
    except redis.RedisError:
        if s.bundle is None:
            return _json({"error": "cache unavailable and no bundle loaded"}, 503,
                         {"Retry-After": "5"})
        version, items, source = s.bundle.version, s.popular(k, given), "fallback"
    body = {"user_id": user_id, "model_version": version, "source": source,
            "recommendation_id": uuid.uuid4().hex,
            "items": [{"item_id": i, "score": sc} for i, sc in items]}
    log.info(json.dumps({"path": "recommend", "source": source, "version": version,
                         "latency_ms": round(1000 * (time.perf_counter() - started), 3)}))
    return _json(body)


def events(request: flask.Request) -> flask.Response:
    """POST {"events": [{user_id, item_id, event_type, timestamp}, ...]} -> stored count."""
    if SETTINGS.api_key and request.headers.get("X-API-Key") != SETTINGS.api_key:
        return _error(401, "missing or wrong X-API-Key header")
    if request.method != "POST":
        return _error(405, "use POST with a JSON body {\"events\": [...]}")
    body = request.get_json(silent=True)
    batch = body.get("events") if isinstance(body, dict) else body
    if not isinstance(batch, list) or not batch:
        return _error(400, "body must be {\"events\": [...]} with at least one event")
    valid, errors = [], []
    for n, raw in enumerate(batch):
        if not isinstance(raw, dict):
            errors.append({"index": n, "reason": "event must be a JSON object"})
            continue
        raw = {"timestamp": time.time(), **raw}
        clean, reason = validate_interaction(raw)
        if clean is None:
            errors.append({"index": n, "reason": reason})
        else:
            clean["event_id"] = str(raw.get("event_id") or uuid.uuid4().hex)
            if raw.get("recommendation_id"):
                clean["recommendation_id"] = str(raw["recommendation_id"])
            valid.append(clean)
    try:
        ids = serving().lists.append_events(valid) if valid else []
    except redis.RedisError:
        return _json({"error": "event store unavailable; nothing was stored"}, 503,
                     {"Retry-After": "5"})
    body = {"stored": len(ids), "rejected": errors}
    return _json(body, 400 if errors else 200)


def health(request: flask.Request) -> flask.Response:
    """Liveness plus the served version; `?warm=1` also loads the on-demand user tower."""
    s = serving()
    try:
        version = s.version()
        if request.args.get("warm"):
            s.tower()
    except NoBundleError as e:
        return _json({"status": "no_bundle", "error": str(e)}, 503)
    except redis.RedisError as e:
        return _json({"status": "degraded", "error": f"redis: {e}"}, 503)
    return _json({"status": "ok", "model_version": version})


ROUTES = {"/recommend": recommend, "/events": events, "/health": health}


def router(request: flask.Request) -> flask.Response:
    """Dispatches by path to the functions above (one server for all of them)."""
    handler = ROUTES.get(request.path.rstrip("/") or "/health")
    if handler is None:
        return _error(404, f"unknown path {request.path}; try one of {sorted(ROUTES)}")
    return handler(request)
