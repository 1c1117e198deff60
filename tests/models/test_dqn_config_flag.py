"""`recsys nightly --model served_dqn --dqn-config FILE`: DQNConfig overrides from a JSON
file; every bad file stops the run before any work with one `Error:` line naming the flag."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.dqn_config import DQNConfig, parse_dqn_config
from models.kinds import get

ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path, text: str) -> str:
    path = tmp_path / "dqn.json"
    path.write_text(text)
    return str(path)


def test_the_file_overrides_the_defaults(tmp_path):
    path = _file(tmp_path, json.dumps({"rounds": 3, "hidden": [8], "guard_budget": None,
                                       "guard_margins": [0.5, 1]}))
    want = DQNConfig(rounds=3, hidden=(8,), guard_budget=None, guard_margins=(0.5, 1))
    assert parse_dqn_config(path) == want
    config = get("served_dqn").config({"served_config": '{"n_tower": 5}', "dqn_config": path})
    assert config.dqn == want and config.served.n_tower == 5
    assert get("served_dqn").config({"served_config": ""}).dqn == DQNConfig()


@pytest.mark.parametrize("text, message", [
    (None, "cannot read"),
    ("{rounds: 3", "is not JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"epochs": 8}', r"unknown field\(s\) \['epochs'\]"),
    ('{"rounds": 0}', r"DQNConfig.rounds 0: a whole number >= 1"),
    ('{"gamma": 1.5}', r"DQNConfig.gamma 1.5: a number in \[0, 1\]"),
    ('{"learning_rate": "fast"}', "DQNConfig.learning_rate 'fast'"),
    ('{"hidden": [64, 0]}', r"DQNConfig.hidden \(64, 0\)"),
    ('{"guard_budget": 1}', "DQNConfig.guard_budget 1"),
    ('{"guard_margins": []}', "DQNConfig.guard_margins"),
    ('{"batch": true}', "DQNConfig.batch True"),
])
def test_a_bad_file_names_the_flag_and_what_is_wrong(tmp_path, text, message):
    path = str(tmp_path / "missing.json") if text is None else _file(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        parse_dqn_config(path)
    assert str(error.value).startswith("--dqn_config: ")


def test_recsys_nightly_prints_one_error_line_for_a_bad_file(tmp_path):
    path = _file(tmp_path, '{"rounds": 0}')
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "app.cli", "nightly", f"--input={tmp_path}",
                        "--redis-url=redis://127.0.0.1:1/0", f"--store={tmp_path / 'store'}",
                        "--model=served_dqn", f"--dqn-config={path}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"Error: --dqn-config: {path!r}: DQNConfig.rounds 0: a whole number >= 1"]
