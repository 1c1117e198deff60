"""The nightly precompute stage against a bare Faiss search over the same matrices.

    python -m benchmarks.precompute --users 1000000 --items 100000 --dim 64 --k 100 \
        --json precompute.json

Builds a bundle of random user and item vectors (with --seen random seen items per user to
exclude) in a temporary store, starts a real redis-server, and times:
- bare: one `faiss.IndexFlatIP.search(xq, k)` over all users;
- pipeline: the nightly's Beam `Precompute` transform end to end (bundle load in setup,
  Faiss search with seen items excluded, the rules, pipelined Redis writes, shard counts).
Then MEMORY USAGE of a sample of the written keys against the K × 6 bytes payload.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import numpy as np
from tqdm import tqdm

from benchmarks.output import emit

log = logging.getLogger("benchmarks.precompute")


def make_bundle(store, version: str, n_users: int, n_items: int, dim: int, seen: int,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random MF bundle (flat index, no tower) written by the MF kind's export
    (models.kinds.write_bundle); returns its (item vectors, user vectors), [n, dim] each."""
    from infra.bundle import BundleWriter
    from models.index import IndexConfig
    from models.kinds import mf, write_bundle

    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n_items, dim), dtype=np.float32)
    xq = rng.standard_normal((n_users, dim - 1), dtype=np.float32)
    counts = rng.poisson(seen, n_users).clip(0, n_items)
    items = [rng.choice(n_items, c, replace=False) for c in
             tqdm(counts, desc="seen items", mininterval=2)]
    fit = mf.fit_from_factors(range(n_users), range(n_items), xq, xb[:, :-1], xb[:, -1],
                              popular=[], seen=items, seed=seed)
    fit.index = IndexConfig(kind="flat")
    write_bundle(mf.KIND, fit, BundleWriter(store, version), k=100)
    return fit.model.item_vectors(), fit.model.user_vectors()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--seen", type=float, default=20, help="mean seen items per user")
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--mode", default="in_memory", choices=["in_memory", "multi_processing"],
                        help="DirectRunner running mode of the pipeline")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner workers (direct_num_workers)")
    parser.add_argument("--faiss-threads", type=int, default=None,
                        help="Faiss threads per worker (default: the nightly's rule, "
                             "batch.transforms.faiss_threads: the cores shared by the workers)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import apache_beam as beam
    import faiss
    import redis
    from apache_beam.options.pipeline_options import PipelineOptions

    from batch.transforms import Precompute, faiss_threads, user_shards
    from infra.redis_server import local_redis
    from infra.store import LocalStore

    with tempfile.TemporaryDirectory() as tmp, local_redis() as redis_url:
        store = LocalStore(os.path.join(tmp, "store"))
        xb, xq = make_bundle(store, "bench", args.users, args.items, args.dim, args.seen)

        index = faiss.IndexFlatIP(args.dim)
        index.add(xb)
        log.info("bare Faiss search of %d users", args.users)
        t = time.perf_counter()
        index.search(xq, args.k)
        bare_s = time.perf_counter() - t

        log.info("pipeline (%s)", args.mode)
        options = PipelineOptions(["--runner=DirectRunner",
                                   f"--direct_running_mode={args.mode}",
                                   f"--direct_num_workers={args.workers}"])
        threads = args.faiss_threads or faiss_threads(options)
        t = time.perf_counter()
        with beam.Pipeline(options=options) as p:
            _ = (p | beam.Create(user_shards(args.users, args.shard_size))
                 | Precompute(store.uri, "bench", args.k, redis_url, "bench", threads=threads))
        pipeline_s = time.perf_counter() - t

        r = redis.Redis.from_url(redis_url)
        written = sum(int(v) for v in r.hvals("bench:v:bench:shards"))
        if written != args.users:
            raise RuntimeError(f"shards wrote {written} users, expected {args.users}")
        sample = np.random.default_rng(1).choice(args.users, min(1000, args.users),
                                                 replace=False)
        sizes = [r.memory_usage(f"bench:v:bench:u:{u}", samples=0) for u in sample]
        lengths = [r.strlen(f"bench:v:bench:u:{u}") for u in sample]

    result = {
        "users": args.users, "items": args.items, "dim": args.dim, "k": args.k,
        "mode": args.mode, "workers": args.workers, "faiss_threads": threads,
        "pipeline_users_per_s": round(args.users / pipeline_s, 1),
        "faiss_users_per_s": round(args.users / bare_s, 1),
        "ratio": round(bare_s / pipeline_s, 3),
        "redis_bytes_per_user": round(float(np.mean(sizes)), 1),
        "payload_bytes_per_user": round(float(np.mean(lengths)), 1),
        "pipeline_s": round(pipeline_s, 2), "faiss_s": round(bare_s, 2),
    }
    result["redis_overhead"] = round(result["redis_bytes_per_user"]
                                     / result["payload_bytes_per_user"], 3)
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
