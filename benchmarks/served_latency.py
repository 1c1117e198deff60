"""What one warm user costs the nightly precompute and one fresh user the on-demand function
with a --model served bundle, and how often the two runtimes give the same list.

    python -m benchmarks.served_latency --users 2000 --items 1000 --events 60000 \
        --served-config '{"tower": {"epochs": 2}, "ranker": {"epochs": 3}}' --json FILE

Generates synthetic data with users and items tables (not timed), trains and exports the
bundle as `recsys nightly --model served` does (batch.stages.train_and_export_served), then:
- batch: ServedRetrieveFn (the precompute's DoFn, TensorFlow graph) on shards of
  `--shard-size` warm users; the first shard (graph tracing) is reported apart, and the
  time of recommend_indices' steps (user tower, candidates, ranker) on one shard;
- online: functions.serving.LiteServed (LiteRT, the function's path) on `--requests` fresh
  users of 5-20 recent items and random features, one at a time; latency per call;
- parity: the share of those requests whose list (k = 10) equals the TF graph's.
Training epochs do not change the inference cost, so few are enough here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--served-config", default="", help="JSON overrides of ServedConfig")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    from batch.stages import served_config, train_and_export_served
    from batch.transforms import ServedRetrieveFn
    from functions.serving import LiteServed
    from infra.bundle import read_bundle
    from infra.store import LocalStore
    from models.synthetic import generate

    ds = generate(args.users, args.items, seed=0, events_per_user=args.events / args.users)
    config = served_config(args.served_config)
    out: dict = {"users": args.users, "items": args.items, "events": len(ds.interactions),
                 "config": args.served_config or "defaults"}
    with tempfile.TemporaryDirectory() as tmp:
        store, version = LocalStore(tmp), "bench"
        t = time.perf_counter()
        stats = train_and_export_served(ds.interactions, store, version, config, ds.users,
                                        ds.items, args.k, {})
        out["train_export_seconds"] = round(time.perf_counter() - t, 1)
        out["litert_max_abs_diff"] = stats["litert_max_abs_diff"]

        fn = ServedRetrieveFn(tmp, version, args.k)
        t = time.perf_counter()
        fn.setup()
        out["batch_setup_seconds"] = round(time.perf_counter() - t, 2)
        n, times = stats["users"], []
        for lo in range(0, n, args.shard_size):
            t = time.perf_counter()
            next(fn.process((0, range(lo, min(lo + args.shard_size, n)))))
            times.append((time.perf_counter() - t, min(args.shard_size, n - lo)))
        rest = times[1:] or times
        out["batch_first_shard_ms_per_user"] = round(1000 * times[0][0] / times[0][1], 3)
        out["batch_ms_per_user"] = round(1000 * sum(s for s, _ in rest)
                                         / sum(u for _, u in rest), 3)
        out["batch_split_ms_per_user"] = split(fn, range(0, min(args.shard_size, n)))

        bundle = read_bundle(store, version, with_users=False)
        t = time.perf_counter()
        lite = LiteServed(bundle)
        out["online_load_seconds"] = round(time.perf_counter() - t, 2)
        rng = np.random.default_rng(0)
        rows = ds.users.drop(columns=["user_id", "signup_ts"]).to_dict("records")
        graph, latency, same = fn.model, [], 0
        none = np.zeros(0, np.int64)
        for r in range(args.requests):
            hist = rng.choice(len(bundle.item_ids), rng.integers(5, 21), replace=False)
            features = rows[rng.integers(len(rows))]
            t = time.perf_counter()
            I, _ = lite.recommend(hist, f"fresh-{r}", features, none, 10)
            latency.append(time.perf_counter() - t)
            G, _ = graph.recommend_indices([hist], graph.user_tokens([features]),
                                           graph.context(["x"], fresh=True), 10)
            same += I.tolist() == G[0][G[0] >= 0].tolist()
        ms = 1000 * np.array(latency)
        out["online_ms"] = {"p50": round(float(np.percentile(ms, 50)), 2),
                            "p99": round(float(np.percentile(ms, 99)), 2)}
        out["online_lists_equal_to_graph"] = f"{same}/{args.requests}"
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


def split(fn, rows: range) -> dict:
    """ms per user of recommend_indices' steps on one shard: tower, candidates, ranker."""
    from models.two_tower import history_matrix

    m, rows = fn.model, list(rows)
    histories = [fn.items[fn.indptr[u]:fn.indptr[u + 1]] for u in rows]
    utok, ctx = fn.user_tok[rows], m.context(list(fn.user_ids[rows]), fresh=False)
    spent, t = {}, time.perf_counter()
    hist = history_matrix(histories, m.config.tower.history)
    query = m.get_runtime().user_embedding(hist, utok)
    spent["user_tower"], t = time.perf_counter() - t, time.perf_counter()
    cand = m.candidates(query, histories)
    spent["candidates"], t = time.perf_counter() - t, time.perf_counter()
    m.rank(hist, utok, cand, ctx)
    spent["ranker"] = time.perf_counter() - t
    return {k: round(1000 * v / len(rows), 3) for k, v in spent.items()}


if __name__ == "__main__":
    main()
