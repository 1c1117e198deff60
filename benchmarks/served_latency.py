"""What one warm user costs the nightly precompute and one fresh user the on-demand function
with a --model served bundle, and how often the batch and on-demand paths give the same list.

    python -m benchmarks.served_latency --users 2000 --items 1000 --events 60000 \
        --served-config '{"tower": {"epochs": 2}, "ranker": {"epochs": 3}}' --json FILE

    # MovieLens-1M size (6,040 users x 3,706 items x ~1M events), 256 candidates per user
    # (ServedConfig's default); the trained store is kept in DIR and reused by later runs
    python -m benchmarks.served_latency --users 6040 --items 3706 --events 1000000 \
        --served-config '{"tower_epochs": 1, "windows": [0.9], "ranker": {"epochs": 1}}' \
        --store DIR --json FILE

Generates synthetic data with users and items tables (not timed), trains and exports the
bundle as `recsys nightly --model served` does (models.kinds: the served kind's fit and
export), then:
- batch: the served kind's batch scorer (what the precompute's ScoreFn calls) on shards of
  `--shard-size` warm users,
  wall and CPU (process time) ms per user; the first shard (which builds the scorer's arrays)
  is reported apart, and the CPU time of recommend_indices' steps on one shard: user tower,
  neighbour sums, candidates, features, MLP, the rest (sorting, rules);
- online: the served kind's on-demand scorer (LiteRT, the function's path) on `--requests` fresh
  users of 5-20 recent items and random features, one at a time; latency per call;
- parity: the share of those requests whose list (k = 10) equals the batch scorer's.
Training epochs do not change the inference cost, so few are enough here. The machine's load
average is reported beside the figures (the timings of a shared machine are only as good).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks.output import emit


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--served-config", default="", help="JSON overrides of ServedConfig")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--store", help="keep the trained store in this folder and reuse it "
                        "when it holds a bundle (delete the folder to retrain)")
    parser.add_argument("--batch-runtime", choices=("numpy", "tf"),
                        help="runtime of the batch scorer's networks (default: its own)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    from models.kinds.served import parse_config
    from models.synthetic import generate

    ds = generate(args.users, args.items, seed=0, events_per_user=args.events / args.users)
    config = parse_config(args.served_config)
    out: dict = {"users": args.users, "items": args.items, "events": len(ds.interactions),
                 "config": args.served_config or "defaults", "candidates": config.candidates,
                 "load_average_before": round(os.getloadavg()[0], 2)}
    if args.store:
        os.makedirs(args.store, exist_ok=True)
        run(args, ds, config, args.store, out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, ds, config, tmp, out)
    out["load_average_after"] = round(os.getloadavg()[0], 2)
    emit(out, args.json)
    return out


def run(args, ds, config, root: str, out: dict) -> None:
    from batch.stages import export_bundle
    from infra.bundle import read_bundle
    from infra.store import LocalStore
    from models import kinds
    from models.runtimes import NumpyRuntime
    from models.served_graph import GraphRuntime

    store, version, kind = LocalStore(root), "bench", kinds.get("served")
    if not os.path.isdir(os.path.join(root, "bundles", version)):
        t = time.perf_counter()
        fit = kind.fit(kinds.TrainingData(ds.interactions, users=ds.users, items=ds.items),
                       config)
        stats = export_bundle(kind, fit, store, version, args.k, {})
        out["train_export_seconds"] = round(time.perf_counter() - t, 1)
        out["litert_max_abs_diff"] = stats["litert_max_abs_diff"]

    t = time.perf_counter()
    fn = kind.batch_scorer(read_bundle(store, version))
    if args.batch_runtime:
        fn.model.runtime = (NumpyRuntime if args.batch_runtime == "numpy" else GraphRuntime)(
            fn.model)
    out["batch_setup_seconds"] = round(time.perf_counter() - t, 2)
    out["batch_runtime"] = type(fn.model.get_runtime()).__name__
    n, times = len(fn.user_ids), []
    for lo in range(0, n, args.shard_size):
        t, c = time.perf_counter(), time.process_time()
        fn.score(range(lo, min(lo + args.shard_size, n)), args.k)
        times.append((time.perf_counter() - t, time.process_time() - c,
                      min(args.shard_size, n - lo)))
    rest = times[1:] or times
    users = sum(u for *_, u in rest)
    out["batch_first_shard_ms_per_user"] = round(1000 * times[0][0] / times[0][2], 3)
    out["batch_ms_per_user"] = round(1000 * sum(w for w, _, _ in rest) / users, 3)
    out["batch_cpu_ms_per_user"] = round(1000 * sum(c for _, c, _ in rest) / users, 3)
    out["batch_split_cpu_ms_per_user"] = split(fn, range(0, min(args.shard_size, n)))

    bundle = read_bundle(store, version, with_users=False)
    t = time.perf_counter()
    lite = kind.on_demand(bundle)
    out["online_load_seconds"] = round(time.perf_counter() - t, 2)
    rng = np.random.default_rng(0)
    rows = ds.users.drop(columns=["user_id", "signup_ts"]).to_dict("records")
    batch, latency, same = fn.model, [], 0
    for r in range(args.requests):
        hist = rng.choice(len(bundle.item_ids), rng.integers(5, 21), replace=False)
        features = rows[rng.integers(len(rows))]
        t = time.perf_counter()
        I, _ = lite.recommend(hist, f"fresh-{r}", features, np.zeros(0, np.int64), 10)
        latency.append(time.perf_counter() - t)
        G, _ = batch.recommend_indices([hist], batch.user_tokens([features]),
                                       batch.context(["x"], fresh=True), 10)
        same += I.tolist() == G[0][G[0] >= 0].tolist()
    ms = 1000 * np.array(latency)
    out["online_ms"] = {"p50": round(float(np.percentile(ms, 50)), 2),
                        "p99": round(float(np.percentile(ms, 99)), 2)}
    out["online_lists_equal_to_batch"] = f"{same}/{args.requests}"


def split(fn, rows: range) -> dict:
    """CPU ms per user of recommend_indices' steps on one shard (models.served)."""
    from models.features import one_blas_thread
    from models.histories import history_matrix

    m, rows = fn.model, list(rows)
    histories = [fn.items[fn.indptr[u]:fn.indptr[u + 1]] for u in rows]
    utok, ctx = fn.user_tok[rows], m.context(list(fn.user_ids[rows]), fresh=False)
    spent, step = {}, m.step()

    def timed(name, f, *a):
        t = time.process_time()
        result = f(*a)
        spent[name] = spent.get(name, 0.0) + time.process_time() - t
        return result

    t0 = time.process_time()
    with one_blas_thread():
        for lo in range(0, len(rows), step):
            h, u, c = histories[lo:lo + step], utok[lo:lo + step], ctx[lo:lo + step]
            hist = history_matrix(h, m.config.tower.history)
            query = timed("user_tower", m.get_runtime().user_embedding, hist, u)
            sums = timed("neighbour_sums", m.neighbour_sums, h)
            cand = timed("candidates", m.candidates, query, h, sums)
            X = timed("features", m.features, hist, u, cand, c, query, sums)
            timed("mlp", m.get_runtime().score, X)
    total = time.process_time() - t0
    t = time.process_time()
    m.recommend_indices(histories, utok, ctx, 100)
    whole = time.process_time() - t
    spent["rest"] = max(whole - total, 0.0)
    return {k: round(1000 * v / len(rows), 3) for k, v in spent.items()}


if __name__ == "__main__":
    main()
