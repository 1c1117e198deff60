"""evaluation.run on a small synthetic dataset: the JSON report, report.md and the plot."""

import json

import pytest

from evaluation.run import run_evaluation
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
