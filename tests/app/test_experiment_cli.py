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
