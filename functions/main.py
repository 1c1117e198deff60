"""HTTP functions (functions-framework): `recommend`, `events`, `health`, and `router`.

    functions-framework --source functions/main.py --target router --port 8080
    curl 'localhost:8080/recommend?user_id=42&k=10'

Each of `recommend`, `events` and `health` deploys as its own Cloud Function (gen2) or Cloud
Run service; `router` serves them all from one process by path (what `recsys serve` runs),
with `/admin/items`. Every target also answers `/metrics` (Prometheus) and `/openapi.json`.
Configuration comes from the environment once at import (functions/settings.Settings, which
refuses to start on a setting that cannot mean what it says); the current version's bundle
loads at import too, so the first request finds it ready.

No body is read past its size limit (413), bad input is a 400 naming the field, and no answer
carries a traceback (docs/SERVING.md, limits and errors). In a running experiment a user gets
their arm's version (functions/arms.py), and every /recommend answer is logged as an
impression off the request path (functions/impression_log.py; RECSYS_IMPRESSIONS=0 stops it).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _quote

import flask
import redis

from functions import chain, explain, metrics, similar, trending
from functions.body import BadRequest, read_body
from functions.cursor import CursorKey, CursorKeyUnavailable
from functions.impression_log import ImpressionLog, record
from functions.loaded import NoBundleError
from functions.openapi import document
from functions.params import event_batch, item_changes, query, similar_query, trending_query
from functions.serving import Serving
from functions.settings import Settings
from infra.redis.impressions import ImpressionStream
from infra.redis.similar import SimilarLists
from models.rows import clean_id

log = logging.getLogger("recsys.functions")
# One JSON line per request on stdout, which Cloud Logging parses. This logger's level switches
# the lines on (INFO, the default) or off; they are written straight to stdout because a
# logging.LogRecord per request cost ~10% of a cached answer's throughput (docs/SERVING.md),
# and flushed every 0.1 s (_StdoutFlusher) rather than after each line.
requests_log = logging.getLogger("recsys.requests")
if requests_log.level == logging.NOTSET:
    requests_log.setLevel(logging.INFO if os.environ.get("RECSYS_REQUEST_LOG", "1") != "0"
                          else logging.WARNING)


class _StdoutFlusher:
    """Flushes stdout every FLUSH_S from a daemon thread of each process (started by its first
    request line; a forked worker starts its own), so the request lines leave in a few
    writes per interval instead of a write per request; exit flushes the rest."""

    FLUSH_S = 0.1

    def __init__(self):
        self.started = False
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True
        threading.Thread(target=self._run, name="stdout", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.FLUSH_S)
            try:
                sys.stdout.flush()
            except (OSError, ValueError):  # stdout closed or gone: nothing to do about it
                pass


_flusher = _StdoutFlusher()
SETTINGS = Settings.from_env()
SERVING = Serving(SETTINGS)
try:
    SERVING.state()  # cold start: load the current bundle and its tower before any request
except (NoBundleError, redis.RedisError) as e:
    log.warning("no bundle loaded at start (%s); the first request retries", e)
RECORD = SERVING.record  # the metrics (functions/metrics.py; RECSYS_METRICS=0: not recorded)
SCRAPED = metrics.ScrapeCollector(SERVING) if SETTINGS.metrics else None
IMPRESSIONS = (ImpressionLog(ImpressionStream(SERVING.lists.r, SETTINGS.namespace),
                             dropped=RECORD.impressions_dropped)
               if SETTINGS.impressions else None)
SIMILAR = SimilarLists(SERVING.lists.r, SETTINGS.namespace)  # /similar's neighbours
CURSORS = CursorKey(SETTINGS.cursor_secret, SERVING.lists.r, f"{SETTINGS.namespace}:cursor_secret")
try:
    CURSORS.load()
except redis.RedisError as e:
    log.warning("no page cursor secret at start (%s); the first request retries", e)


_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def _json(body: dict, status: int = 200, headers: dict | None = None) -> flask.Response:
    return flask.Response(_encode(body), status=status, mimetype="application/json",
                          headers=headers)


def _error(status: int, message: str, headers: dict | None = None) -> flask.Response:
    return _json({"error": message}, status, headers)


def _too_large(message: str) -> flask.Response:
    # An iterable body makes the answer "streamed", which functions-framework's after-request
    # hook (read_request) takes as a sign not to read the rest of the request body: gunicorn
    # then drains a little of it and closes the connection.
    payload = _encode({"error": message}).encode()
    return flask.Response(iter([payload]), status=413, mimetype="application/json",
                          headers={"Content-Length": str(len(payload))})


def _body_limit(path: str) -> int:
    return SETTINGS.max_admin_body_bytes if path == "admin_items" else SETTINGS.max_body_bytes


def _cursor_key() -> bytes | None:
    """The page cursors' key; None while it is unknown and Redis is unreachable."""
    if CURSORS.value is None and SERVING.breaker.up():
        try:
            CURSORS.load()
        except redis.RedisError as e:
            SERVING.breaker.trip(e)
            log.warning("page cursor secret unavailable: %s", e)
    return CURSORS.value


def _key_ok(request: flask.Request, key: str | None) -> bool:
    given = request.headers.get("X-API-Key", "")
    return key is None or hmac.compare_digest(given.encode(), key.encode())


def _observed(path: str, handler, request: flask.Request) -> flask.Response:
    """Runs a handler; logs one JSON line and records its latency by source."""
    started = time.perf_counter()
    info: dict = {}
    try:
        read_body(request, _body_limit(path))  # bounded, before anything else may read it
        common = _COMMON.get(request.environ.get("PATH_INFO"))
        if common is not None:  # a single-function deployment answers these paths too
            return common(request)
        response = handler(request, info)
    except BadRequest as e:
        response = _too_large(str(e)) if e.status == 413 else _error(e.status, str(e))
    except Exception:  # the log has the traceback; the answer never does
        log.exception("%s failed", path)
        response = _error(500, "internal error; see the server log")
    seconds = time.perf_counter() - started
    source = info.get("source", "-")
    RECORD.request(path, response.status_code, source, seconds)
    if IMPRESSIONS is not None and "user_id" in info:
        _impression(info, response.status_code, seconds)
    if requests_log.isEnabledFor(logging.INFO):
        status, extra = response.status_code, info.get("extra")
        method = _quote(request.environ.get("REQUEST_METHOD", "?"))[1:-1]
        if not _flusher.started:
            _flusher.start()
        sys.stdout.write(
            f'{{"severity":"{"INFO" if status < 500 else "ERROR"}",'
            f'"message":"{method} {path} {status}","path":"{path}","status":{status},'
            f'"source":"{source}","version":{_encode(info.get("version"))},'
            f'"latency_ms":{1000 * seconds:.3f}{"," + _encode(extra)[1:-1] if extra else ""}}}\n')
    return response


def _impression(info: dict, status: int, seconds: float) -> None:
    """Queues the impression of a /recommend answer that has a user (any status)."""
    ok = status == 200
    IMPRESSIONS.add(record(
        info.get("recommendation_id") or os.urandom(16).hex(), info["user_id"],
        info.get("experiment", ""), info.get("arm", ""), info.get("version"),
        info.get("items", []) if ok else [], info.get("source", "error") if ok else "error",
        status, 1000 * seconds, int(time.time() * 1000)))


# recommend ------------------------------------------------------------------------------------
def _recommend(request: flask.Request, info: dict) -> flask.Response:
    if SETTINGS.recommend_key is not None and not _key_ok(request, SETTINGS.recommend_key):
        return _error(401, "missing or wrong X-API-Key header (the read key, "
                           "RECSYS_RECOMMEND_KEY)")
    try:
        q = query(request, SETTINGS.max_k, SETTINGS.max_body_bytes, _cursor_key())
    except (BadRequest, CursorKeyUnavailable) as e:
        user_id, _ = clean_id(request.args.get("user_id"), "user_id")  # for the impression
        if user_id is not None:
            info["user_id"] = user_id
        if isinstance(e, BadRequest):
            raise
        return _error(503, str(e), {"Retry-After": "5"})
    info["user_id"] = q.user_id
    try:
        route = SERVING.route(q.user_id)
        info.update(version=route.loaded.version, experiment=route.experiment, arm=route.arm)
        answer = chain.recommend(SERVING, q, _cursor_key(), route)
    except NoBundleError as e:
        return _error(503, str(e), {"Retry-After": "60"})
    except redis.RedisError:
        return _error(503, "Redis is unreachable and no bundle is loaded yet", {"Retry-After": "5"})
    rid = metrics.new_recommendation_id(answer.version)  # names the version: attribution
    ids = [i for i, _ in answer.items]
    extra = {"recommendation_id": rid, "items": len(ids)}
    if answer.experiment:
        extra.update(experiment=answer.experiment, arm=answer.arm)
    info.update(source=answer.source, recommendation_id=rid, items=ids, extra=extra)
    RECORD.recommendation(answer.source, answer.version, answer.arm, answer.experiment)
    items = _items_json(answer.items)
    if q.explain:  # functions/explain.py: each item's reason, from the ranker's features
        items = ",".join(_encode({"item_id": i, "score": None if s is None else round(s, 4),
                                  "reason": r})
                         for (i, s), r in zip(answer.items, explain.reasons(
                             SERVING, route.loaded, q, answer), strict=True))
    cursor = "null" if answer.next_cursor is None else f'"{answer.next_cursor}"'
    return flask.Response(
        f'{{"user_id":{_quote(q.user_id)},"model_version":{_quote(answer.version)},'
        f'{_arm_json(answer.experiment, answer.arm)},'
        f'"source":"{answer.source}","filled_by":{_encode(answer.filled_by)},'
        f'"recommendation_id":"{rid}","next_cursor":{cursor},"items":[{items}]}}',
        mimetype="application/json")


def _arm_json(experiment: str, arm: str) -> str:
    """The answer's `"experiment":…,"arm":…` members (null outside an experiment)."""
    return (f'"experiment":{_quote(experiment)},"arm":{_quote(arm)}' if experiment
            else '"experiment":null,"arm":null')


def recommend(request: flask.Request) -> flask.Response:
    """GET/POST user_id, k, filters, cursor (and events, features) -> ranked items."""
    return _observed("recommend", _recommend, request)


# similar, trending -----------------------------------------------------------------------------
def _read_key(request: flask.Request) -> flask.Response | None:
    if SETTINGS.recommend_key is not None and not _key_ok(request, SETTINGS.recommend_key):
        return _error(401, "missing or wrong X-API-Key header (the read key, "
                           "RECSYS_RECOMMEND_KEY)")
    return None


def _items_json(items: list) -> str:
    """[(item id, score or None)] as the answers' "items" array's content, written out by hand:
    a third faster than json over a dict per item (docs/SERVING.md)."""
    return ",".join([f'{{"item_id":{_quote(i)},"score":{"null" if v is None else f"{v:.4f}"}}}'
                     for i, v in items])


def _similar(request: flask.Request, info: dict) -> flask.Response:
    refused = _read_key(request)
    if refused is not None:
        return refused
    try:
        q = similar_query(request, SETTINGS.max_k, SETTINGS.max_body_bytes, _cursor_key())
        answer = similar.similar(SERVING, SIMILAR, q, _cursor_key())
    except CursorKeyUnavailable as e:
        return _error(503, str(e), {"Retry-After": "5"})
    except similar.UnknownItem as e:
        return _error(404, str(e))
    except NoBundleError as e:
        return _error(503, str(e), {"Retry-After": "60"})
    except redis.RedisError:
        return _error(503, "Redis is unreachable and no bundle is loaded yet", {"Retry-After": "5"})
    extra = {"items": len(answer.items)}
    if answer.experiment:
        extra.update(experiment=answer.experiment, arm=answer.arm)
    info.update(source=answer.source, version=answer.version, extra=extra)
    cursor = "null" if answer.next_cursor is None else f'"{answer.next_cursor}"'
    return flask.Response(
        f'{{"item_id":{_quote(answer.item_id)},"model_version":{_quote(answer.version)},'
        f'{_arm_json(answer.experiment, answer.arm)},'
        f'"source":"{answer.source}","filled_by":{_encode(answer.filled_by)},'
        f'"next_cursor":{cursor},"items":[{_items_json(answer.items)}]}}',
        mimetype="application/json")


def similar_items(request: flask.Request) -> flask.Response:
    """GET/POST item_id, k, filters, cursor -> the item's neighbours (functions/similar.py)."""
    return _observed("similar", _similar, request)


def _trending(request: flask.Request, info: dict) -> flask.Response:
    refused = _read_key(request)
    if refused is not None:
        return refused
    q = trending_query(request, SETTINGS.max_k, SETTINGS.max_body_bytes)
    try:
        loaded = SERVING.state()
    except (NoBundleError, redis.RedisError):
        loaded = None  # the counters do not need a bundle; its filters and popular do
    source, filled_by, items = trending.trending(SERVING.trending, loaded, q)
    info.update(source=source,
                version=loaded.version if loaded else None, extra={"items": len(items)})
    return _json({"window": q.window, "model_version": loaded.version if loaded else None,
                  "source": source, "filled_by": filled_by,
                  "items": [{"item_id": i, "score": None if v is None else round(v, 4)}
                            for i, v in items]})


def trending_items(request: flask.Request) -> flask.Response:
    """GET/POST window, k, filters -> the most engaged items lately (functions/trending.py)."""
    return _observed("trending", _trending, request)


# events ---------------------------------------------------------------------------------------
def _events(request: flask.Request, info: dict) -> flask.Response:
    if not _key_ok(request, SETTINGS.api_key):
        return _error(401, "missing or wrong X-API-Key header")
    if request.method != "POST":
        return _error(405, 'use POST with a JSON body {"events": [...]}')
    # Every event is validated before the first write, so the answer can say what was stored.
    valid, rejected, positions = event_batch(request, SETTINGS.max_events,
                                             SETTINGS.max_body_bytes)
    RECORD.events("rejected", len(rejected))
    ids = []
    event_ids = [e["event_id"] for e in valid]
    if valid:
        if not SERVING.breaker.up():
            return _unavailable(event_ids, rejected, sent=False)
        try:
            ids = SERVING.events.append(valid, SETTINGS.history_len, SETTINGS.dedup_ttl)
        except ValueError as e:  # the store refused the batch before writing anything
            log.warning("events refused by the store: %s", e)
            return _json({"error": f"nothing was stored: {e} (counting the valid events only; "
                                   "their batch indices are in event_indices)",
                          "stored": 0, "duplicates": 0, "rejected": rejected,
                          "event_ids": event_ids, "event_indices": positions}, 400)
        except redis.ResponseError as e:  # Redis refused the script before its first write
            log.error("events refused by Redis: %s", e)
            return _unavailable(event_ids, rejected, sent=False)
        except redis.RedisError as e:
            SERVING.breaker.trip(e)
            return _unavailable(event_ids, rejected, sent=True)
    stored = sum(i is not None for i in ids)
    RECORD.events("stored", stored)
    RECORD.events("duplicate", len(ids) - stored)
    if RECORD.on:
        _attribute(valid, ids)
    info["extra"] = {"stored": stored, "rejected": len(rejected)}
    return _json({"stored": stored, "duplicates": len(ids) - stored, "rejected": rejected,
                  "event_ids": event_ids}, 400 if rejected else 200)


def _attribute(valid: list[dict], ids: list) -> None:
    """Counts the stored events that carry a recommendation_id by the version that served it
    (a duplicate was counted when first stored)."""
    for event, stored in zip(valid, ids, strict=True):
        rid = event.get("recommendation_id")
        if rid and stored is not None:
            RECORD.attributed(SERVING.version_of(rid), event.get("event_type") or "none")


def _unavailable(event_ids: list[str], rejected: list[dict], sent: bool) -> flask.Response:
    """503 for a batch the event store did not take, saying what it holds of it.

    Args:
        sent: the batch reached Redis, which then failed (a timeout or a dropped connection):
            each event may or may not be stored. A resent event_id is stored once, so sending
            the same batch again is safe and completes it.
    """
    RECORD.events("unavailable", len(event_ids))
    if sent:
        message = ("the event store failed while taking the batch: each of its valid events may "
                   "or may not be stored; send the same batch again (resent event_ids are "
                   "stored once)")
    else:
        message = "event store unreachable; nothing was stored, send the batch again"
    return _json({"error": message, "stored": None if sent else 0, "rejected": rejected,
                  "event_ids": event_ids}, 503, {"Retry-After": "5"})


def events(request: flask.Request) -> flask.Response:
    """POST {"events": [{user_id, item_id, event_type, timestamp, event_id}, ...]}."""
    return _observed("events", _events, request)


# health, admin, metrics, openapi ----------------------------------------------------------------
def _health(request: flask.Request, info: dict) -> flask.Response:
    try:
        plan = SERVING.refresh()
    except NoBundleError as e:
        return _json({"status": "no_bundle", "error": str(e)}, 503, {"Retry-After": "60"})
    except redis.RedisError as e:
        return _json({"status": "degraded", "error": f"redis: {e}"}, 503, {"Retry-After": "5"})
    loaded = plan.current
    info["version"] = loaded.version
    up = SERVING.breaker.up()
    experiment = None if plan.experiment is None else {"name": plan.experiment.name,
                                                        "arms": plan.arms()}
    return _json({"status": "ok" if up else "degraded", "redis": "ok" if up else "down",
                  "model_version": loaded.version, "items": len(loaded.bundle.item_ids),
                  "on_demand": loaded.on_demand, "experiment": experiment})


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
    changes = (item_changes(request, SETTINGS.max_admin_body_bytes)
               if request.method == "POST" else None)
    try:
        if changes is None:
            rev, unavailable, category = SERVING.items.read()
            return _json({"rev": rev, "unavailable": sorted(unavailable),
                          "categories": len(category)})
        return _json({"rev": SERVING.items.update(**changes)})
    except redis.RedisError:
        return _error(503, "Redis is unreachable; nothing was read or changed",
                      {"Retry-After": "5"})


def admin_items(request: flask.Request) -> flask.Response:
    """GET the item filters; POST {"unavailable": [...], "available": [...], "categories": {}}."""
    return _observed("admin_items", _admin_items, request)


def metrics_page(request: flask.Request) -> flask.Response:
    """Prometheus' text format: the instance's metrics, every worker's added up."""
    if not RECORD.on:
        return flask.Response("# metrics are off on this instance (RECSYS_METRICS=0)\n",
                              content_type=metrics.CONTENT_TYPE)
    return flask.Response(metrics.page(SCRAPED), content_type=metrics.CONTENT_TYPE)


def openapi(request: flask.Request) -> flask.Response:
    return _json(document(SETTINGS.max_k, SETTINGS.max_events))


def _bounded(page):
    """`page` behind the body size limit (for the routes that _observed does not wrap)."""
    def run(request: flask.Request) -> flask.Response:
        try:
            read_body(request, SETTINGS.max_body_bytes)
        except BadRequest as e:
            return _too_large(str(e))
        return page(request)
    return run


_COMMON = {"/metrics": metrics_page, "/openapi.json": openapi}
ROUTES = {"/recommend": recommend, "/events": events, "/health": health,
          "/admin/items": admin_items, "/similar": similar_items, "/trending": trending_items,
          **{p: _bounded(f) for p, f in _COMMON.items()}}


def router(request: flask.Request) -> flask.Response:
    """Dispatches by path to the functions above (one server for all of them)."""
    handler = ROUTES.get(request.path.rstrip("/") or "/health")
    if handler is None:
        handler = _bounded(lambda request: _error(
            404, f"unknown path {request.path[:200]}; try one of {sorted(ROUTES)}"))
    return handler(request)
