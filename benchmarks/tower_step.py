"""Milliseconds per two-tower training step, with and without XLA, on the scale data.

    python -m benchmarks.tower_step --batch-sizes 256,1024 --json tower_step.json

Prepares the towers' inputs from the train side of `benchmarks.train_scale`'s data (generated
first when absent), warms TensorFlow up with a short fit, then for each batch size and
executor times one-epoch fits of 20 and of 120 steps: ms/step = (t120 - t20) / 100, and the
fixed cost per fit (sampling, compiling, the final item vectors) = t20 - 20 ms/step.
`TwoTowerConfig.xla = None` picks XLA by these figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace

from benchmarks.output import emit

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import pandas as pd

    from benchmarks.train_scale import generate
    from models.evaluation import temporal_split
    from models.tower_data import prepare
    from models.tower_fit import fit_tower
    from models.two_tower import TwoTowerConfig

    workdir = args.workdir or f"/tmp/recsys-scale-{args.users}x{args.items}x{args.events}"
    generate(workdir, args.users, args.items, args.events)
    read = lambda n: pd.read_parquet(os.path.join(workdir, f"{n}.parquet"))  # noqa: E731
    base = TwoTowerConfig(max_per_user=32)
    data = prepare(temporal_split(read("interactions")).train, read("users"), read("items"),
                   base)
    report = {"items": len(data.items), "cpus": os.cpu_count(), "runs": []}
    fit_tower(data, replace(base, max_examples=10 * base.batch_size, xla=False), 1)  # warm-up
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        for xla in (False, True):
            seconds = {}
            for steps in (20, 120):
                config = replace(base, batch_size=bs, max_examples=steps * bs, xla=xla)
                start = time.perf_counter()
                fit_tower(data, config, 1)
                seconds[steps] = time.perf_counter() - start
            ms = (seconds[120] - seconds[20]) / 100 * 1000
            report["runs"].append({"batch_size": bs, "xla": xla, "ms_per_step": ms,
                                   "fixed_seconds_per_fit": seconds[20] - 20 * ms / 1000})
            log.info("%s", report["runs"][-1])
    emit(report, args.json)
    return report


if __name__ == "__main__":
    main()
