"""The whole nightly job on a generated dataset of a given size (default: MovieLens-1M size).

    python -m benchmarks.nightly --users 6040 --items 3706 --events 1000000 --json FILE
    python -m benchmarks.nightly --users 2000 --items 1000 --events 60000 --features \
        --model=served --skip_gate    # the served recommender, with users and items tables

Generates the data (not timed), starts a real redis-server, runs `recsys nightly` with its
defaults (further flags pass through) and prints the run summary with seconds per stage, the
total and the precompute's milliseconds per published user.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time

from benchmarks.output import emit


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3706)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--features", action="store_true",
                        help="also pass the generated users and items tables (--model served)")
    parser.add_argument("--json", help="write the figures to this file")
    args, nightly_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from batch.nightly import run
    from infra.redis_server import local_redis
    from models.synthetic import generate

    dataset = generate(args.users, args.items, seed=0, events_per_user=args.events / args.users)
    data = dataset.interactions
    with tempfile.TemporaryDirectory() as tmp, local_redis() as redis_url:
        path = os.path.join(tmp, "interactions.parquet")
        data.to_parquet(path)
        if args.features:
            dataset.users.to_parquet(os.path.join(tmp, "users.parquet"))
            dataset.items.to_parquet(os.path.join(tmp, "items.parquet"))
            nightly_args += [f"--users={tmp}/users.parquet", f"--items={tmp}/items.parquet"]
        t = time.perf_counter()
        summary = run([f"--input={path}", f"--store={tmp}/store", f"--redis_url={redis_url}",
                       *nightly_args])
        total = time.perf_counter() - t
    result = {"users": args.users, "items": args.items, "events": len(data),
              "total_seconds": round(total, 1), "seconds": summary["seconds"],
              "model": summary["model"],
              "users_published": summary["users_published"], "gate": summary["gate"],
              "precompute_ms_per_user": round(1000 * summary["seconds"]["precompute_publish"]
                                              / max(1, summary["users_refreshed"]), 3),
              "index": summary["index"],
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
