"""The popularity row of ../shared/EVALUATION.md, reproduced to the 4th decimal on MovieLens 100K.

Reads ../shared/datasets/ml-100k beside the repository; skips where it is absent.
"""

import json
from pathlib import Path

import pytest

from evaluation.run import run_evaluation
from infra.datasets import load_dataset

ML_100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"

pytestmark = [
    pytest.mark.movielens,
    pytest.mark.skipif(not (ML_100K / "u.data").exists(),
                       reason=f"MovieLens 100K not found at {ML_100K}"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml100k")
    dataset = load_dataset(f"movielens:{ML_100K}")
    result = run_evaluation(dataset, ["popularity"], str(out / "report.json"), str(out))
    return result, out


def test_split_and_case_counts(report):
    result, _ = report
    assert result["cutoff"] == "1998-03-07T02:21:09Z"
    assert (result["train_events"], result["test_events"]) == (79_999, 20_001)
    assert result["cases"] == {"warm": 109, "fresh": 192}


def test_popularity_row_reproduces_evaluation_md(report):
    result, _ = report
    m = result["models"]["popularity"]
    assert round(m["warm"]["ndcg@10"], 4) == 0.1457
    assert round(m["fresh"]["ndcg@10"], 4) == 0.4022
    assert round(m["all"]["ndcg@10"], 4) == 0.3093
    assert round(m["all"]["recall@20"], 4) == 0.2874
    assert round(m["all"]["hr@10"], 4) == 0.7841
    assert round(m["coverage@10"], 3) == 0.047
    assert m["longtail_coverage@10"] == 0.0
    lo, hi = m["all"]["ndcg@10_ci"]
    assert lo < m["all"]["ndcg@10"] < hi


def test_reports_are_written(report):
    result, out = report
    assert json.loads((out / "report.json").read_text()) == result
    assert "| popularity |" in (out / "report.md").read_text()
    assert (out / "ndcg_vs_longtail.png").read_bytes()[:4] == b"\x89PNG"
