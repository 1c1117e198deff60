"""Offline evaluation under the temporal-holdout protocol (TH, the default) or leave-one-out with
sampled negatives (LOO-S), on one dataset or several (../shared/EVALUATION.md; our figures in
docs/EVALUATION_RESULTS.md).

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k \
        --models popularity,recent_popularity,item_knn --json out.json --report reports/
    recsys evaluate --protocol loo-sampled --dataset movielens:A --dataset movielens:B \
        --models popularity,mf,served
    python -m evaluation.run --dataset movielens:../shared/datasets/ml-100k \
        --models popularity,recent_popularity,item_knn --json out.json --report-dir reports/

TH splits by time, builds warm and fresh cases, fits each model on the train side only; LOO-S
holds out each user's latest item and has each model score it among 99 sampled negatives.
Writes the JSON report, plus `report.md` and the NDCG@10 / long-tail plot(s) when a report
folder is given. Several datasets give one report: a table per dataset, then a summary.
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
from evaluation.report import markdown_report, plot_ndcg_vs_longtail, summarize, write_atomic
from infra.parquet import DEAD_SCHEMA, parquet_bytes
from models.evaluation import (
    Cases,
    build_cases,
    build_report,
    evaluate_model,
    pool_recall,
    temporal_split,
)
from models.evaluation_loo import build_loo_report, evaluate_loo, loo_split
from models.schema import Dataset

logger = logging.getLogger(__name__)
PROTOCOLS = ("th", "loo-sampled")


def run_evaluation(datasets: Dataset | Sequence[Dataset], model_names: list[str],
                   json_path: str | None, report_dir: str | None, *, registry=None,
                   protocol: str = "th") -> dict:
    """Evaluates the named models on each dataset and writes the reports.

    Args:
        datasets: one dataset (interactions plus optional users and items tables) or several.
        model_names: keys of `registry` (default `evaluation.registry.MODEL_REGISTRY`).
        json_path: where to write the JSON report, or None.
        report_dir: folder for report.md and the plot(s), or None.
        registry: name -> factory of an unfitted `Recommender`.
        protocol: "th" (temporal holdout) or "loo-sampled".

    Returns:
        One dataset: its report (`models.evaluation.build_report` or
        `models.evaluation_loo.build_loo_report`, plus "pool_recall" for the models with
        candidate pools). Several: {"protocol", "datasets": [report, ...], "summary"}.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: expected one of {list(PROTOCOLS)}")
    factories = resolve_models(model_names, registry)
    single = isinstance(datasets, Dataset)
    reports = [evaluate_dataset(d, factories, protocol)
               for d in ([datasets] if single else datasets)]
    if not reports:
        raise ValueError("no dataset to evaluate")
    dead = [d for report in reports for d in report.pop("_dead")]
    out = reports[0] if len(reports) == 1 else {
        "protocol": protocol, "datasets": reports, "summary": summarize(reports)}
    if json_path:
        write_atomic(json_path, json.dumps(out, indent=2))
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        write_atomic(os.path.join(report_dir, "report.md"), markdown_report(out))
        for n, report in enumerate(reports):
            plot = "ndcg_vs_longtail.png" if len(reports) == 1 else f"ndcg_vs_longtail_{n + 1}.png"
            plot_ndcg_vs_longtail(report, os.path.join(report_dir, plot))
        if dead:
            with open(os.path.join(report_dir, "dead_letters.parquet"), "wb") as f:
                f.write(parquet_bytes(dead, DEAD_SCHEMA))
    return out


def evaluate_dataset(dataset: Dataset, factories: dict, protocol: str) -> dict:
    """One dataset's report under `protocol` (see `run_evaluation`); its dead letters ride
    along under "_dead" until the report folder is written."""
    if protocol == "th":
        split = temporal_split(dataset.interactions)
        cases = build_cases(split)
        items = _items_before(dataset, split.cutoff)
        logger.info("%s: cutoff %s: %d train / %d test events, %d warm / %d fresh cases",
                    dataset.name, split.cutoff, len(split.train), len(split.test),
                    len(cases.warm), len(cases.fresh))
    else:
        split = loo_split(dataset.interactions)
        cases, items = Cases(split.cases, []), dataset.items
        logger.info("%s: LOO-S: %d train events, %d users", dataset.name, len(split.train),
                    len(split.cases))
    results, pools = {}, {}
    for name, factory in tqdm(factories.items(), desc="models", unit="model"):
        model = factory()
        if protocol == "th":
            results[name] = evaluate_model(model, split, cases, users=dataset.users,
                                           items=items)
        else:
            results[name] = evaluate_loo(model, split, users=dataset.users, items=items)
        if hasattr(model, "candidate_pools"):
            pools[name] = pool_recall(model, cases)
        logger.info("%s on %s: all NDCG@10 %.4f in %.1f s of training", name, dataset.name,
                    results[name]["all"]["ndcg@10"], results[name]["train_seconds"])
        del model
    report = (build_report(dataset.name, split, cases, results) if protocol == "th"
              else build_loo_report(dataset.name, split, results))
    report["pool_recall"] = pools
    dead = dataset.extras.get("dead_letters") or []
    report["dead_letters"] = dict(Counter(d["reason"] for d in dead))
    report["_dead"] = dead
    return report


def split_specs(values: Sequence[str]) -> list[str]:
    """Dataset specs from repeated and comma-separated values: a comma starts a new spec only
    before a scheme ("movielens:A,movielens:B"), so synthetic's options stay whole
    ("synthetic:users=10,items=5")."""
    from infra.datasets import SCHEMES

    specs: list[str] = []
    for value in values:
        parts: list[str] = []
        for part in value.split(","):
            if parts and part.strip().partition(":")[0] not in SCHEMES:
                parts[-1] += "," + part
            else:
                parts.append(part.strip())
        specs += [p for p in parts if p]
    return specs


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
    parser.add_argument("--dataset", action="append", default=None,
                        help="e.g. movielens:PATH, parquet:PATH, csv:PATH, synthetic:users=...; "
                             "repeat it for several (default: RECSYS_DATASET)")
    parser.add_argument("--models", default="popularity,recent_popularity,item_knn")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="th")
    parser.add_argument("--json", default=None, help="JSON report path")
    parser.add_argument("--report-dir", default=None, help="folder for report.md and the plot")
    args = parser.parse_args(argv)
    specs = split_specs(args.dataset or [os.environ.get("RECSYS_DATASET") or ""])
    if not specs:
        parser.error("--dataset (or RECSYS_DATASET) is required")
    from infra.datasets import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    datasets = [load_dataset(s) for s in specs]
    return run_evaluation(datasets[0] if len(datasets) == 1 else datasets,
                          args.models.split(","), args.json, args.report_dir,
                          protocol=args.protocol)


if __name__ == "__main__":
    main()
