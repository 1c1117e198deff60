"""Leave-one-out with sampled negatives (LOO-S, ../shared/EVALUATION.md) on the train side of
the temporal holdout only: where served's out-of-pool settings are chosen (how its ranker
scores items its retrieval would not give it), never on the test split.

    python -m benchmarks.validate_loo --dataset movielens:../shared/datasets/ml-100k \\
        --models popularity,ease,served --try "ranker.out_of_pool=0" --try "ranker.out_of_pool=8"

The events before the 0.8-quantile of time (the protocol's train side) are split as LOO-S
splits all events (each user's latest item held out, 99 sampled negatives); each model is
fitted on the rest and scores the 100 candidates (models.evaluation_loo.evaluate_loo).
`--try` fits one more served model with `field=value` overrides (as benchmarks.
validate_served's `--set`), reported as `served[...]`, and, from the same fit,
`served[...][pool_first=False]`: every item scored alike instead of the candidate pool first
(ServedRecommender.pool_first). `--tower-try "field=v ..."` fits one more standalone
two_tower with TwoTowerConfig overrides, reported as `two_tower[...]`, and
`--mf-try "field=v ..."` one more mf with MFConfig overrides, reported as `mf[...]`:

    python -m benchmarks.validate_loo --dataset movielens:../shared/datasets/ml-100k \\
        --models popularity,mf --mf-try "dim=64 epochs=30"
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from benchmarks.output import write_json
from benchmarks.validate_served import served_config, standalone_tries
from evaluation.registry import MODEL_REGISTRY
from models.evaluation import temporal_split
from models.evaluation_loo import (
    evaluate_loo,
    loo_split,
    ndcg_of_rank,
    rank_of_positive,
    score_cases,
)
from models.served_fit import ServedRecommender


def loo_report(dataset, model_names: Sequence[str], tries: Sequence[str] = (),
               tower_tries: Sequence[str] = (), mf_tries: Sequence[str] = ()) -> dict:
    """{label: evaluate_loo's figures} on the train side's LOO-S split."""
    split = loo_split(temporal_split(dataset.interactions).train)
    logging.info("LOO-S on the train side: %d train events, %d cases", len(split.train),
                 len(split.cases))
    models = {n: MODEL_REGISTRY[n]() for n in model_names}
    models.update({f"served[{t}]": ServedRecommender(served_config(t.split())) for t in tries})
    models.update({label: make() for label, make in standalone_tries(tower_tries,
                                                                      mf_tries).items()})
    out = {}
    for label, m in models.items():
        out[label] = evaluate_loo(m, split, users=dataset.users, items=dataset.items,
                                  n_resamples=200)
        if getattr(m, "pool_first", False):  # the same fit, every item scored alike
            m.pool_first = False
            ranks = rank_of_positive(score_cases(m, split))
            out[f"{label}[pool_first=False]"] = {"all": {
                "hr@10": float((ranks <= 10).mean()), "ndcg@10": float(ndcg_of_rank(ranks).mean()),
                "mean_rank": float(ranks.mean())}}
            m.pool_first = True
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", default="popularity,served")
    parser.add_argument("--try", action="append", default=[], dest="tries",
                        help='one more served model, e.g. "ranker.out_of_pool=8"')
    parser.add_argument("--tower-try", action="append", default=[], dest="tower_tries",
                        help='one more two_tower model, e.g. "uniform_negatives=256"')
    parser.add_argument("--mf-try", action="append", default=[], dest="mf_tries",
                        help='one more mf model, e.g. "dim=64 epochs=30"')
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from infra.datasets import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = loo_report(load_dataset(args.dataset), [m for m in args.models.split(",") if m],
                        args.tries, args.tower_tries, args.mf_tries)
    for label, m in report.items():
        pool = m.get("pool") or {}
        extra = "" if not pool else (
            f" positive in pool {pool['positive_in_pool']:.3f}, out-of-pool negatives at or "
            f"above it {pool['out_of_pool_at_or_above']:.1f} of "
            f"{pool['negatives_out_of_pool']:.1f}")
        print(f"{label:>32} HR@10 {m['all']['hr@10']:.4f} NDCG@10 {m['all']['ndcg@10']:.4f}"
              f" mean rank {m['all']['mean_rank']:.1f}"
              + (f" fit {m['train_seconds']:.1f} s" if "train_seconds" in m else "") + extra)
    write_json(report, args.json)


if __name__ == "__main__":
    main()
