"""`recsys canary check` (app/canary_cli.py) end to end over a real Redis and a local store:
a canary started as `recsys nightly --canary` starts it, impressions and events written
through the same streams the functions write, the real report, the decision and its action."""

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main
from batch import canary
from infra.redis.event_stream import EventStream
from infra.redis.experiments import Experiments
from infra.redis.impressions import ImpressionStream
from infra.redis.lists import ServedLists

USERS = [f"u{n}" for n in range(1200)]


@pytest.fixture
def served(redis_client):
    """v1 served to everyone, v2 published; the canary canary-v2 at 10% running."""
    lists = ServedLists(redis_client)
    for n, version in enumerate(("v1", "v2"), 1):
        lists.write_shard(version, "0", USERS, np.full((len(USERS), 3), n, np.int64),
                          np.ones((len(USERS), 3)))
        lists.flip(version, len(USERS), move_current=version == "v1")
    trial = canary.plan(10, "v1", "v2")
    canary.start(lists, trial)
    return lists, Experiments(redis_client).running()["canary-v2"]


def _traffic(redis_client, exp, canary_latency_ms=12, canary_clicks_every=10):
    """One answer per user, logged as the functions log it, with 12 ms on the control; every
    10th user of the control (every `canary_clicks_every`-th of the canary) clicks item i1."""
    now_ms = int(time.time() * 1000)
    impressions, events = [], []
    for n, user in enumerate(USERS):
        arm = exp.arm_for(user)
        rid = f"{n:032x}"
        latency = canary_latency_ms if arm.name == "canary" else 12
        impressions.append({"recommendation_id": rid, "user_id": user, "experiment": exp.name,
                            "arm": arm.name, "version": arm.version, "items": ["i1", "i2"],
                            "source": "cache", "status": 200, "latency_ms": latency,
                            "ts_ms": now_ms})
        every = canary_clicks_every if arm.name == "canary" else 10
        if n % every == 0:
            events.append({"user_id": user, "item_id": "i1", "event_type": "click",
                           "timestamp": now_ms // 1000, "event_id": f"e{n}",
                           "recommendation_id": rid})
    ImpressionStream(redis_client).add(impressions)
    EventStream(redis_client).append(events)


def _check(redis_url, tmp_path, *flags):
    result = CliRunner().invoke(main, ["canary", "check", "--store", str(tmp_path / "store"),
                                       *flags], env={"REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_canary_whose_guardrails_hold_is_promoted(served, redis_client, redis_url, tmp_path):
    lists, exp = served
    _traffic(redis_client, exp)
    out = _check(redis_url, tmp_path, "--min-users", "50")
    assert out.startswith("canary canary-v2: promote — promoted: v2 is now served to everyone")
    assert "ctr not significantly worse" in out and '"users": {"control": ' in out
    assert lists.current() == "v2"
    record = Experiments(redis_client).get("canary-v2")
    assert record["state"] == "stopped" and record["promoted_arm"] == "canary"
    (decision,) = record["decisions"]
    assert decision["action"] == "promote" and decision["current"] == "v2"
    figures = decision["figures"]
    assert figures["users"]["canary"] + figures["users"]["control"] == len(USERS)
    assert 60 < figures["users"]["canary"] < 180  # 10% of 1,200 within sampling error
    # Nothing is running any more: the next hourly check says so, exit 0.
    assert _check(redis_url, tmp_path) == ("no canary experiment is running; nothing to "
                                           "check\n")


def test_a_canary_breaching_its_latency_guardrail_is_rolled_back(served, redis_client,
                                                                 redis_url, tmp_path):
    lists, exp = served
    _traffic(redis_client, exp, canary_latency_ms=400)
    out = _check(redis_url, tmp_path, "--min-users", "50", "--json")
    result = json.loads(out)
    assert result["action"] == "rollback" and result["current"] == "v1"
    assert result["reasons"][0].startswith("guardrail breached on arm 'canary': latency p99 "
                                           "400.0 ms >")
    assert lists.current() == "v1" and Experiments(redis_client).running() == {}
    # Every user is back on v1, which kept every list.
    assert all(lists.get_list("v1", u) is not None for u in USERS)
    assert Experiments(redis_client).get("canary-v2")["decisions"][-1]["action"] == "rollback"


def test_a_canary_clicked_much_less_is_rolled_back(served, redis_client, redis_url, tmp_path):
    lists, exp = served
    _traffic(redis_client, exp, canary_clicks_every=10_000)  # one click at most on the canary
    result = json.loads(_check(redis_url, tmp_path, "--min-users", "5000", "--json"))
    assert result["action"] == "rollback", result["reasons"]
    assert result["reasons"][0].startswith("ctr significantly worse: canary − control = -0.")
    assert lists.current() == "v1"


def test_too_few_users_waits_and_changes_nothing(served, redis_client, redis_url, tmp_path):
    lists, exp = served
    _traffic(redis_client, exp)
    out = _check(redis_url, tmp_path, "--min-users", "5000")
    assert out.startswith("canary canary-v2: wait — waiting: the canary keeps its share; v1 "
                          "stays current")
    assert "fewer than 5000 users per arm yet" in out
    assert lists.current() == "v1" and list(Experiments(redis_client).running()) == ["canary-v2"]
    again = _check(redis_url, tmp_path, "--min-users", "5000")  # the hour after: same data
    assert again.startswith("canary canary-v2: wait")
    assert [d["action"] for d in Experiments(redis_client).get("canary-v2")["decisions"]] == [
        "wait", "wait"]


def test_no_canary_running_says_so(redis_client, redis_url, tmp_path):
    redis_client.zadd("recsys:versions", {"v1": 1})
    store = Experiments(redis_client)
    from models.experiments.assignment import experiment

    store.create(experiment("ab", [{"name": "a", "version": "current", "allocation": 5000},
                                   {"name": "b", "version": "v1", "allocation": 5000}], "s"))
    store.start("ab")
    assert _check(redis_url, tmp_path) == ("no canary experiment is running (running: ab, not a "
                                           "canary); nothing to check\n")
    assert list(store.running()) == ["ab"]


def test_a_failing_check_is_one_error_line(redis_url, tmp_path):
    result = CliRunner().invoke(main, ["canary", "check", "--redis-url", "redis://127.0.0.1:1/0",
                                       "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: Redis error") and "Traceback" not in result.output
    bad = CliRunner().invoke(main, ["canary", "check", "--min-users", "0"],
                             env={"REDIS_URL": redis_url})
    assert bad.exit_code == 2 and "--min-users" in bad.output


def test_a_canary_whose_control_is_no_longer_current_is_stopped(served, redis_client,
                                                                redis_url, tmp_path):
    lists, exp = served
    _traffic(redis_client, exp)  # healthy: it would be promoted
    lists.write_shard("v3", "0", USERS, np.full((len(USERS), 3), 3, np.int64),
                      np.ones((len(USERS), 3)))
    lists.flip("v3", len(USERS))  # a plain nightly run published v3 meanwhile
    result = json.loads(_check(redis_url, tmp_path, "--min-users", "50", "--json"))
    assert result["action"] == "rollback" and result["current"] == "v3"
    assert result["reasons"][0].startswith("current moved to v3 since the canary started")
    assert lists.current() == "v3" and Experiments(redis_client).running() == {}
