"""Fuzzes every operation of /openapi.json (schemathesis, on hypothesis) against `recsys serve`
serving a real published version over HTTP: no input may give a 500, and every answer must
match the document (status codes, content types, response schemas). The fuzz is the same on
every run (derandomized; which cases carry the key is a stable hash of the case). The document
itself is checked against the server: the paths it routes, the methods it answers, and the
limits it enforces (over each documented limit: a 400 naming the field; at the limit: no 400).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import zlib

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from functions.openapi import document

schema = schemathesis.openapi.from_dict(document())
# derandomize: the examples follow from the test, not from a seed that changes run to run.
FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def sends_key(case) -> bool:
    """Whether a case carries X-API-Key: half of them, by CRC32 of the case's content (hash()
    is salted per process by PYTHONHASHSEED, and NOT_SET's repr holds its address)."""
    body = None if case.body is NOT_SET else case.body
    text = json.dumps([case.method, case.path, case.query or None, body], sort_keys=True,
                      default=repr)
    return zlib.crc32(text.encode()) % 2 == 1


@schema.parametrize()
@FUZZ
def test_no_input_gives_a_server_error(case, live_server):
    # With the key half the time, so the events and admin bodies get validated too.
    headers = {"X-API-Key": "secret"} if sends_key(case) else {}
    case.call_and_validate(base_url=live_server[0], headers=headers, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])


# --- the document against the server ---------------------------------------------------------


def _call(url: str, method: str = "GET", body=None, key: str | None = None):
    """(status, JSON answer or None) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **({"X-API-Key": key} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def over_limits(prop: dict) -> list[object]:
    """Values one step past each limit of a property's schema (maxLength, maximum, ...)."""
    values = []
    if "maxLength" in prop:
        values.append("x" * (prop["maxLength"] + 1))
    if "maximum" in prop:
        values.append(prop["maximum"] + 1)
    if "minimum" in prop:
        values.append(prop["minimum"] - 1)
    if "enum" in prop:
        values.append("not-" + prop["enum"][0])
    return values


def test_hardening_15_document_paths_and_methods_are_the_served_ones(live_server):
    url = live_server[0]
    served_doc = _call(url + "/openapi.json")[1]
    status, answer = _call(url + "/no-such-path")
    served_paths = set(re.findall(r"'(/[^']*)'", answer["error"]))

    assert status == 404 and served_paths, answer
    assert set(served_doc["paths"]) == served_paths
    for path, operations in served_doc["paths"].items():
        for method in operations:
            body = {} if method == "post" else None
            assert _call(url + path, method.upper(), body, "admin")[0] not in (404, 405), (
                method, path)


def test_hardening_15_recommend_enforces_the_documented_limits(live_server, warm_user):
    url, doc = live_server[0], _call(live_server[0] + "/openapi.json")[1]
    params = {p["name"]: p["schema"] for p in doc["paths"]["/recommend"]["get"]["parameters"]}
    body = doc["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]
    wrong = []
    for name, prop in params.items():
        for value in over_limits(prop):
            query = {"user_id": warm_user, name: value}
            status, answer = _call(f"{url}/recommend?{urllib.parse.urlencode(query)}")
            if status != 400 or name not in (answer or {}).get("error", ""):
                wrong.append(f"GET {name}={str(value)[:20]}: {status} {str(answer)[:100]}")
    for name, prop in body["schema"]["properties"].items():
        for value in over_limits(prop):
            status, answer = _call(url + "/recommend", "POST", {"user_id": warm_user,
                                                                name: value})
            if status != 400 or name not in (answer or {}).get("error", ""):
                wrong.append(f"POST {name}={str(value)[:20]}: {status} {str(answer)[:100]}")
    assert not wrong, "\n".join(wrong)
    # At the limits: answered.
    at_limit = {"user_id": "u" * params["user_id"]["maxLength"], "k": params["k"]["maximum"]}
    assert _call(f"{url}/recommend?{urllib.parse.urlencode(at_limit)}")[0] == 200


def test_hardening_15_events_enforce_the_documented_limits(live_server):
    url, doc = live_server[0], _call(live_server[0] + "/openapi.json")[1]
    batch = (doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]
             ["schema"]["properties"]["events"])
    event = {"user_id": "openapi-probe", "item_id": "i1", "event_type": "click"}
    wrong = []
    for name, prop in batch["items"]["properties"].items():
        for value in over_limits(prop):
            status, answer = _call(url + "/events", "POST", {"events": [{**event, name: value}]},
                                   "secret")
            reasons = [r["reason"] for r in (answer or {}).get("rejected", [])]
            if status != 400 or not any(name in reason for reason in reasons):
                wrong.append(f"{name}={str(value)[:20]}: {status} {str(answer)[:100]}")
    assert not wrong, "\n".join(wrong)
    status, answer = _call(url + "/events", "POST", {"events": [event] * (batch["maxItems"] + 1)},
                           "secret")
    assert status == 400 and str(batch["maxItems"]) in answer["error"], answer
    assert _call(url + "/events", "POST", {"events": [event] * batch["maxItems"]},
                 "secret")[0] == 200
