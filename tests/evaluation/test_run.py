"""evaluation.run on a small synthetic dataset: the JSON report, report.md and the plot."""

import json

import pyarrow.parquet as pq
import pytest

from evaluation.run import run_evaluation
from infra.parquet import DEAD_SCHEMA
from models.synthetic import generate


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    report = run_evaluation(generate(200, 60, seed=1), ["popularity", "ease"],
                            str(out / "report.json"), str(out / "reports"))
    return report, out


def test_every_model_is_scored_on_the_same_cases(evaluated):
    report, _ = evaluated
    assert list(report["models"]) == ["popularity", "ease"]
    assert report["cases"]["warm"] + report["cases"]["fresh"] > 0
    for metrics in report["models"].values():
        assert 0.0 <= metrics["all"]["ndcg@10"] <= 1.0


def test_reports_are_written(evaluated):
    report, out = evaluated
    assert json.loads((out / "report.json").read_text()) == report
    page = (out / "reports" / "report.md").read_text()
    assert "| popularity |" in page and "| ease |" in page
    assert (out / "reports" / "ndcg_vs_longtail.png").read_bytes()[:4] == b"\x89PNG"


def test_dead_letters_are_written_in_the_nightly_jobs_layout(tmp_path):
    dataset = generate(100, 40, seed=2)
    dataset.extras["dead_letters"] = [{"file": "a.csv", "reason": "missing item_id", "row": "{}"}]
    report = run_evaluation(dataset, ["popularity"], None, str(tmp_path))
    assert report["dead_letters"] == {"missing item_id": 1}
    table = pq.read_table(tmp_path / "dead_letters.parquet")
    assert table.schema == DEAD_SCHEMA and table.to_pylist() == dataset.extras["dead_letters"]
