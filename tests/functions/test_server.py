"""The functions in functions-framework's real gunicorn server (`recsys serve`), over HTTP."""

import json
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

KEY = {"X-API-Key": "secret", "Content-Type": "application/json"}


def _call(url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data, headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_recommend_events_and_metrics_over_http(live_server, warm_user, tiny_dataset):
    url, log, _ = live_server
    status, body = _call(f"{url}/recommend?user_id={warm_user}&k=4")
    assert status == 200 and json.loads(body)["source"] == "cache"
    items = tiny_dataset.interactions["item_id"].drop_duplicates().iloc[:2].tolist()
    events = [{"user_id": "http-new", "item_id": i, "event_type": "view"} for i in items]
    status, body = _call(f"{url}/events", {"events": events}, KEY)
    assert status == 200 and json.loads(body)["stored"] == 2
    status, body = _call(f"{url}/recommend", {"user_id": "http-new", "k": 5},
                         {"Content-Type": "application/json"})
    answer = json.loads(body)
    assert status == 200 and answer["source"] == "on_demand" and len(answer["items"]) == 5
    status, text = _call(f"{url}/metrics")
    assert status == 200 and b'recsys_recommendations_total{source="on_demand"}' in text
    time.sleep(0.2)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    mine = [x for x in lines if x.get("recommendation_id") == answer["recommendation_id"]]
    assert len(mine) == 1 and mine[0]["source"] == "on_demand" and mine[0]["latency_ms"] > 0


def test_the_server_never_loads_tensorflow(live_server, warm_user):
    url, _, pid = live_server
    _call(f"{url}/recommend?user_id={warm_user}&k=2")
    _call(f"{url}/recommend?user_id=tf-check&k=2&events=1,2")  # the on-demand path too
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    for p in [pid, *map(int, children)]:
        assert "tensorflow" not in open(f"/proc/{p}/maps").read()


def test_cached_and_on_demand_paths_import_no_tensorflow(served_env, warm_user):
    code = textwrap.dedent(f"""
        import json, sys
        import functions_framework
        app = functions_framework.create_app("router", "functions/main.py").test_client()
        cached = app.get("/recommend?user_id={warm_user}&k=3").get_json()["source"]
        fresh = app.get("/recommend?user_id=nobody-tf&k=3&events=1,2").get_json()["source"]
        heavy = sorted(m for m in ("tensorflow", "keras", "apache_beam") if m in sys.modules)
        print(json.dumps([cached, fresh, heavy]))
    """)
    env = {k: v for k, v in served_env.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": ""}, text=True,
                         capture_output=True, check=True, cwd=".").stdout
    assert json.loads(out.splitlines()[-1]) == ["cache", "on_demand", []]
