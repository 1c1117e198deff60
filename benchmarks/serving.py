"""Serving benchmark: the functions over real HTTP, real Redis, real load generators, for a
bundle of each model kind (MF and the default, served).

    python -m benchmarks.serving --json serving.json [--plot serving.png] [--kinds mf,served]
    python -m benchmarks.serving --kinds served --served-store /tmp/served  # keep the training

Each kind's bundle is written by models.kinds.write_bundle over a 20,000-item catalog:
- mf: a random MF through the MF kind's export (so the fresh path runs the real LiteRT user
  tower), 100,000 users' top-100 lists by Faiss;
- served: the served kind trained (models.kinds, fit_served) on synthetic data with users and
  items tables (models.synthetic: --served-users x --items, --served-events events), with
  --served-config (fewer training windows and epochs than the defaults: inference costs the
  same, the candidates and the ranker being as large), its warm users' top-100 lists by the
  kind's batch scorer, as the nightly precompute writes them.
For each kind, in turn: a throw-away redis-server gets the lists (the pointer flipped as the
nightly job does) and 5,000 fresh users with 5-20 recent events each (EventStream.append);
`recsys serve` and the `bare` function of benchmarks/bare.py (one Redis GET of the same list)
start as subprocesses under the same gunicorn settings (WORKERS/THREADS), and:
- cached vs bare: wrk with a Lua script picking random warm users, alternating rounds of the
  two; the medians over rounds are reported. A round in which gunicorn's workers split the
  work unevenly (see serving_load.balanced) is run again, up to --retries times;
- cached_experiment: the same rounds with an experiment running, 50/50 between `current` and
  a second published version (the bundle copied under another version, the lists copied in
  Redis, published without moving `current`, as a canary is), so half the users are served
  the second version's cached lists; each such round gets a fresh experiment (started, then
  stopped after it) and a warm-up after the servers' pointer TTL, in which they load the arm's
  version. `ratio_to_cached` is its median req/s over the plain cached path's, same run;
- metrics: the cached path with the Prometheus metrics recorded vs RECSYS_METRICS=0, two more
  servers in alternating rounds (benchmarks/serving_metrics.py); `ratio` on / off >= 0.9;
- fresh: an open-loop client at a fixed 50 requests/s (latency counted from the scheduled send
  time) over the fresh users, so /recommend ranks them on demand (served: a POST with the
  user's features, as a client knowing them sends it);
- cold start: `recsys serve` process start to its first /recommend answer for a fresh user
  (bundle loaded, on-demand scorer ready); the median of --cold-starts starts, the first
  before the load, the others after it, with nothing else of the benchmark running.
Every /recommend answer is an impression (functions/impression_log.py), as in production; the
benchmark deletes NS:impressions after each round (nothing drains it here).
- similar: /similar?k=10 over random items (their neighbours published as the nightly does:
  benchmarks/serving_similar.py), in the same alternating rounds as bare and cached;
Prints one table of both kinds; --json writes {"kinds": {kind: {"cached", "cached_experiment",
"bare", "similar", "metrics", "fresh", "cold_start_s", "server", "bundle", "checks"}},
"settings",
"checks"} and a
latency plot.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks import serving_metrics, serving_similar
from benchmarks.output import write_json
from benchmarks.serving_experiment import (
    VERSION,
    check_answers,
    publish_second,
    set_experiment,
)
from benchmarks.serving_load import (
    cpu_seconds,
    open_loop,
    process_info,
    run_wrk,
    settled_round,
    start_server,
    write_ids,
)
from benchmarks.serving_report import plot, summary_table

log = logging.getLogger("benchmarks.serving")
NS = "bench"
BARE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bare.py")  # the baseline
KINDS = ("mf", "served")
# Fewer windows and epochs than ServedConfig's defaults: training fits a few minutes on two
# cores; what a request costs (towers, 256 candidates, the ranker) does not change.
SERVED_CONFIG = '{"tower_epochs": 1, "windows": [0.9], "ranker": {"epochs": 1}}'
FRESH_P99_MS, COLD_START_S = 25.0, 1.5  # issue 16's acceptance
EXPERIMENT_RATIO = 0.8  # issue 18's: cached rps with an experiment running / without
SETTLE_S = 1.0  # idle seconds before each measured round


# Bundles -------------------------------------------------------------------------------------
def build_bundle(store, version: str, n_users: int, n_items: int, dim: int, seed: int):
    """A random MF exported as the nightly job exports one (models.kinds.write_bundle, the MF
    kind's export with the LiteRT tower); returns (model, popular ids)."""
    from infra.bundle import BundleWriter
    from models.kinds import mf, write_bundle

    rng = np.random.default_rng(seed)
    factors = rng.normal(0, 0.3, (n_users, dim)), rng.normal(0, 0.3, (n_items, dim))
    fit = mf.fit_from_factors(range(n_users), range(n_items), *factors,
                              rng.normal(0, 1, n_items), tower=True, seed=seed)
    fit.popular = fit.popular[:1000]
    log.info("bundle: exporting %s users x %s items with the LiteRT tower", n_users, n_items)
    write_bundle(mf.KIND, fit, BundleWriter(store, version), k=100)
    return fit.model, fit.popular


def build_served(store, folder: str, version: str, args) -> tuple[dict, list[dict]]:
    """The served kind trained on synthetic data and exported by write_bundle (skipped when
    --served-store already holds the bundle of the same settings).

    Returns:
        (what was built: sizes, config, seconds; the users table's feature rows, which the
        fresh requests send as their users' features).
    """
    from infra.bundle import BundleWriter, list_bundles
    from models import kinds
    from models.kinds import TrainingData, write_bundle
    from models.synthetic import generate

    ds = generate(args.served_users, args.items, seed=args.seed,
                  events_per_user=args.served_events / args.served_users)
    features = ds.users.drop(columns=["user_id", "signup_ts"]).to_dict("records")
    info = {"users": args.served_users, "items": args.items, "events": len(ds.interactions),
            "config": args.served_config, "seed": args.seed}
    stamp = os.path.join(folder, "benchmark-served.json")
    if version in list_bundles(store) and os.path.exists(stamp):
        with open(stamp) as f:
            kept = json.load(f)
        if {k: kept.get(k) for k in info} == info:
            log.info("served: reusing the bundle trained in %s", folder)
            return kept, features
        raise SystemExit(f"{folder} holds a served bundle of other settings ({kept}); "
                         "delete the folder or pass another --served-store")
    kind = kinds.get("served")
    config = kind.config({"served_config": args.served_config})
    log.info("served: training on %s users x %s items, %s events, config %s",
             args.served_users, args.items, len(ds.interactions), args.served_config)
    t = time.perf_counter()
    fit = kind.fit(TrainingData(ds.interactions, users=ds.users, items=ds.items), config)
    info["train_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    manifest = write_bundle(kind, fit, BundleWriter(store, version), k=100)
    info.update(export_seconds=round(time.perf_counter() - t, 1), bundle_items=manifest["items"],
                bundle_users=manifest["users"])
    with open(stamp, "w") as f:
        json.dump(info, f)
    return info, features


def flip_as_nightly(lists, version: str, n: int) -> None:
    """Records a run summary, then flips `current` to `version`, as the nightly job does."""
    from infra.redis.builds import BuildRecords

    BuildRecords(lists.r, lists.keys.namespace).put_summary(
        version, {"version": version, "users_published": n, "benchmark": True})
    lists.flip(version, n)


def publish_lists(lists, store, version: str, model, k: int, shard: int = 10_000) -> None:
    """Every user's top-k by Faiss, written and flipped as the nightly job does."""
    from tqdm import tqdm

    from infra.bundle import read_bundle
    from models.kinds.mf import load_index

    index, xq = load_index(read_bundle(store, version, with_users=False)), model.user_vectors()
    n = len(xq)
    for lo in tqdm(range(0, n, shard), desc="lists", unit="shard"):
        D, I = index.search(np.ascontiguousarray(xq[lo:lo + shard]), k)
        users = [str(u) for u in model.users.ids[lo:lo + shard]]
        lists.write_shard(version, str(lo), users, I, D)
    flip_as_nightly(lists, version, n)


def publish_scored(lists, store, version: str, k: int, shard: int = 1000) -> float:
    """Every warm user's top-k by the bundle's kind's batch scorer (the nightly precompute's),
    written and flipped; returns the scorer's milliseconds per user."""
    from tqdm import tqdm

    from infra.bundle import read_bundle
    from models import kinds

    bundle = read_bundle(store, version)
    scorer, n, took = kinds.get(bundle.manifest["model"]).batch_scorer(bundle), \
        len(bundle.user_ids), 0.0
    for lo in tqdm(range(0, n, shard), desc="lists", unit="shard"):
        t = time.perf_counter()
        ids, I, S = scorer.score(range(lo, min(lo + shard, n)), k)
        took += time.perf_counter() - t
        lists.write_shard(version, str(lo), [str(u) for u in ids], I, S)
    flip_as_nightly(lists, version, n)
    return round(1000 * took / n, 3)


def seed_fresh(stream, popular: list[str], items: list[str], n_fresh: int, seed: int
               ) -> list[str]:
    """n_fresh users known only by 5-20 recent events each (half among `popular`, half among
    `items`); returns their ids."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed + 1)
    users, events = [f"f{n}" for n in range(n_fresh)], []
    for user in users:
        for _ in range(int(rng.integers(5, 21))):
            pool = popular if rng.random() < 0.5 else items
            events.append({"user_id": user, "item_id": str(pool[rng.integers(len(pool))]),
                           "event_type": "click", "timestamp": 1_750_000_000})
    for lo in tqdm(range(0, len(events), 1000), desc="fresh events", unit="batch"):
        stream.append(events[lo:lo + 1000])
    return users


# One kind's run ------------------------------------------------------------------------------
def _median(rounds: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_us")
    out = {key: round(statistics.median(r[key] for r in rounds), 2) for key in keys}
    return {**out, "rounds": rounds}


def prepare(kind: str, args, url: str, work: str) -> tuple[str, dict, list[str], list | None]:
    """Builds `kind`'s bundle and publishes it to the redis-server at `url`.

    Returns:
        (the store folder, what was built, the warm users' ids, the fresh requests' feature
        rows or None).
    """
    from infra.bundle import read_bundle
    from infra.redis.event_stream import EventStream
    from infra.redis.lists import ServedLists
    from infra.store import open_store

    folder = args.served_store if kind == "served" and args.served_store else \
        os.path.join(work, f"artifacts-{kind}")
    store, version, lists = open_store(folder), VERSION, ServedLists.from_url(url, NS)
    features = None
    if kind == "mf":
        model, _ = build_bundle(store, version, args.users, args.items, 32, args.seed)
        publish_lists(lists, store, version, model, 100)
        info = {"users": args.users, "items": args.items, "dim": 32}
    else:
        info, features = build_served(store, folder, version, args)
        info["lists_ms_per_user"] = publish_scored(lists, store, version, 100)
    bundle = read_bundle(store, version)
    publish_second(lists, folder, len(bundle.user_ids), bundle.user_ids)
    info["bundle_mb"] = round(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                                  os.walk(os.path.join(folder, "bundles", version))
                                  for f in fs) / 2**20, 1)
    seed_fresh(EventStream(lists.r, NS), bundle.popular, bundle.item_ids.tolist(),
               args.fresh_users, args.seed)
    return folder, info, bundle.user_ids.tolist(), features


def run_kind(kind: str, args, work: str) -> dict:
    """Everything measured for one kind's bundle, on a redis-server of its own."""
    from infra.redis.lists import ServedLists
    from infra.redis_server import free_port, local_redis

    with local_redis() as url:
        folder, info, warm, features = prepare(kind, args, url, work)
        ids = write_ids(os.path.join(work, f"users-{kind}.txt"), warm)
        items = serving_similar.publish_similar(url, folder, VERSION, NS)
        env = {"REDIS_URL": url, "RECSYS_STORE": folder, "RECSYS_NAMESPACE": NS,
               "WORKERS": str(args.workers), "THREADS": str(args.threads),
               "RECSYS_BARE_PREFIX": f"{NS}:v:{VERSION}:u:"}
        serve = [sys.executable, "-m", "app.cli", "serve"]
        bare = [sys.executable, "-m", "functions_framework", "--source", BARE_SOURCE,
                "--target", "bare", "--host", "127.0.0.1"]
        load = {"before": os.getloadavg()}
        with start_server(serve, env, free_port(), "/recommend?user_id=f0&k=10",
                          os.path.join(work, f"serve-{kind}.log")) as (cached_url, cold, pid), \
             start_server(bare, env, free_port(), f"/?user_id={warm[0]}",
                          os.path.join(work, f"bare-{kind}.log")) as (bare_url, _, bare_pid):
            targets = {"bare": (f"{bare_url}/?user_id=", bare_pid),
                       "cached": (f"{cached_url}/recommend?k=10&user_id=", pid)}
            targets["cached_experiment"] = targets["cached"]
            similar_url, items_file = serving_similar.target(cached_url, work, kind, items)
            targets["similar"] = (similar_url, pid)
            ids_of = {"similar": items_file}  # the others pick users
            for name, (url_prefix, _) in targets.items():  # warm-up, not recorded
                run_wrk(url_prefix, ids_of.get(name, ids), 2, args.connections, work)
            names = ("bare", "cached", "cached_experiment", "similar")
            rounds, rerun = {n: [] for n in names}, dict.fromkeys(names, 0)
            lists, running = ServedLists.from_url(url, NS), None
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    url_prefix, server = targets[name]
                    if name.startswith("cached") and (running is not None) != (
                            name == "cached_experiment"):
                        running = set_experiment(
                            lists, f"bench-{r}" if running is None else None, running)
                        run_wrk(url_prefix, ids, 1, args.connections, work)  # loads the arm
                        check_answers(cached_url, warm[:40], running)
                    got, reruns, _ = settled_round(
                        url_prefix, ids_of.get(name, ids), args, work, server, r, SETTLE_S,
                        f"{kind} round {r} {name}",
                        lambda: lists.r.delete(f"{NS}:impressions"))  # nothing drains it here
                    rerun[name] += reruns
                    rounds[name].append(got)
            set_experiment(lists, None, running)
            cpu = cpu_seconds(pid)
            fresh = open_loop(cached_url, [f"f{n}" for n in range(args.fresh_users)],
                              args.fresh_rate, args.fresh_seconds, features=features)
            fresh["server_cpu_us"] = round(1e6 * (cpu_seconds(pid) - cpu) / fresh["requests"], 1)
            server = process_info(pid)
        colds = [cold]
        for n in range(1, args.cold_starts):  # alone: nothing else of ours is running
            with start_server(serve, env, free_port(), "/recommend?user_id=f0&k=10",
                              os.path.join(work, f"serve-{kind}-{n}.log")) as (_, cold, _):
                colds.append(cold)
        metrics = serving_metrics.measure(env, ids, args, work, kind,
                                          lambda: lists.r.delete(f"{NS}:impressions"))
        load["after"] = os.getloadavg()
    experiment = _median(rounds["cached_experiment"])
    out = {"cached": _median(rounds["cached"]), "bare": _median(rounds["bare"]),
           "cached_experiment": experiment, "similar": _median(rounds["similar"]),
           "fresh": fresh, "cold_start_s": round(statistics.median(colds), 3),
           "cold_starts_s": [round(c, 3) for c in colds], "server": server, "bundle": info,
           "metrics": metrics,
           "load_average": load, "unbalanced_rounds_rerun": rerun}
    experiment["ratio_to_cached"] = round(experiment["rps"] / out["cached"]["rps"], 3)
    out["checks"] = {**checks(out), **serving_similar.checks(out)}
    return out


def checks(r: dict) -> dict:
    """One kind's figures against the targets (cached vs bare; issue 16's fresh p99 and cold
    start; no heavy module in the server)."""
    c, b, f = r["cached"], r["bare"], r["fresh"]
    return {"cached_rps_over_bare": round(c["rps"] / b["rps"], 3),
            "cached_p99_over_bare": round(c["p99_ms"] / b["p99_ms"], 3),
            "cached_cpu_over_bare": round(c["server_cpu_us"] / b["server_cpu_us"], 3),
            "cached_ok": c["rps"] >= 0.8 * b["rps"] and c["p99_ms"] <= 1.5 * b["p99_ms"],
            "fresh_ok": f["p99_ms"] <= FRESH_P99_MS and f["errors"] == 0
            and f["sources"].get("on_demand", 0) == f["requests"],
            "cold_start_ok": r["cold_start_s"] <= COLD_START_S,
            "light_imports_ok": not r["server"]["heavy_modules_mapped"],
            "experiment_rps_over_cached": r["cached_experiment"]["ratio_to_cached"],
            "experiment_ok": r["cached_experiment"]["ratio_to_cached"] >= EXPERIMENT_RATIO,
            "metrics_on_over_off": r["metrics"]["ratio"], "metrics_ok": r["metrics"]["ok"]}


def run(args) -> dict:
    work = tempfile.mkdtemp(prefix="recsys-bench-")
    settings = {"kinds": args.kinds, "mf_users": args.users, "items": args.items,
                "served_users": args.served_users, "served_events": args.served_events,
                "served_config": args.served_config, "k": 100, "page_k": 10,
                "workers": args.workers, "threads": args.threads,
                "connections": args.connections, "seconds_per_round": args.duration,
                "rounds": args.rounds, "fresh_users": args.fresh_users,
                "fresh_rate": args.fresh_rate, "fresh_seconds": args.fresh_seconds,
                "cold_starts": args.cold_starts, "cpus": os.cpu_count()}
    result = {"kinds": {}, "settings": settings}
    for kind in args.kinds:
        result["kinds"][kind] = run_kind(kind, args, work)
        # the bundles (hundreds of MB); the servers' logs stay (--served-store keeps its own)
        shutil.rmtree(os.path.join(work, f"artifacts-{kind}"), ignore_errors=True)
    log.info("server logs in %s", work)
    result["checks"] = {kind: r["checks"] for kind, r in result["kinds"].items()}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the result to this file")
    parser.add_argument("--plot", help="latency plot (PNG); default: next to --json")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"model kinds to run, comma-separated, of {','.join(KINDS)}")
    parser.add_argument("--users", type=int, default=100_000, help="MF users with a list")
    parser.add_argument("--items", type=int, default=20_000, help="items of either catalog")
    parser.add_argument("--served-users", type=int, default=20_000,
                        help="users of the served kind's training data (all get a list)")
    parser.add_argument("--served-events", type=int, default=400_000,
                        help="events of the served kind's training data (about)")
    parser.add_argument("--served-config", default=SERVED_CONFIG,
                        help="JSON overrides of ServedConfig for the served training")
    parser.add_argument("--served-store", help="keep the trained served bundle in this folder "
                        "and reuse it when its settings match (delete it to retrain)")
    parser.add_argument("--fresh-users", type=int, default=5_000, help="users with history only")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 2)),
                        help="gunicorn workers of both servers (env WORKERS)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 4)),
                        help="gunicorn threads per worker of both servers (env THREADS)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=5, help="wrk rounds per server")
    parser.add_argument("--fresh-rate", type=float, default=50, help="fresh requests per second")
    parser.add_argument("--fresh-seconds", type=float, default=30, help="fresh run length")
    parser.add_argument("--cold-starts", type=int, default=3,
                        help="server starts timed per kind (the median is cold_start_s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--retries", type=int, default=3,
                        help="reruns of a round whose connections landed on one worker")
    parser.add_argument("--cluster", action="store_true", help="instead: the cached path on a "
                        "local 3-node Redis Cluster vs one redis-server (serving_cluster.py)")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds {','.join(args.kinds)}: choose among {','.join(KINDS)}")
    if args.cold_starts < 1:
        parser.error("--cold-starts must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.cluster:  # imported by name: serving_cluster builds on this module's functions
        serving_cluster = importlib.import_module("benchmarks.serving_cluster")
        result = serving_cluster.run(args)
        write_json(result, args.json)
        print(serving_cluster.summary(result))
        return 0
    result = run(args)
    write_json(result, args.json)
    if args.json:
        log.info("wrote %s", args.json)
    target = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if target:
        plot(result, target)
        log.info("wrote %s", target)
    print(summary_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
