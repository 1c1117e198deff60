"""The OpenAPI 3.0 document of the functions, served at `/openapi.json`.

The requests' parts (query parameters, bodies, their limits) are generated from the request
models the functions parse with (functions/request_models.py); the answers are described here.
tests/functions/test_openapi.py fuzzes the running functions from it (schemathesis): no input
may produce a 500, and every answer must match the document.
"""

from __future__ import annotations

from functions.field_rules import Limits, object_schema, query_parameters
from functions.request_models import (
    EventBatch,
    ItemChanges,
    RecommendRequest,
    SimilarRequest,
    TrendingRequest,
)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


RETRY = {"Retry-After": {"description": "Seconds to wait before trying again.",
                         "schema": {"type": "string"}}}
# /recommend needs the read key (RECSYS_RECOMMEND_KEY) only where one is configured.
READ_SECURITY = [{"apiKey": []}, {}]


def _errors(*codes: int) -> dict:
    text = {400: "Bad input; `error` names the field and says what is wrong.",
            401: "Missing or wrong X-API-Key header.",
            403: "Admin calls are disabled (no key configured).",
            405: "Method not allowed.",
            413: "The body is over the size limit (RECSYS_MAX_BODY_BYTES; for /admin/items "
                 "RECSYS_MAX_ADMIN_BODY_BYTES).",
            404: "No such item in the served version.",
            503: "Not ready (no published version) or the store is unreachable."}
    return {str(c): _json(_ref("Error"), text[c], RETRY if c == 503 else None) for c in codes}


def document(max_k: int = 100, max_events: int = 1000) -> dict:
    """The OpenAPI document for the given limits (RECSYS_MAX_K, RECSYS_MAX_EVENTS)."""
    limits = Limits(max_k=max_k, max_events=max_events)
    recommend_body = object_schema(RecommendRequest, limits)
    recommend_responses = {"200": _json(_ref("Recommendations"), "Ranked items."),
                           **_errors(400, 401, 413, 503),
                           "400": _json(_ref("Error"), "Bad input, or a `category` that no "
                                        "served item has (never an empty 200): `error` names "
                                        "the field, e.g. \"category: no served item has "
                                        "category 'Nope'; known categories (19): ...\".")}
    similar_responses = {"200": _json(_ref("SimilarItems"), "The item's neighbours."),
                         **_errors(400, 401, 404, 413, 503)}
    trending_responses = {"200": _json(_ref("TrendingItems"), "The window's most engaged "
                                       "items, topped up by popular ones."),
                          **_errors(400, 401, 413)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "recsys functions", "version": "1",
                 "description": "Recommendations from the nightly lists, on demand and popular; "
                                "event ingestion. See docs/SERVING.md."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header",
                                           "name": "X-API-Key"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
                "Recommendations": {"type": "object", "required": [
                    "user_id", "items", "source", "model_version", "recommendation_id",
                    "experiment", "arm"],
                    "properties": {
                        "user_id": {"type": "string"},
                        "model_version": {"type": "string", "description": (
                            "The version that served the answer: the user's arm's in a "
                            "running experiment, else the current one.")},
                        "experiment": {"type": "string", "nullable": True, "description": (
                            "The running experiment the user is in; null outside one.")},
                        "arm": {"type": "string", "nullable": True, "description": (
                            "The user's arm of `experiment` (a hash of its salt and the "
                            "user id); null outside an experiment.")},
                        "source": {"type": "string",
                                   "enum": ["cache", "on_demand", "popular", "fallback"]},
                        "filled_by": {"type": "array", "items": {"type": "string"}},
                        "recommendation_id": {"type": "string", "description": (
                            "This answer's id (32 hex characters), also its impression's: "
                            "send it with the events the answer led to.")},
                        "next_cursor": {"type": "string", "nullable": True},
                        "items": {"type": "array", "items": {
                            "type": "object", "required": ["item_id", "score"], "properties": {
                                "item_id": {"type": "string"},
                                "score": {"type": "number", "nullable": True},
                                "reason": _ref("Reason")}}}}},
                "Reason": {"type": "object", "required": ["reason"], "description": (
                    "With explain=true: why the item is listed, from the ranker's features "
                    "(docs/SERVING.md, Reasons)."), "properties": {
                        "reason": {"type": "string", "enum": [
                            "because_you_took", "popular_in_your_segment", "new", "trending",
                            "popular", "taste"]},
                        "history_item": {"type": "string", "description": (
                            "because_you_took: the history item whose neighbour share of the "
                            "feature is largest.")},
                        "feature": {"type": "string", "nullable": True},
                        "contribution": {"type": "number"},
                        "value": {"type": "number", "nullable": True}}},
                "SimilarItems": {"type": "object", "required": [
                    "item_id", "model_version", "experiment", "arm", "source", "filled_by",
                    "next_cursor", "items"],
                    "properties": {
                        "item_id": {"type": "string"},
                        "model_version": {"type": "string"},
                        "experiment": {"type": "string", "nullable": True, "description": (
                            "The running experiment the given user_id is in; null without a "
                            "user_id or outside one.")},
                        "arm": {"type": "string", "nullable": True, "description": (
                            "The user's arm of `experiment`, whose version's neighbours these "
                            "are; null outside an experiment.")},
                        "source": {"type": "string", "enum": ["cache", "on_demand"]},
                        "filled_by": {"type": "array", "items": {"type": "string"}},
                        "next_cursor": {"type": "string", "nullable": True},
                        "items": _ref("ScoredItems")}},
                "TrendingItems": {"type": "object", "required": [
                    "window", "model_version", "source", "filled_by", "items"],
                    "properties": {
                        "window": {"type": "string"},
                        "model_version": {"type": "string", "nullable": True},
                        "source": {"type": "string", "enum": ["trending", "popular"]},
                        "filled_by": {"type": "array", "items": {"type": "string"}},
                        "items": _ref("ScoredItems")}},
                "ScoredItems": {"type": "array", "items": {
                    "type": "object", "required": ["item_id", "score"], "properties": {
                        "item_id": {"type": "string"},
                        "score": {"type": "number", "nullable": True}}}},
                "EventsResult": {"type": "object", "required": ["stored", "rejected"],
                                 "properties": {
                                     "stored": {"type": "integer"},
                                     "duplicates": {"type": "integer"},
                                     "event_ids": {"type": "array", "items": {"type": "string"}},
                                     "rejected": {"type": "array", "items": {
                                         "type": "object", "required": ["index", "reason"],
                                         "properties": {"index": {"type": "integer"},
                                                        "reason": {"type": "string"}}}}}},
            }},
        "paths": {
            "/recommend": {
                "get": {"summary": "Top-k items for a user.", "operationId": "recommendGet",
                        "security": READ_SECURITY,
                        "parameters": query_parameters(RecommendRequest, limits),
                        "responses": recommend_responses},
                "post": {"summary": "Top-k items, with the request in a JSON body.",
                         "operationId": "recommendPost", "security": READ_SECURITY,
                         "requestBody": {"required": True, "content": {
                             "application/json": {"schema": recommend_body}}},
                         "responses": recommend_responses}},
            "/similar": _read_operations(
                "similar", SimilarRequest, limits, similar_responses, "An item's neighbours.",
                "An item's neighbours, the request in a JSON body."),
            "/trending": _read_operations(
                "trending", TrendingRequest, limits, trending_responses,
                "The most engaged items of a recent window.",
                "Trending items, the request in a JSON body."),
            "/events": {"post": {
                "summary": "Ingest a batch of events.", "operationId": "events",
                "security": [{"apiKey": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": object_schema(EventBatch, limits)}}},
                "responses": {"200": _json(_ref("EventsResult"), "All events stored."),
                              "400": _json({"anyOf": [_ref("EventsResult"), _ref("Error")]},
                                           "Some events rejected (the valid ones are stored: "
                                           "`stored`, `event_ids`), or the body is malformed "
                                           "(nothing stored)."),
                              **_errors(401, 413),
                              "503": _json(_ref("Error"), "The event store is unreachable "
                                           "(nothing stored), or failed while taking the batch "
                                           "(`stored` null: send the same batch again; a resent "
                                           "event_id is stored once).", RETRY)}}},
            "/health": {"get": {
                "summary": "The served version.", "operationId": "health",
                "responses": {"200": _json({"type": "object", "required": ["status"],
                                            "properties": {"status": {"type": "string"},
                                                           "experiment": {
                                                               "type": "object",
                                                               "nullable": True,
                                                               "description": (
                                                                   "The running experiment: "
                                                                   "name and arms (arm -> the "
                                                                   "version serving it).")}}},
                                           "Answers are possible (maybe degraded)."),
                              "503": _json({"type": "object"}, "No bundle yet.", RETRY),
                              **_errors(413)}}},
            "/admin/items": {
                "get": {"summary": "The item filters.", "operationId": "adminItemsGet",
                        "security": [{"apiKey": []}],
                        "responses": {"200": _json({"type": "object"}, "Revision and items."),
                                      **_errors(401, 403, 413, 503)}},
                "post": {"summary": "Mark items unavailable/available, set categories.",
                         "operationId": "adminItemsPost", "security": [{"apiKey": []}],
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": object_schema(ItemChanges, limits)}}},
                         "responses": {"200": _json({"type": "object"}, "The new revision."),
                                       **_errors(400, 401, 403, 413, 503)}}},
            "/metrics": {"get": {
                "summary": "Prometheus metrics of this instance.", "operationId": "metrics",
                "responses": {"200": {"description": "Text exposition format 0.0.4.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_errors(413)}}},
            "/openapi.json": {"get": {
                "summary": "This document.", "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0 document."),
                              **_errors(413)}}},
        },
    }


def _read_operations(name: str, model, limits, responses: dict, get_summary: str,
                     post_summary: str) -> dict:
    """A read endpoint's GET (query string) and POST (JSON body) operations on `model`."""
    return {
        "get": {"summary": get_summary, "operationId": f"{name}Get", "security": READ_SECURITY,
                "parameters": query_parameters(model, limits), "responses": responses},
        "post": {"summary": post_summary, "operationId": f"{name}Post",
                 "security": READ_SECURITY,
                 "requestBody": {"required": True, "content": {
                     "application/json": {"schema": object_schema(model, limits)}}},
                 "responses": responses}}
