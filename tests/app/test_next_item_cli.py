"""`recsys evaluate --task next-item`: /similar's held-out task beside its co-occurrence
baseline, on a tiny synthetic dataset (the ML-100K figures: docs/EVALUATION_RESULTS.md)."""

import json

import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.mark.slow
def test_next_item_task_reports_every_variant_beside_the_baseline(tmp_path):
    out = tmp_path / "next.json"
    result = CliRunner().invoke(main, ["evaluate", "--dataset",
                                       "synthetic:users=80,items=40,seed=2",
                                       "--task", "next-item", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["task"] == "next-item" and report["cases"] > 0
    assert set(report["variants"]) == {"cooccurrence", "knn", "embedding", "blend"}
    for row in report["variants"].values():
        assert 0 <= row["hr@10"] <= 1 and 0 <= row["mrr@10"] <= row["hr@10"]
    result = CliRunner().invoke(main, ["evaluate", "--dataset", "x", "--task", "nope"])
    assert result.exit_code != 0 and "--task" in result.output
