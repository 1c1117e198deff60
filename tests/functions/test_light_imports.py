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
