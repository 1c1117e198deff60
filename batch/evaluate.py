"""Offline evaluation under the temporal-holdout protocol (docs EVALUATION.md).

    python -m batch.evaluate --dataset movielens:../shared/datasets/ml-100k \
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
from collections.abc import Callable, Sequence

import pandas as pd
from tqdm import tqdm

from models.baselines import ItemKNN, Popularity, RecentPopularity
from models.evaluation import Recommender, build_cases, build_report, evaluate_model, temporal_split
from models.mf import MFConfig
from models.retrieval import MFRecommender
from models.schema import Dataset
from models.served_fit import ServedRecommender
from models.two_tower import TwoTowerRecommender

logger = logging.getLogger(__name__)

# Name -> factory of an unfitted model. Other modules add theirs (mf, two_tower, served).
MODEL_REGISTRY: dict[str, Callable[[], Recommender]] = {
    "popularity": Popularity,
    "recent_popularity": RecentPopularity,
    "item_knn": ItemKNN,
    "mf": MFRecommender,
    "mf_explicit": lambda: MFRecommender(MFConfig(objective="explicit")),
    "mf_bpr": lambda: MFRecommender(MFConfig(objective="bpr")),
    "two_tower": TwoTowerRecommender,
    "served": ServedRecommender,
}


def _peers_module():
    """benchmarks/peers.py (beside batch/ in the repository; not part of the package)."""
    import importlib.util
    import sys

    try:
        import benchmarks.peers as peers
    except ImportError:  # the `recsys` script: the repository root is not on sys.path
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "benchmarks", "peers.py")
        if not os.path.exists(path):
            return None
        spec = importlib.util.spec_from_file_location("recsys_benchmarks_peers", path)
        peers = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = peers  # dataclasses look their module up while defined
        spec.loader.exec_module(peers)
    return peers


# The peers of EVALUATION.md: EASE always, ALS and BPR with the `peers` extra (implicit).
if (_peers := _peers_module()) is not None:
    import importlib.util

    MODEL_REGISTRY.update({name: factory for name, factory in _peers.PEERS.items()
                           if name == "ease" or importlib.util.find_spec("implicit")})

METRIC_COLUMNS = (
    ("warm NDCG@10", lambda m: m["warm"]["ndcg@10"]),
    ("fresh NDCG@10", lambda m: m["fresh"]["ndcg@10"]),
    ("all NDCG@10", lambda m: m["all"]["ndcg@10"]),
    ("all NDCG@10 95% CI", lambda m: m["all"]["ndcg@10_ci"]),
    ("warm Recall@20", lambda m: m["warm"]["recall@20"]),
    ("fresh Recall@20", lambda m: m["fresh"]["recall@20"]),
    ("all Recall@20", lambda m: m["all"]["recall@20"]),
    ("all Recall@20 95% CI", lambda m: m["all"]["recall@20_ci"]),
    ("warm HR@10", lambda m: m["warm"]["hr@10"]),
    ("fresh HR@10", lambda m: m["fresh"]["hr@10"]),
    ("all HR@10", lambda m: m["all"]["hr@10"]),
    ("coverage@10", lambda m: m["coverage@10"]),
    ("long-tail cov.@10", lambda m: m["longtail_coverage@10"]),
    ("train s", lambda m: m["train_seconds"]),
)


def resolve_models(model_names: Sequence[str],
                   registry: dict[str, Callable[[], Recommender]] | None = None
                   ) -> dict[str, Callable[[], Recommender]]:
    """Factories for the names, in order; unknown names raise ValueError listing known ones."""
    registry = MODEL_REGISTRY if registry is None else registry
    unknown = [n for n in model_names if n not in registry]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {sorted(registry)}")
    return {name: registry[name] for name in model_names}


def run_evaluation(dataset: Dataset, model_names: list[str], json_path: str | None,
                   report_dir: str | None, *, registry=None) -> dict:
    """Evaluates the named models on `dataset` and writes the reports.

    Args:
        dataset: interactions plus optional users and items tables.
        model_names: keys of `registry` (default `MODEL_REGISTRY`).
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
        _write_atomic(json_path, json.dumps(report, indent=2))
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        _write_atomic(os.path.join(report_dir, "report.md"), markdown_report(report))
        plot_ndcg_vs_longtail(report, os.path.join(report_dir, "ndcg_vs_longtail.png"))
        if dead:
            pd.DataFrame(dead).to_parquet(os.path.join(report_dir, "dead_letters.parquet"))
    return report


def _items_before(dataset: Dataset, cutoff: float):
    """The items table with tags rebuilt from tags made before the cutoff (no future leak)."""
    tags = dataset.extras.get("tags")
    if dataset.items is None or tags is None or "tags" not in dataset.items:
        return dataset.items
    from infra.datasets import item_tags

    fresh_tags = item_tags(tags, before=cutoff).reindex(dataset.items["item_id"]).fillna("")
    return dataset.items.assign(tags=fresh_tags.to_numpy())


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict) -> str:
    """A markdown page: the split, the case counts and one table row per model."""
    lines = [
        f"# {report['dataset']}: {report['protocol']}",
        "",
        f"Cutoff {report['cutoff']}; train {report['train_events']:,} events, test "
        f"{report['test_events']:,}; {report['cases']['warm']} warm cases, "
        f"{report['cases']['fresh']} fresh cases.",
        "",
        "| model | " + " | ".join(name for name, _ in METRIC_COLUMNS) + " |",
        "|---|" + "---|" * len(METRIC_COLUMNS),
    ]
    for name, metrics in report["models"].items():
        cells = [_fmt(get(metrics)) for _, get in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    peers = _peers_module()  # the peers' figures of EVALUATION.md (MovieLens 100K)
    if "ml-100k" in str(report["dataset"]) and peers is not None:
        reference = peers.REFERENCE
        lines += ["", "Peers on MovieLens 100K under TH (EVALUATION.md, independent "
                  "implementation):", "",
                  "| model | warm NDCG@10 | fresh NDCG@10 | all NDCG@10 | all Recall@20 | "
                  "all HR@10 | coverage@10 | long-tail cov.@10 |", "|---" * 8 + "|"]
        lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in ref) + " |"
                  for name, ref in reference.items()]
    return "\n".join(lines) + "\n"


def plot_ndcg_vs_longtail(report: dict, path: str) -> None:
    """Scatter of all-cases NDCG@10 against long-tail coverage@10, one labelled point a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, m in report["models"].items():
        x, y = m["longtail_coverage@10"], m["all"]["ndcg@10"]
        ax.scatter([x], [y])
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("long-tail coverage@10")
    ax.set_ylabel("NDCG@10 (all cases)")
    ax.set_title(f"{report['dataset']}: {report['protocol']}, cutoff {report['cutoff']}")
    ax.grid(alpha=0.3)
    ax.margins(x=0.3, y=0.2)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


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
