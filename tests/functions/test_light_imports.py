"""The functions' light path loads neither pandas nor pyarrow (docs/SERVING.md): row validation
for `/events` comes from models/rows.py, which imports neither. Each check runs in a fresh
interpreter, since the test process itself has imported both."""

import json
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.functions.conftest import make_app

HEAVY = ("pandas", "pyarrow", "tensorflow", "keras", "apache_beam")


def _run(code: str, env: dict | None = None) -> list:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                         capture_output=True, check=True, cwd=".").stdout
    return json.loads(out.splitlines()[-1])


def test_hardening_12_functions_params_imports_no_pandas_or_pyarrow():
    loaded = _run(f"""
        import json, sys
        import functions.params
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    assert loaded == []


def test_hardening_12_cached_answers_and_events_load_no_pandas_or_pyarrow(served_env,
                                                                          warm_user):
    """The whole app (functions/main.py, which loads the bundle at import), a cached answer
    and an ingested event."""
    loaded = _run(f"""
        import json, sys
        import functions_framework
        app = functions_framework.create_app("router", "functions/main.py").test_client()
        cached = app.get("/recommend?user_id={warm_user}&k=3").get_json()["source"]
        stored = app.post("/events", json={{"events": [
            {{"user_id": "light-1", "item_id": "1", "event_type": "view"}}]}},
            headers={{"X-API-Key": "secret"}}).get_json()["stored"]
        print(json.dumps([cached, stored, sorted(m for m in {HEAVY!r} if m in sys.modules)]))
    """, env={**{k: v for k, v in served_env.items() if v is not None}, "PATH": ""})
    assert loaded == ["cache", 1, []]


@pytest.mark.parametrize("event,reason", [
    ({"timestamp": 1e20}, "timestamp out of range"),
    ({"timestamp": "99999999999999999999"}, "timestamp out of range"),
    ({"timestamp": 1.7e12}, "timestamp out of range"),
    ({"weight": 1e39}, "weight out of range [0, 1000]"),
])
def test_hardening_02_events_refuses_out_of_range_values_at_the_door(served_env, event,
                                                                     reason):
    app = make_app(served_env).test_client()
    good = {"user_id": "door-1", "item_id": "1", "event_type": "view",
            "event_id": uuid.uuid4().hex}  # not a resend of another case's event
    response = app.post("/events", json={"events": [good, {**good, "item_id": "2", **event}]},
                        headers={"X-API-Key": "secret"})
    body = response.get_json()
    assert (response.status_code, body["stored"]) == (400, 1)
    assert [r["index"] for r in body["rejected"]] == [1]
    assert body["rejected"][0]["reason"].startswith(reason)


@pytest.fixture(scope="module")
def served_bundle_env(published_served):
    store, redis_url, _, _ = published_served
    return {"REDIS_URL": redis_url, "RECSYS_STORE": store, "RECSYS_NAMESPACE": "srv",
            "RECSYS_API_KEY": "secret", "RECSYS_POINTER_TTL_S": "0", "PATH": ""}


def test_served_bundle_cached_and_on_demand_answers_load_no_tensorflow_pandas_or_pyarrow(
        served_bundle_env, warm_user, tiny_dataset):
    """Issue 16: the app on a served bundle (its on-demand scorer loaded at import), a cached
    answer and a fresh user's on-demand answer from their ingested events: no TensorFlow,
    pandas or pyarrow, whose imports alone cost the cold start about a second."""
    items = [str(i) for i in tiny_dataset.interactions["item_id"].drop_duplicates()[:3]]
    loaded = _run(f"""
        import json, sys
        import functions_framework
        app = functions_framework.create_app("router", "functions/main.py").test_client()
        cached = app.get("/recommend?user_id={warm_user}&k=3").get_json()["source"]
        events = [{{"user_id": "light-served-1", "item_id": i, "event_type": "click"}}
                  for i in {items!r}]
        stored = app.post("/events", json={{"events": events}},
                          headers={{"X-API-Key": "secret"}}).get_json()["stored"]
        fresh = app.post("/recommend", json={{"user_id": "light-served-1", "k": 3,
                                              "features": {{"country": "JP"}}}}).get_json()
        print(json.dumps([cached, stored, fresh["source"], len(fresh["items"]),
                          sorted(m for m in {HEAVY!r} if m in sys.modules)]))
    """, env=served_bundle_env)
    assert loaded == ["cache", 3, "on_demand", 3, []]
