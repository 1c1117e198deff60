"""GraphSAGE on validation windows cut from the train side: where GraphSAGEConfig's defaults
are chosen (EVALUATION.md forbids tuning on the test split).

    python -m benchmarks.validate_graphsage --dataset movielens:../shared/datasets/ml-100k \\
        --try "" --try "learning_rate=0.001" --try "temperature=0.05 id_dropout=0.1"

The windows are benchmarks.validate_served's (origins 0.9:1, 0.8:0.9, 0.7:0.8 of the train
side of the protocol's split); each `--try` is a set of `field=value` overrides of the default
GraphSAGEConfig ("" the defaults), fitted and scored on every window; the windows' means are
printed last, one line per try.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from benchmarks.output import write_json
from benchmarks.validate_served import ORIGINS, window
from models.evaluation import build_cases, evaluate_model, temporal_split
from models.graphsage import GraphSAGEConfig
from models.graphsage_fit import GraphSAGERecommender


def config_of(overrides: str) -> GraphSAGEConfig:
    """GraphSAGEConfig with "field=value ..." overrides (values as Python literals)."""
    fields = dict(item.partition("=")[::2] for item in overrides.split())
    return dataclasses.replace(GraphSAGEConfig(),
                               **{k: ast.literal_eval(v) for k, v in fields.items()})


def run(dataset, tries: Sequence[str], origins=ORIGINS) -> dict:
    """{try: {origin: metrics}} of each try on each window."""
    train = temporal_split(dataset.interactions).train
    out = {t: {} for t in tries}
    for start, end in origins:
        split = window(train, start, end)
        cases = build_cases(split)
        for t in tries:
            out[t][f"{start}:{end}"] = evaluate_model(
                GraphSAGERecommender(config_of(t)), split, cases, users=dataset.users,
                items=dataset.items, n_resamples=200)
            logging.info("%s %s:%s %s", t or "defaults", start, end,
                         out[t][f"{start}:{end}"]["fresh"]["ndcg@10"])
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--try", action="append", default=[], dest="tries",
                        help='"field=value ..." of GraphSAGEConfig; "" for the defaults')
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from infra.datasets import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run(load_dataset(args.dataset), args.tries or [""])
    for t, res in report.items():
        ms = list(res.values())

        def mean(seg, ms=ms):
            return np.mean([m[seg]["ndcg@10"] for m in ms])

        print(f"{t or 'defaults':>40} warm {mean('warm'):.4f} fresh {mean('fresh'):.4f} "  # noqa: T201
              f"all {mean('all'):.4f} longtail "
              f"{np.mean([m['longtail_coverage@10'] for m in ms]):.3f} "
              f"fit {np.mean([m['train_seconds'] for m in ms]):.1f} s")
    write_json({"report": report}, args.json)
    return report


if __name__ == "__main__":
    main()
