"""`recsys nightly --graphsage-config FILE` (issue 21): GraphSAGEConfig overrides from a JSON
file for --model graphsage, and GraphSAGE turned on inside --model served; every bad file
stops the run before any work with one `Error:` line naming the flag."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.graphsage import GraphSAGEConfig
from models.kinds import get
from models.kinds.graphsage import parse_graphsage_config

ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path, text: str) -> str:
    path = tmp_path / "graphsage.json"
    path.write_text(text)
    return str(path)


def test_the_file_overrides_the_defaults_for_both_kinds(tmp_path):
    path = _file(tmp_path, json.dumps({"dim": 32, "temperature": 0.1}))
    assert parse_graphsage_config(path) == GraphSAGEConfig(dim=32, temperature=0.1)
    assert get("graphsage").config({"graphsage_config": path}).dim == 32
    assert get("graphsage").config({"graphsage_config": ""}) == GraphSAGEConfig()
    served = get("served").config({"served_config": '{"n_tower": 5}', "graphsage_config": path})
    assert served.n_tower == 5 and served.graphsage == GraphSAGEConfig(dim=32, temperature=0.1)
    assert get("served").config({"served_config": ""}).graphsage is None  # off by default
    on = get("served").config({"served_config": '{"graphsage": {"epochs": 2}}'})
    assert on.graphsage == GraphSAGEConfig(epochs=2)


@pytest.mark.parametrize("text, message", [
    (None, "cannot read"),
    ("{dim: 3", "is not JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"dimension": 8}', r"unknown field\(s\) \['dimension'\]"),
    ('{"dim": 0}', r"GraphSAGEConfig.dim 0: a whole number >= 1"),
    ('{"temperature": "hot"}', "GraphSAGEConfig.temperature 'hot'"),
    ('{"id_dropout": 1.5}', "GraphSAGEConfig.id_dropout 1.5"),
    ('{"cold_items": "yes"}', "cold_items 'yes': true or false"),
])
def test_a_bad_file_names_the_flag_and_what_is_wrong(tmp_path, text, message):
    path = str(tmp_path / "missing.json") if text is None else _file(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        parse_graphsage_config(path)
    assert str(error.value).startswith("--graphsage_config: ")


def test_recsys_nightly_prints_one_error_line_for_a_bad_file(tmp_path):
    path = _file(tmp_path, '{"dimension": 8}')
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "app.cli", "nightly", f"--input={tmp_path}",
                        "--redis-url=redis://127.0.0.1:1/0", f"--store={tmp_path / 'store'}",
                        "--model=graphsage", f"--graphsage-config={path}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"Error: --graphsage-config: unknown field(s) ['dimension'] in {path!r}; known: "
        f"{sorted(GraphSAGEConfig.__dataclass_fields__)}"]
