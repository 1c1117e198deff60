"""The nightly precompute stage against a bare Faiss search over the same matrices.

    python -m benchmarks.precompute --users 1000000 --items 100000 --dim 64 --k 100 \
        --json precompute.json

Builds a bundle of random user and item vectors (with --seen random seen items per user to
exclude) in a temporary store, starts a real redis-server, and times:
- bare: one `faiss.IndexFlatIP.search(xq, k)` over all users;
- pipeline: the nightly's Beam `Precompute` transform end to end (bundle load in setup,
  Faiss search with seen items excluded, the rules, pipelined Redis writes, shard counts).
Then MEMORY USAGE of a sample of the written keys against the K × 6 bytes payload, and the
growth of INFO's used_memory (summed over the nodes) per user written. With --cluster the lists
go to a local 3-node Redis Cluster (infra.redis_server.local_redis_cluster) instead, in the
cluster key layout (infra/redis/keys.py):

    python -m benchmarks.precompute --users 100000 --cluster --json precompute-cluster.json
"""

from __future__ import annotations

import argparse
import contextlib
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


@contextlib.contextmanager
def _redis(cluster: bool):
    """A throw-away redis-server, or a 3-node Redis Cluster; yields its URL."""
    from infra.redis_server import local_redis, local_redis_cluster

    if cluster:
        with local_redis_cluster() as (url, _):
            yield url
    else:
        with local_redis() as url:
            yield url


def _used_memory(client) -> int:
    """INFO memory's used_memory, summed over the primaries of a cluster."""
    from infra.redis.client import is_cluster

    if not is_cluster(client):
        return int(client.info("memory")["used_memory"])
    return sum(int(node.redis_connection.info("memory")["used_memory"])
               for node in client.get_primaries())


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
    parser.add_argument("--cluster", action="store_true",
                        help="publish to a local 3-node Redis Cluster instead of one server")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import apache_beam as beam
    import faiss
    from apache_beam.options.pipeline_options import PipelineOptions

    from batch.transforms import Precompute, faiss_threads, user_shards
    from infra.redis.client import connect
    from infra.redis.keys import Keys
    from infra.store import LocalStore

    with tempfile.TemporaryDirectory() as tmp, _redis(args.cluster) as redis_url:
        r, keys = connect(redis_url), Keys("bench", cluster=args.cluster)
        used_before = _used_memory(r)
        store = LocalStore(os.path.join(tmp, "store"))
        xb, xq = make_bundle(store, "bench", args.users, args.items, args.dim, args.seen)

        index = faiss.IndexFlatIP(args.dim)
        index.add(xb)
        log.info("bare Faiss search of %d users", args.users)
        t = time.perf_counter()
        index.search(xq, args.k)
        bare_s = time.perf_counter() - t

        log.info("pipeline (%s)", args.mode)
        options = PipelineOptions(["--runner=FnApiRunner",
                                   f"--direct_running_mode={args.mode}",
                                   f"--direct_num_workers={args.workers}"])
        threads = args.faiss_threads or faiss_threads(options)
        t = time.perf_counter()
        with beam.Pipeline(options=options) as p:
            _ = (p | beam.Create(user_shards(args.users, args.shard_size))
                 | Precompute(store.uri, "bench", args.k, redis_url, "bench", threads=threads))
        pipeline_s = time.perf_counter() - t

        used_after = _used_memory(r)
        written = sum(int(v) for v in r.hvals(keys.shards("bench")))
        if written != args.users:
            raise RuntimeError(f"shards wrote {written} users, expected {args.users}")
        sample = np.random.default_rng(1).choice(args.users, min(1000, args.users),
                                                 replace=False)
        sizes = [r.memory_usage(keys.user("bench", str(u)), samples=0) for u in sample]
        lengths = [r.strlen(keys.user("bench", str(u))) for u in sample]
        nodes = len(r.get_primaries()) if args.cluster else 1

    result = {
        "users": args.users, "items": args.items, "dim": args.dim, "k": args.k,
        "mode": args.mode, "workers": args.workers, "faiss_threads": threads,
        "redis": "cluster" if args.cluster else "single", "redis_nodes": nodes,
        "pipeline_users_per_s": round(args.users / pipeline_s, 1),
        "faiss_users_per_s": round(args.users / bare_s, 1),
        "ratio": round(bare_s / pipeline_s, 3),
        "redis_bytes_per_user": round(float(np.mean(sizes)), 1),
        "payload_bytes_per_user": round(float(np.mean(lengths)), 1),
        "redis_used_memory_bytes_per_user": round((used_after - used_before) / args.users, 1),
        "pipeline_s": round(pipeline_s, 2), "faiss_s": round(bare_s, 2),
    }
    result["redis_overhead"] = round(result["redis_bytes_per_user"]
                                     / result["payload_bytes_per_user"], 3)
    result["redis_used_memory_overhead"] = round(result["redis_used_memory_bytes_per_user"]
                                                 / result["payload_bytes_per_user"], 3)
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
