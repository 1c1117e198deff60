"""The request models (functions/request_models.py, on functions/field_rules.py): every limit
a field's schema states is the one its rule enforces, one step past it refused naming the field
and at it accepted; and the OpenAPI document (functions/openapi.py) states them for the
configured settings."""

import pytest
from werkzeug.datastructures import MultiDict

from functions.body import BadRequest
from functions.field_rules import Limits, object_schema, query_parameters, read, rules
from functions.openapi import document
from functions.request_models import ItemChanges, RecommendRequest

LIMITS = Limits(max_k=7, max_events=3)
BASE = {RecommendRequest: {"user_id": "u"}, ItemChanges: {}}


def _probes(schema: dict) -> list[tuple[object, object]]:
    """(a value at each limit of `schema`, one a step past it)."""
    out = []
    if "maxLength" in schema:
        out.append(("x" * schema["maxLength"], "x" * (schema["maxLength"] + 1)))
    if "maximum" in schema:
        out.append((schema["maximum"], schema["maximum"] + 1))
    if "minimum" in schema:
        out.append((schema["minimum"], schema["minimum"] - 1))
    if "maxProperties" in schema:
        n = schema["maxProperties"]
        out.append(({f"i{j}": "x" for j in range(n)}, {f"i{j}": "x" for j in range(n + 1)}))
    for alternative in schema.get("oneOf", []):
        if "maxItems" in alternative:
            n = alternative["maxItems"]
            out.append((["i"] * n, ["i"] * (n + 1)))
    return out


@pytest.mark.parametrize("model", [RecommendRequest, ItemChanges])
def test_every_stated_body_limit_is_the_enforced_one(model):
    checked = 0
    for name, prop in object_schema(model, LIMITS)["properties"].items():
        for at, past in _probes(prop):
            read(model, {**BASE[model], name: at}, limits=LIMITS)
            with pytest.raises(BadRequest) as e:
                read(model, {**BASE[model], name: past}, limits=LIMITS)
            assert name in str(e.value), (name, str(e.value))
            checked += 1
    assert checked >= {RecommendRequest: 7, ItemChanges: 3}[model]


def test_every_stated_query_limit_is_the_enforced_one():
    params = query_parameters(RecommendRequest, LIMITS)
    assert [p["name"] for p in params if p["required"]] == ["user_id"]
    assert "features" not in {p["name"] for p in params}  # only in a JSON body
    for p in params:
        for at, past in _probes(p["schema"]):
            if p["name"] in ("events", "exclude", "category"):  # one id, padded with blanks
                at, past = " " * (len(at) - 1) + "i", " " * (len(past) - 1) + "i"
            read(RecommendRequest, {}, MultiDict({"user_id": "u", p["name"]: str(at)}), LIMITS)
            with pytest.raises(BadRequest) as e:
                read(RecommendRequest, {}, MultiDict({"user_id": "u", p["name"]: str(past)}),
                     LIMITS)
            assert p["name"] in str(e.value)


def test_the_document_states_the_configured_settings():
    doc = document(max_k=7, max_events=3)
    k = [p for p in doc["paths"]["/recommend"]["get"]["parameters"] if p["name"] == "k"][0]
    events = (doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]
              ["schema"]["properties"]["events"])
    assert (k["schema"]["maximum"], events["maxItems"], events["minItems"]) == (7, 3, 1)
    assert set(events["items"]["properties"]) == {
        "user_id", "item_id", "event_type", "timestamp", "weight", "event_id",
        "recommendation_id", "value"}
    assert rules(RecommendRequest)["k"].parse(None, "k", LIMITS) == 10  # the default
