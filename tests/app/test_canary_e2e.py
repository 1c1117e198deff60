"""Canary rollouts end to end (issue 18's acceptance): real nightly runs publish two canaries
at 10%, a real `recsys serve` answers simulated users over HTTP and takes their clicks through
/events, and `recsys canary check` rolls back the one that breaches a guardrail and promotes
the one that holds. Real Redis, real Beam (DirectRunner), real HTTP."""

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from batch.nightly import run
from infra.redis.experiments import Experiments
from infra.redis.lists import ServedLists
from tests.app.http_json import get_json as _get
from tests.app.http_json import post_json as _post
from tests.conftest import recsys_serve

REQUESTS_PER_USER = 10  # the canary's ~12 users make ~120 answers: p99 is not one outlier


def _traffic(env: dict, users: list[str], log) -> dict[str, list[dict]]:
    """Every user asks REQUESTS_PER_USER times; every third user clicks the first item of
    their first answer (through /events, with its recommendation_id), whatever their arm.
    Returns each user's answers. The server stops (flushing its impressions) on return."""
    answers = {}
    with recsys_serve({**env, "WORKERS": "1", "THREADS": "1"}, log) as (url, _):
        for u in users:
            answers[u] = [_get(f"{url}/recommend?user_id={u}&k=5")
                          for _ in range(REQUESTS_PER_USER)]
        clicks = [{"user_id": u, "item_id": a[0]["items"][0]["item_id"], "event_type": "click",
                   "event_id": f"click-{a[0]['recommendation_id']}",
                   "recommendation_id": a[0]["recommendation_id"]}
                  for n, (u, a) in enumerate(answers.items()) if n % 3 == 0 and a[0]["items"]]
        assert _post(f"{url}/events", {"events": clicks})["stored"] == len(clicks)
    return answers


def _check(env: dict) -> dict:
    # 2 users per arm: the canary has ~12 of 120 (fewer than 2 has odds of 5e-5 per run).
    result = CliRunner().invoke(main, ["canary", "check", "--min-users", "2",
                                       "--min-impressions", "20", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
def test_a_breaching_canary_is_rolled_back_and_a_holding_one_promoted(
        tmp_path, redis_url, redis_client, tiny_dataset):
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    store = tmp_path / "store"
    argv = [f"--input={path}", f"--store={store}", f"--redis_url={redis_url}", "--model=mf",
            "--epochs=1", "--dim=4", "--k=5", "--skip_gate", "--canary=10",
            "--runner=FnApiRunner", "--direct_running_mode=in_memory"]
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": str(store), "RECSYS_NAMESPACE": "recsys",
           "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None, "RECSYS_API_KEY": None}
    lists, experiments = ServedLists(redis_client), Experiments(redis_client)
    users = sorted({str(u) for u in tiny_dataset.interactions["user_id"]})
    v1 = run(argv)["version"]  # nothing served yet: to everyone

    # A broken canary: its lists are lost, so its users get popular items (a fallback).
    second = run(argv)
    v2, name = second["version"], second["canary"]["experiment"]
    exp = experiments.running()[name]
    assert lists.current() == v1 and [a.allocation for a in exp.arms] == [9000, 1000]
    keys = list(redis_client.scan_iter(f"recsys:v:{v2}:u:*"))
    assert keys and redis_client.delete(*keys) == len(keys)
    answers = _traffic(env, users, tmp_path / "serve-v2.log")
    on_canary = [u for u in users if exp.arm_for(u).name == "canary"]
    assert on_canary and all(a["model_version"] == v2 and a["arm"] == "canary"
                             and a["source"] == "popular"
                             for u in on_canary for a in answers[u])
    decision = _check(env)
    assert decision["action"] == "rollback", decision
    assert decision["reasons"][0].startswith("guardrail breached on arm 'canary': fallback rate")
    assert lists.current() == v1 and experiments.running() == {}
    # Nobody is left without a list: every canary user is back on v1's cached list.
    with recsys_serve(env, tmp_path / "serve-after.log") as (url, _):
        back = [_get(f"{url}/recommend?user_id={u}&k=5") for u in on_canary]
    assert all(b["model_version"] == v1 and b["source"] == "cache" and b["arm"] is None
               for b in back)

    # A healthy canary: same clicks, same speed, every list in place.
    third = run(argv)
    v3, name = third["version"], third["canary"]["experiment"]
    assert third["canary"]["control"] == v1 and lists.current() == v1
    _traffic(env, users, tmp_path / "serve-v3.log")
    decision = _check(env)
    assert decision["action"] == "promote", decision
    assert decision["current"] == v3 and lists.current() == v3
    record = experiments.get(name)
    assert record["promoted_arm"] == "canary" and record["decisions"][-1]["action"] == "promote"
    assert experiments.get(second["canary"]["experiment"])["decisions"][-1]["action"] == (
        "rollback")
