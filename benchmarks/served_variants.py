"""`recsys evaluate --models served` for served under ServedConfig overrides: the test-split
rows of a variant (with or without EASE, with GraphSAGE) beside the default's, by the same
code path (evaluation.run.run_evaluation). It chooses nothing: defaults are chosen on the
train side's windows (benchmarks.validate_served); this reports what they give.

    python -m benchmarks.served_variants --dataset movielens:../shared/datasets/ml-100k \\
        --variant "ease_l2=None" --variant "graphsage={}" --json F

Each `--variant` is `field=value` overrides as benchmarks.validate_served's --set takes them
("" the defaults); one line per variant: NDCG@10 warm / fresh / all, long-tail coverage@10,
train seconds, and the candidate pool's recall (warm / fresh).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from benchmarks.output import write_json
from benchmarks.validate_served import served_config
from evaluation.run import run_evaluation
from models.served_fit import ServedRecommender


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", action="append", default=[], dest="variants",
                        help='overrides, e.g. "ease_l2=None" or "graphsage={}"; "" defaults')
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from infra.datasets import load_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = load_dataset(args.dataset)
    out = {}
    for variant in args.variants or [""]:
        config = served_config(variant.split())
        report = run_evaluation(dataset, ["served"], None, None,
                                registry={"served": lambda c=config: ServedRecommender(c)})
        m = report["models"]["served"]
        pools = report.get("pool_recall", {}).get("served", {})
        out[variant or "defaults"] = {"metrics": m, "pool_recall": pools}
        print(f"served[{variant}]: NDCG@10 warm {m['warm']['ndcg@10']:.4f} fresh "  # noqa: T201
              f"{m['fresh']['ndcg@10']:.4f} all {m['all']['ndcg@10']:.4f} long-tail "
              f"{m['longtail_coverage@10']:.4f} train {m['train_seconds']:.1f} s pool recall "
              f"warm / fresh {pools.get('warm', {}).get('pool')} / "
              f"{pools.get('fresh', {}).get('pool')}")
    write_json(out, args.json)
    return out


if __name__ == "__main__":
    main()
