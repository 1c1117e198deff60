"""Fuzzes every operation of /openapi.json (schemathesis, on hypothesis) against `recsys serve`
serving a real published version over HTTP: no input may give a 500, and every answer must
match the document (status codes, content types, response schemas)."""

import json
import urllib.request

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from functions.openapi import document

schema = schemathesis.openapi.from_dict(document())


def test_the_server_serves_the_fuzzed_document(live_server):
    with urllib.request.urlopen(live_server[0] + "/openapi.json") as r:
        assert json.loads(r.read()) == json.loads(json.dumps(document()))


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case, live_server):
    # With the key half the time, so the events and admin bodies get validated too.
    headers = {"X-API-Key": "secret"} if hash(repr(case.body)) % 2 else {}
    case.call_and_validate(base_url=live_server[0], headers=headers, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
