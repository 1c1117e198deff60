"""`recsys experiment create|start|list|stop` (app/experiments_cli.py) over a real Redis."""

import json
import re

import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.fixture
def run(redis_client, redis_url):
    redis_client.zadd("t:versions", {"v1": 1, "v2": 2})

    def invoke(*args):
        return CliRunner().invoke(main, ["experiment", *args], env={
            "REDIS_URL": redis_url, "RECSYS_NAMESPACE": "t"})
    return invoke


def test_create_start_list_stop(run):
    created = run("create", "ab", "--arm", "control=current:5000", "--arm",
                  "treatment=v2:5000", "--salt", "s1")
    assert created.exit_code == 0, created.output
    assert created.output == ("experiment ab: draft (control=current:5000 treatment=v2:5000; "
                              "salt s1)\n")
    assert run("start", "ab").output.startswith("experiment ab: running (")
    listed = run("list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split()[:2] == ["name", "state"]
    assert re.match(r"ab\s+running\s+control=current:5000 treatment=v2:5000\s+s1\s+\S+Z\s+\S+Z"
                    r"\s+-$", row), row
    assert run("stop", "ab").output.startswith("experiment ab: stopped (")
    records = json.loads(run("list", "--json").output)
    assert [(r["experiment"]["name"], r["state"]) for r in records] == [("ab", "stopped")]


def test_the_salt_defaults_to_the_name(run):
    assert run("create", "x", "--arm", "a=current:9000", "--arm", "b=v1:1000").exit_code == 0
    assert json.loads(run("list", "--json").output)[0]["experiment"]["salt"] == "x"


@pytest.mark.parametrize("arms, message", [
    (["a=current:5000", "b=v2:4000"], "Error: arms: allocations sum to 9000, not 10000"),
    (["a=current:5000", "b=v2:half"], "Error: --arm 'b=v2:half' (arm 2): "
                                      "the share 'half' must be an integer"),
    (["a=current:5000", "b:5000"], "Error: --arm 'b:5000' (arm 2) is not "
                                   "NAME=VERSION:BASIS_POINTS"),
    (["a=current:5000", "b=v9:5000"], "Error: arms[1].version 'v9' (arm 'b') is not a "
                                      "published version"),
])
def test_a_bad_arm_is_one_error_line(run, arms, message):
    result = run("create", "bad", *[x for a in arms for x in ("--arm", a)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith(message), result.output
    assert json.loads(run("list", "--json").output) == []


def test_invalid_transition_is_one_error_line_with_exit_1(run):
    run("create", "ab", "--arm", "a=current:5000", "--arm", "b=v2:5000")
    result = run("stop", "ab")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: experiment 'ab' is draft; only a running "
                                     "experiment can stop (draft → running → stopped)")


def _traffic(redis_client, n=400, seed=0):
    """n users served by the running experiment `ab` now: treatment's list is clicked (and
    bought from) far more often; one answer is an error."""
    import random
    import time

    from infra.redis.event_stream import EventStream
    from infra.redis.experiments import Experiments
    from infra.redis.impressions import ImpressionStream

    exp = Experiments(redis_client, "t").running()["ab"]
    rng, now = random.Random(seed), int(time.time() * 1000)
    imps, events = [], []
    for i in range(n):
        user, rid = f"u{i}", f"{i:032x}"
        arm = exp.arm_for(user)
        imps.append({"recommendation_id": rid, "user_id": user, "experiment": "ab",
                     "arm": arm.name, "version": arm.version, "items": ["i1", "i2"],
                     "source": "cache", "status": 200, "latency_ms": 4.0 + rng.random(),
                     "ts_ms": now})
        if rng.random() < (0.6 if arm.name == "treatment" else 0.1):
            events.append({"user_id": user, "item_id": "i2", "event_type": "click",
                           "recommendation_id": rid, "event_id": f"c{i}",
                           "timestamp": now // 1000})
            events.append({"user_id": user, "item_id": "i2", "event_type": "purchase",
                           "recommendation_id": rid, "event_id": f"p{i}", "value": 25.0,
                           "timestamp": now // 1000})
    imps[0] = {**imps[0], "status": 503, "items": [], "source": "error"}
    ImpressionStream(redis_client, "t").add(imps)
    EventStream(redis_client, "t").append(events)


def test_report_names_the_better_arm_then_promote_serves_it(run, redis_client, tmp_path):
    assert run("create", "ab", "--arm", "control=current:5000", "--arm",
               "treatment=v2:5000").exit_code == 0
    assert run("report", "ab").output.startswith("Error: experiment 'ab' has not started")
    assert run("start", "ab").exit_code == 0
    _traffic(redis_client)
    store, out, png = tmp_path / "store", tmp_path / "r.json", tmp_path / "ctr.png"
    args = ("report", "ab", "--store", str(store), "--min-lift", "0.5")
    result = run(*args, "--json", str(out), "--plot", str(png))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["winner"] == "treatment" and report["state"] == "running"
    assert report["arms"]["treatment"]["ctr"] > report["arms"]["control"]["ctr"]
    assert report["arms"]["treatment"]["aov"] == 25.0
    assert sum(a["impressions"] for a in report["arms"].values()) == 400
    assert "verdict: treatment is better than control on CTR" in result.output
    assert re.search(r"^treatment\s+ctr\s+\+\d+\.\d\d pts\s+\[", result.output, re.M)
    assert "sample ratio: users control" in result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert redis_client.xlen("t:impressions") == redis_client.xlen("t:events") == 0  # drained
    again = run(*args, "--json", str(out))  # idempotent: the same figures from the logs
    assert again.exit_code == 0 and json.loads(out.read_text())["arms"] == report["arms"]

    promoted = run("promote", "ab", "treatment")
    assert promoted.exit_code == 0, promoted.output
    assert "promoted treatment: version v2 is served to everyone" in promoted.output
    assert redis_client.get("t:current") == b"v2"
    assert run("promote", "ab", "treatment").output.startswith("Error: experiment 'ab' is "
                                                               "stopped")
    after = run(*args, "--json", str(out))
    assert after.exit_code == 0 and "treatment was promoted, version v2" in after.output
    assert json.loads(out.read_text())["state"] == "stopped"


def test_report_of_an_unknown_experiment_is_one_error_line(run, tmp_path):
    result = run("report", "nope", "--store", str(tmp_path))
    assert result.exit_code == 1
    assert result.output == "Error: no experiment 'nope'; see `recsys experiment list`\n"
    bad = run("promote", "nope", "a")
    assert bad.exit_code == 1 and bad.output.count("\n") == 1
