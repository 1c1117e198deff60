"""Training time and peak memory of every model on a large synthetic set.

    python -m benchmarks.train_scale --users 100000 --items 20000 --events 5000000 \\
        --json train_scale.json

Generates the data once (Parquet in --workdir), then fits each model on its train side (the
temporal-holdout split) in a fresh process, so that each peak resident set size (the
process's VmHWM) is the model's own. At this size the models run with the
settings of `scale_factories` below (fewer examples per tower epoch, one ranker window, fewer
kNN neighbours); `--small` runs the defaults of `recsys evaluate` instead. After each fit,
NDCG@10 on a sample of the test cases (`--eval-cases` warm and as many fresh) shows that
the settings still learn; it is not part of the timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks.output import emit

log = logging.getLogger(__name__)


def scale_factories() -> dict:
    """Model name -> factory with the settings used at 100k users x 20k items."""
    from evaluation.registry import MODEL_REGISTRY
    from models.graphsage import GraphSAGEConfig
    from models.graphsage_fit import GraphSAGERecommender
    from models.mf import MFConfig
    from models.ranker import RankerConfig
    from models.retrieval import MFRecommender
    from models.served import ServedConfig
    from models.served_fit import ServedRecommender
    from models.tower_fit import TwoTowerRecommender
    from models.two_tower import TwoTowerConfig

    # Each MF epoch is 20M examples (4M pairs and 4 negatives each): 305 steps of 65,536, about
    # the step count of the default MF on MovieLens 100K. A tower epoch samples 1M examples
    # (32 per user at most); the served model cuts one ranker window instead of three.
    # GraphSAGE samples its epochs as the tower does (each example's neighbours sampled).
    tower = TwoTowerConfig(batch_size=1024, max_per_user=32, max_examples=1_000_000, epochs=4,
                           patience=1)
    return {**MODEL_REGISTRY,
            "mf": lambda: MFRecommender(MFConfig(epochs=4, batch_size=65536)),
            "two_tower": lambda: TwoTowerRecommender(tower),
            "served": lambda: ServedRecommender(ServedConfig(
                tower=tower, ranker=RankerConfig(neighbours=100), windows=(0.9,),
                max_cases=3000)),
            "graphsage": lambda: GraphSAGERecommender(GraphSAGEConfig(
                batch_size=1024, max_per_user=32, max_examples=1_000_000, epochs=4,
                patience=1))}


def peak_rss_mb() -> float:
    """This process's resident peak in MB. Linux's ru_maxrss would not do: a child started by
    fork and exec inherits its parent's peak (2.2 GB after generating 5M events in-process), so
    the peak comes from VmHWM, the high-water mark of the process's own address space."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def generate(workdir: str, users: int, items: int, events: int, seed: int = 0) -> dict:
    """Writes interactions/users/items.parquet into `workdir` unless already there."""
    path = os.path.join(workdir, "interactions.parquet")
    if os.path.exists(path):
        import pyarrow.parquet as pq

        return {"events": pq.read_metadata(path).num_rows, "generate_seconds": None}
    from models.synthetic import generate as make

    start = time.perf_counter()
    ds = make(users, items, seed, events_per_user=events / users)
    os.makedirs(workdir, exist_ok=True)
    ds.users.to_parquet(os.path.join(workdir, "users.parquet"))
    ds.items.to_parquet(os.path.join(workdir, "items.parquet"))
    ds.interactions.to_parquet(path + ".tmp")
    os.replace(path + ".tmp", path)
    return {"events": len(ds.interactions), "generate_seconds": time.perf_counter() - start}


def fit_one(workdir: str, name: str, small: bool, eval_cases: int = 2000) -> dict:
    """Loads the data, fits `name` on the train side and measures it (in this process); then
    scores it on `eval_cases` warm and as many fresh test cases (a sanity check that the
    settings still learn; not part of the timing)."""
    import pandas as pd

    from models.evaluation import (
        Cases,
        build_cases,
        recommend_cases,
        score_lists,
        temporal_split,
    )

    read = lambda n: pd.read_parquet(os.path.join(workdir, f"{n}.parquet"))  # noqa: E731
    split = temporal_split(read("interactions"))
    users, items = read("users"), read("items")
    before = peak_rss_mb()
    if small:
        from evaluation.registry import MODEL_REGISTRY as factories
    else:
        factories = scale_factories()
    model = factories[name]()
    start = time.perf_counter()
    model.fit(split.train, users, items)
    seconds = time.perf_counter() - start
    result = {"model": name, "train_events": len(split.train), "train_seconds": seconds,
              "peak_rss_mb": peak_rss_mb(), "peak_rss_mb_before_fit": before}
    fitted = getattr(model, "model", None)
    if hasattr(fitted, "validation"):  # served: its last window's figure (the nightly gate's)
        result["validation"] = fitted.validation
    if eval_cases:
        import numpy as np

        cases, rng = build_cases(split), np.random.default_rng(0)

        def sample(seg):
            return [seg[i] for i in sorted(rng.choice(len(seg), min(eval_cases, len(seg)),
                                                      replace=False))]

        cases = Cases(sample(cases.warm), sample(cases.fresh))
        scores = score_lists(cases, recommend_cases(model, cases.warm),
                             recommend_cases(model, cases.fresh), split.train, n_resamples=100)
        result.update({"eval_cases": len(cases.warm) + len(cases.fresh),
                       **{f"ndcg@10_{seg}": scores[seg]["ndcg@10"] for seg in ("warm", "fresh")}})
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--models",
                        default="popularity,item_knn,mf,two_tower,served,graphsage")
    parser.add_argument("--workdir", default=None, help="where the Parquet files go")
    parser.add_argument("--small", action="store_true", help="the models' default settings")
    parser.add_argument("--eval-cases", type=int, default=2000,
                        help="warm and fresh test cases scored after each fit (0: none)")
    parser.add_argument("--fit", default=None, help=argparse.SUPPRESS)  # one model, in-process
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    workdir = args.workdir or f"/tmp/recsys-scale-{args.users}x{args.items}x{args.events}"
    if args.fit:
        print(json.dumps(fit_one(workdir, args.fit, args.small, args.eval_cases)))  # noqa: T201 - to the parent
        return {}
    report = {"users": args.users, "items": args.items, "cpus": os.cpu_count(),
              **generate(workdir, args.users, args.items, args.events), "models": []}
    log.info("data: %s", report)
    for name in args.models.split(","):
        cmd = [sys.executable, "-m", "benchmarks.train_scale", "--fit", name,
               "--workdir", workdir, "--eval-cases", str(args.eval_cases),
               *(["--small"] if args.small else [])]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            report["models"].append({"model": name, "error": out.stderr[-2000:]})
            log.error("%s failed: %s", name, out.stderr[-2000:])
            continue
        report["models"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        log.info("%s", report["models"][-1])
    emit(report, args.json)
    return report


if __name__ == "__main__":
    main()
