"""evaluation.run on small synthetic datasets: the JSON report, report.md and the plot(s), under
either protocol, one dataset or several (and `recsys evaluate`'s flags for them)."""

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from app.cli import main
from evaluation.run import run_evaluation, split_specs
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


def test_several_datasets_give_a_table_each_then_a_summary(tmp_path):
    report = run_evaluation([generate(120, 40, seed=3), generate(100, 30, seed=4)],
                            ["popularity", "item_knn"], str(tmp_path / "r.json"), str(tmp_path))
    assert [r["dataset"] for r in report["datasets"]] == [
        "synthetic:users=120,items=40,seed=3", "synthetic:users=100,items=30,seed=4"]
    assert json.loads((tmp_path / "r.json").read_text()) == report
    summary = report["summary"]
    assert summary["models"]["popularity"][0]["ndcg@10/popularity"] == 1.0
    knn = summary["models"]["item_knn"]
    assert knn[1]["ndcg@10"] == report["datasets"][1]["models"]["item_knn"]["all"]["ndcg@10"]
    assert summary["above_popularity"]["item_knn"] == sum(
        r["ndcg@10/popularity"] > 1 and r["hr@10/popularity"] > 1 for r in knn)
    page = (tmp_path / "report.md").read_text()
    assert page.index("## 1. synthetic:users=120") < page.index("## 2. synthetic:users=100") \
        < page.index("## Summary")
    assert page.count("| item_knn |") == 3 and page.count("long-tail cov.@10") >= 3
    assert (tmp_path / "ndcg_vs_longtail_2.png").read_bytes()[:4] == b"\x89PNG"


def test_loo_sampled_scores_every_model_beside_popularity(tmp_path):
    report = run_evaluation(generate(150, 300, seed=5), ["popularity", "ease"], None,
                            str(tmp_path), protocol="loo-sampled")
    assert report["protocol"] == "loo-sampled" and report["negatives"] == 99
    for m in report["models"].values():
        assert 0 <= m["all"]["hr@10"] <= 1 and 0 <= m["all"]["ndcg@10"] <= m["all"]["hr@10"]
        assert 0 < m["coverage@10"] <= 1 and "longtail_coverage@10" in m
    page = (tmp_path / "report.md").read_text()
    assert "all HR@10 / popularity's" in page and "| ease |" in page


def test_dataset_specs_split_on_commas_before_a_scheme_only():
    assert split_specs(["movielens:a,movielens:b", "synthetic:users=10,items=5,seed=1"]) == [
        "movielens:a", "movielens:b", "synthetic:users=10,items=5,seed=1"]


def test_cli_takes_several_datasets_and_the_protocol(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, [
        "evaluate", "--dataset", "synthetic:users=80,items=30,seed=1",
        "--dataset", "synthetic:users=60,items=30,seed=2", "--protocol", "loo-sampled",
        "--models", "popularity", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["protocol"] == "loo-sampled" and len(report["datasets"]) == 2
    bad = CliRunner().invoke(main, ["evaluate", "--dataset", "synthetic:users=80",
                                    "--protocol", "random", "--models", "popularity"])
    assert bad.exit_code == 2 and "--protocol" in bad.output
