"""`recsys demo` (what `make demo` runs) end to end on small generated data: the default model
publishes, a warm user gets the nightly list and a fresh user an on-demand one. Slow (it trains
the served model and MF): `.ci/run` runs it with `-m slow`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_serves_the_default_model_to_a_warm_and_a_fresh_user(tmp_path, redis_url):
    out = tmp_path / "demo.json"
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--workdir", str(tmp_path / "demo"),
         "--users", "400", "--items", "200", "--redis-url",
         redis_url.rsplit("/", 1)[0] + "/3", "--json", str(out)],
        capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["warm"]["source"] == "cache" and len(result["warm"]["items"]) == 10
    assert result["fresh"]["source"] == "on_demand" and len(result["fresh"]["items"]) == 10
    assert set(result["ndcg@10"]) == {"served", "mf", "popularity"}
    assert "served " in done.stderr and "warm user" in done.stderr
