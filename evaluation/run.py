"""Offline evaluation under the temporal-holdout protocol (../shared/EVALUATION.md; our figures
in docs/EVALUATION_RESULTS.md).

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k \
        --models popularity,recent_popularity,item_knn --json out.json --report reports/
    python -m evaluation.run --dataset movielens:../shared/datasets/ml-100k \
        --models popularity,recent_popularity,item_knn --json out.json --report-dir reports/

Splits by time, builds warm and fresh cases, fits each model on the train side only and writes
the JSON report, plus `report.md` and `ndcg_vs_longtail.png` when a report folder is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence

from tqdm import tqdm

from evaluation.registry import resolve_models
from evaluation.report import markdown_report, plot_ndcg_vs_longtail, write_atomic
from infra.parquet import DEAD_SCHEMA, parquet_bytes
from models.evaluation import build_cases, build_report, evaluate_model, temporal_split
from models.schema import Dataset

logger = logging.getLogger(__name__)


def run_evaluation(dataset: Dataset, model_names: list[str], json_path: str | None,
                   report_dir: str | None, *, registry=None) -> dict:
    """Evaluates the named models on `dataset` and writes the reports.

    Args:
        dataset: interactions plus optional users and items tables.
        model_names: keys of `registry` (default `evaluation.registry.MODEL_REGISTRY`).
        json_path: where to write the JSON report, or None.
        report_dir: folder for report.md and ndcg_vs_longtail.png, or None.
        registry: name -> factory of an unfitted `Recommender`.

    Returns:
        The report dict (see `models.evaluation.build_report`).
    """
    factories = resolve_models(model_names, registry)
    split = temporal_split(dataset.interactions)
    cases = build_cases(split)
    items = _items_before(dataset, split.cutoff)
    logger.info("cutoff %s: %d train / %d test events, %d warm / %d fresh cases",
                split.cutoff, len(split.train), len(split.test), len(cases.warm),
                len(cases.fresh))
    results = {}
    for name, factory in tqdm(factories.items(), desc="models", unit="model"):
        results[name] = evaluate_model(factory(), split, cases, users=dataset.users, items=items)
        logger.info("%s: all NDCG@10 %.4f in %.1f s of training", name,
                    results[name]["all"]["ndcg@10"], results[name]["train_seconds"])
    report = build_report(dataset.name, split, cases, results)
    dead = dataset.extras.get("dead_letters") or []
    report["dead_letters"] = dict(Counter(d["reason"] for d in dead))
    if json_path:
        write_atomic(json_path, json.dumps(report, indent=2))
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        write_atomic(os.path.join(report_dir, "report.md"), markdown_report(report))
        plot_ndcg_vs_longtail(report, os.path.join(report_dir, "ndcg_vs_longtail.png"))
        if dead:
            with open(os.path.join(report_dir, "dead_letters.parquet"), "wb") as f:
                f.write(parquet_bytes(dead, DEAD_SCHEMA))
    return report


def _items_before(dataset: Dataset, cutoff: float):
    """The items table with tags rebuilt from tags made before the cutoff (no future leak)."""
    tags = dataset.extras.get("tags")
    if dataset.items is None or tags is None or "tags" not in dataset.items:
        return dataset.items
    from infra.datasets import item_tags

    fresh_tags = item_tags(tags, before=cutoff).reindex(dataset.items["item_id"]).fillna("")
    return dataset.items.assign(tags=fresh_tags.to_numpy())


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=os.environ.get("RECSYS_DATASET"), required=False,
                        help="e.g. movielens:PATH, parquet:PATH, csv:PATH, synthetic:users=...")
    parser.add_argument("--models", default="popularity,recent_popularity,item_knn")
    parser.add_argument("--json", default=None, help="JSON report path")
    parser.add_argument("--report-dir", default=None, help="folder for report.md and the plot")
    args = parser.parse_args(argv)
    if not args.dataset:
        parser.error("--dataset (or RECSYS_DATASET) is required")
    from infra.datasets import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run_evaluation(load_dataset(args.dataset), args.models.split(","), args.json,
                          args.report_dir)


if __name__ == "__main__":
    main()
