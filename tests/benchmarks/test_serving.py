"""The serving benchmark (benchmarks/serving.py): what it says about the server processes, and
its served-bundle run end to end on a tiny catalog (slow: trains a tiny served model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from benchmarks.serving_load import process_info

TINY_SERVED = ('{"tower": {"dim": 8, "hidden": 16, "epochs": 1, "history": 10, "recent": 3}, '
               '"ranker": {"hidden": [8], "neighbours": 20, "epochs": 1, "members": 1}, '
               '"windows": [0.9], "n_tower": 15, "n_knn": 15, "n_session": 10, '
               '"n_popular": 10, "candidates": 40}')


def _idle(code: str) -> subprocess.Popen:
    """A Python process that runs `code`, says so, then waits for its stdin to close."""
    proc = subprocess.Popen([sys.executable, "-c", f"{code}; print('ready', flush=True); "
                             "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_process_info_names_the_heavy_modules_a_server_mapped():
    procs = [_idle("import numpy"), _idle("import pandas")]  # pandas maps pyarrow's libraries
    try:
        light, heavy = (process_info(p.pid) for p in procs)
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)
    assert light["heavy_modules_mapped"] == [] and light["rss_mb"] > 0
    assert "pandas" in heavy["heavy_modules_mapped"]
    assert not heavy["tensorflow_loaded"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)")
def test_served_bundle_run_answers_fresh_users_on_demand_over_http(tmp_path):
    from benchmarks.serving import main
    from benchmarks.serving_report import summary_table

    out = tmp_path / "serving.json"
    main(["--kinds", "served", "--items", "200", "--served-users", "150", "--served-events",
          "3000", "--served-config", TINY_SERVED, "--workers", "2", "--fresh-users", "20",
          "--rounds", "1", "--duration", "1", "--fresh-rate", "20", "--fresh-seconds", "2",
          "--cold-starts", "2", "--served-store", str(tmp_path / "store"), "--json", str(out)])
    result = json.loads(out.read_text())
    served = result["kinds"]["served"]
    fresh = served["fresh"]
    assert list(result["kinds"]) == ["served"]
    assert fresh["errors"] == 0 and fresh["sources"] == {"on_demand": fresh["requests"]}
    colds = served["cold_starts_s"]
    assert len(colds) == 2 and 0 < min(colds) <= served["cold_start_s"] <= max(colds) < 60
    assert served["cached"]["rps"] > 0
    # The experiment rounds ran against both arms' versions (the run checks the answers).
    experiment = served["cached_experiment"]
    assert experiment["rps"] > 0 and experiment["ratio_to_cached"] == round(
        experiment["rps"] / served["cached"]["rps"], 3)
    assert "experiment_ok" in served["checks"]
    # Metrics on vs off (RECSYS_METRICS=0), alternating rounds; the on server counted them all.
    metrics = served["metrics"]
    assert metrics["rps_on"] > 0 and metrics["rps_off"] > 0
    assert metrics["ratio"] == round(metrics["rps_on"] / metrics["rps_off"], 3)
    assert metrics["recorded"]["counted"] >= metrics["recorded"]["answered_by_wrk"] > 0
    assert served["checks"]["metrics_ok"] == (metrics["ratio"] >= 0.9)
    assert "metrics on" in summary_table(result)
    assert served["bundle"]["bundle_users"] <= 150 and served["bundle"]["items"] == 200
    assert "train_seconds" in served["bundle"] and served["server"]["processes"] == 3
    assert summary_table(result).splitlines()[2].startswith("served ")
