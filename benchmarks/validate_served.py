"""The served model on validation windows cut from the train side: where its defaults are
chosen (EVALUATION.md forbids tuning on the test split).

    python -m benchmarks.validate_served --dataset movielens:../shared/datasets/ml-100k \\
        --models served,item_knn --set ranker.members=3 --sweep longtail_slots=1

Only the train side of the protocol's split (events before its 0.8-quantile) is read. Each
origin `a:b` (quantiles of that train side; default 0.9:1, 0.8:0.9 and 0.7:0.8) fits the
models on the events before a and scores them on warm and fresh cases built from the events
in [a, b), exactly as `recsys evaluate` does on the test split; the origins' mean is
printed last. `--set field=value` (repeatable; `tower.` and `ranker.` reach the sub-configs)
overrides the served config before fitting; each `--sweep "field=v field2=v2"` (repeatable)
re-scores the one fitted served model under overrides of fields that act at serving time only
(longtail_slots, longtail_affinity, the exposure re-rank's rerank_* fields); each
`--try "field=v ..."` (repeatable) fits one more served model with those overrides on top of
`--set`, reported as `served[...]`, each `--tower-try "field=v ..."` one more
standalone two_tower with TwoTowerConfig overrides, reported as `two_tower[...]`, and each
`--mf-try "field=v ..."` one more mf with MFConfig overrides, reported as `mf[...]`. Served
models' rows end with their candidate pool's recall of the truth (tower source and whole
pool, warm / fresh):

    python -m benchmarks.validate_served --dataset movielens:../shared/datasets/ml-100k \
        --models served,ease --try "ease_l2=None" --try "ease_l2=200" \
        --try "graphsage={}"     # GraphSAGE on, GraphSAGEConfig's defaults
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import logging
from collections.abc import Sequence

import numpy as np

from benchmarks.output import write_json
from evaluation.registry import MODEL_REGISTRY
from models.evaluation import (
    Split,
    build_cases,
    evaluate_model,
    event_order,
    pool_recall,
    recommend_cases,
    score_lists,
    temporal_split,
)
from models.graphsage import GraphSAGEConfig
from models.mf import MFConfig
from models.retrieval import MFRecommender
from models.served import ServedConfig
from models.served_fit import ServedRecommender
from models.tower_fit import TwoTowerRecommender
from models.two_tower import TwoTowerConfig

ORIGINS = ((0.9, 1.0), (0.8, 0.9), (0.7, 0.8))


def served_config(overrides: Sequence[str], base: ServedConfig = ServedConfig()) -> ServedConfig:
    """`base` (any config dataclass) with `field=value` overrides (`tower.x=...`,
    `ranker.x=...` nest)."""
    config = base
    for item in overrides:
        key, _, raw = item.partition("=")
        value = ast.literal_eval(raw)
        if key == "graphsage" and isinstance(value, dict):
            value = GraphSAGEConfig(**value)
        if "." in key:
            sub, name = key.split(".", 1)
            inner = dataclasses.replace(getattr(config, sub), **{name: value})
            config = dataclasses.replace(config, **{sub: inner})
        else:
            config = dataclasses.replace(config, **{key: value})
    return config


def tower_config(overrides: Sequence[str]) -> TwoTowerConfig:
    """TwoTowerConfig's defaults with `field=value` overrides (the standalone two_tower's)."""
    return served_config(overrides, TwoTowerConfig())


def mf_config(overrides: Sequence[str]) -> MFConfig:
    """MFConfig's defaults with `field=value` overrides (the registry's `mf`)."""
    return served_config(overrides, MFConfig())


def standalone_tries(tower_tries: Sequence[str] = (), mf_tries: Sequence[str] = ()) -> dict:
    """{label: a function making an unfitted model}: `two_tower[...]` per tower try and
    `mf[...]` per MF try, each its config's defaults with the try's `field=value` overrides
    (parsed here, so a bad one fails before any fit)."""
    made = {f"two_tower[{t}]": (TwoTowerRecommender, tower_config(t.split()))
            for t in tower_tries}
    made.update({f"mf[{t}]": (MFRecommender, mf_config(t.split())) for t in mf_tries})
    return {label: functools.partial(cls, c) for label, (cls, c) in made.items()}


def window(train, start: float, end: float) -> Split:
    """Events before the `start` quantile of `train`, and those in [start, end) quantiles."""
    df = event_order(train)
    ts = df["timestamp"].to_numpy(np.float64)
    lo = float(np.quantile(ts, start))
    hi = np.inf if end >= 1 else float(np.quantile(ts, end))
    return Split(df[ts < lo].reset_index(drop=True),
                 df[(ts >= lo) & (ts < hi)].reset_index(drop=True), lo)


def validation_report(dataset, model_names: Sequence[str], overrides: Sequence[str],
                      sweeps: Sequence[str] = (), origins=ORIGINS,
                      tries: Sequence[str] = (), tower_tries: Sequence[str] = (),
                      mf_tries: Sequence[str] = ()) -> dict:
    """{origin: {label: metrics}}; labels are model names, `served[overrides]` per sweep and
    per try, `two_tower[overrides]` per tower try, `mf[overrides]` per MF try; a served
    model's metrics also hold its "pool_recall" (models.evaluation.pool_recall: per segment
    and candidate source)."""
    train = temporal_split(dataset.interactions).train
    standalone = standalone_tries(tower_tries, mf_tries)
    out = {}
    for start, end in origins:
        split = window(train, start, end)
        cases = build_cases(split)
        logging.info("origin %.2f:%.2f: %d train / %d test events, %d warm / %d fresh cases",
                     start, end, len(split.train), len(split.test), len(cases.warm),
                     len(cases.fresh))
        res = out[f"{start}:{end}"] = {}
        for name in model_names:
            model = (ServedRecommender(served_config(overrides)) if name == "served"
                     else MODEL_REGISTRY[name]())
            res[name] = evaluate_model(model, split, cases, users=dataset.users,
                                       items=dataset.items, n_resamples=200)
            if name == "served":
                res[name]["pool_recall"] = pool_recall(model, cases)
            fitted = getattr(model, "model", None)
            for sweep in sweeps if name == "served" else ():
                fitted.config = served_config(sweep.split(), model.config)
                res[f"served[{sweep}]"] = score_lists(
                    cases, recommend_cases(model, cases.warm),
                    recommend_cases(model, cases.fresh), split.train, n_resamples=200)
        for extra in tries:
            model = ServedRecommender(served_config([*overrides, *extra.split()]))
            res[f"served[{extra}]"] = evaluate_model(model, split, cases, users=dataset.users,
                                                     items=dataset.items, n_resamples=200)
            res[f"served[{extra}]"]["pool_recall"] = pool_recall(model, cases)
        for label, make in standalone.items():
            res[label] = evaluate_model(make(), split, cases, users=dataset.users,
                                        items=dataset.items, n_resamples=200)
    return out


def _row(label: str, ms: list[dict]) -> str:
    def mean(get):
        return np.mean([get(m) for m in ms])

    return (f"{label:>28} warm {mean(lambda m: m['warm']['ndcg@10']):.4f} "
            f"fresh {mean(lambda m: m['fresh']['ndcg@10']):.4f} "
            f"all {mean(lambda m: m['all']['ndcg@10']):.4f} "
            f"cov {mean(lambda m: m['coverage@10']):.3f} "
            f"longtail {mean(lambda m: m['longtail_coverage@10']):.3f}"
            + (f" fit {mean(lambda m: m['train_seconds']):.1f} s" if "train_seconds" in ms[0]
               else "")
            + ("" if "pool_recall" not in ms[0] else
               " pool recall warm/fresh: tower {:.3f}/{:.3f} pool {:.3f}/{:.3f}".format(
                   *(mean(lambda m, seg=seg, src=src: m["pool_recall"][seg][src] or 0.0)
                     for src in ("tower", "pool") for seg in ("warm", "fresh")))))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", default="served")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--sweep", action="append", default=[], dest="sweeps",
                        help='e.g. "longtail_slots=1 longtail_affinity=\'ranker\'"')
    parser.add_argument("--try", action="append", default=[], dest="tries",
                        help='one more served model, e.g. "ease_l2=None" or "graphsage={}"')
    parser.add_argument("--tower-try", action="append", default=[], dest="tower_tries",
                        help='one more two_tower model, e.g. "uniform_negatives=256"')
    parser.add_argument("--mf-try", action="append", default=[], dest="mf_tries",
                        help='one more mf model, e.g. "dim=64 epochs=30"')
    parser.add_argument("--origins", default=",".join(f"{a}:{b}" for a, b in ORIGINS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from infra.datasets import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    origins = [tuple(float(x) for x in o.split(":")) for o in args.origins.split(",")]
    report = validation_report(load_dataset(args.dataset), args.models.split(","),
                               args.overrides, args.sweeps, origins, args.tries,
                               args.tower_tries, args.mf_tries)
    print("overrides:", " ".join(args.overrides) or "none")
    for origin, res in report.items():
        for label, m in res.items():
            print(f"{origin:>8}", _row(label, [m]))
    for label in next(iter(report.values())):
        print(f"{'mean':>8}", _row(label, [res[label] for res in report.values()]))
    write_json({"overrides": args.overrides, "report": report}, args.json)
    return report


if __name__ == "__main__":
    main()
