"""The cached path against a local 3-node Redis Cluster vs one redis-server, in one run.

    python -m benchmarks.serving --cluster --users 100000 --rounds 5 --json serving-cluster.json

One random MF bundle (benchmarks.serving.build_bundle) and its users' top-100 lists, published
the nightly's way both to a throw-away redis-server (redis://) and to a throw-away 3-node
Redis Cluster (redis+cluster://, infra.redis_server.local_redis_cluster; the cluster key
layout of infra/redis/keys.py); one `recsys serve` on each, same gunicorn settings; wrk picks
random warm users in alternating rounds of the two (servers, Redis nodes and wrk share this
machine's cores: the ratio is what to read, not the absolute req/s). Every answer is checked to
come from the cache before the rounds. JSON: {"cluster": {"single", "cluster" (medians of
rps, p50_ms, p99_ms, server_cpu_us, and the rounds), "cluster_rps_over_single",
"cluster_p99_over_single", "cluster_cpu_over_single", "rounds_rerun" (a round whose
connections landed on one worker, or whose sockets timed out without an HTTP error, runs
again), "settings"}}.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import urllib.request

from benchmarks.serving import NS, SETTLE_S, _median, build_bundle, publish_lists
from benchmarks.serving_experiment import VERSION
from benchmarks.serving_load import balanced, run_wrk, start_server, write_ids

log = logging.getLogger("benchmarks.serving_cluster")


def _check_cached(base_url: str, users: list[str]) -> None:
    """Raises unless every user's answer came from their cached list."""
    for user in users:
        with urllib.request.urlopen(f"{base_url}/recommend?k=10&user_id={user}") as r:
            source = json.load(r)["source"]
        if source != "cache":
            raise RuntimeError(f"{base_url}: user {user} answered from {source!r}, not the "
                               "cache: the lists did not reach this Redis")


def run(args) -> dict:
    """Publishes to both Redis setups, serves from each, measures alternating wrk rounds."""
    from infra.redis.keys import Keys
    from infra.redis.lists import ServedLists
    from infra.redis_server import free_port, local_redis, local_redis_cluster
    from infra.store import open_store

    work = tempfile.mkdtemp(prefix="recsys-bench-cluster-")
    folder = os.path.join(work, "artifacts")
    store = open_store(folder)
    model, _ = build_bundle(store, VERSION, args.users, args.items, 32, args.seed)
    with local_redis() as single_url, local_redis_cluster() as (cluster_url, _):
        urls = {"single": single_url, "cluster": cluster_url}
        stores = {name: ServedLists.from_url(url, NS) for name, url in urls.items()}
        for lists in stores.values():
            publish_lists(lists, store, VERSION, model, 100)
        ids = write_ids(os.path.join(work, "users.txt"), [str(u) for u in model.users.ids])
        serve = [sys.executable, "-m", "app.cli", "serve"]
        env = {"RECSYS_STORE": folder, "RECSYS_NAMESPACE": NS, "WORKERS": str(args.workers),
               "THREADS": str(args.threads)}
        with start_server(serve, {**env, "REDIS_URL": single_url}, free_port(),
                          "/recommend?user_id=0&k=10",
                          os.path.join(work, "serve-single.log")) as (single, _, single_pid), \
             start_server(serve, {**env, "REDIS_URL": cluster_url}, free_port(),
                          "/recommend?user_id=0&k=10",
                          os.path.join(work, "serve-cluster.log")) as (cluster, _, cluster_pid):
            targets = {"single": (single, single_pid), "cluster": (cluster, cluster_pid)}
            for base, _ in targets.values():
                _check_cached(base, [str(u) for u in model.users.ids[:50]])
                run_wrk(f"{base}/recommend?k=10&user_id=", ids, 2, args.connections, work)
            rounds, rerun = {name: [] for name in targets}, dict.fromkeys(targets, 0)
            for r in range(args.rounds):
                for name in list(targets) if r % 2 == 0 else list(targets)[::-1]:
                    base, pid = targets[name]
                    for attempt in range(args.retries + 1):
                        time.sleep(SETTLE_S)
                        try:
                            got = run_wrk(f"{base}/recommend?k=10&user_id=", ids,
                                          args.duration, args.connections, work, pid, r)
                        except RuntimeError as e:  # a socket timing out on a loaded machine
                            if "'status_errors': 0," not in str(e) or attempt == args.retries:
                                raise  # an HTTP error status is never run again
                            log.warning("round %d %s: socket errors, run again: %s", r, name, e)
                            rerun[name] += 1
                            continue
                        impressions = Keys(NS, cluster=name == "cluster").impressions
                        stores[name].r.delete(impressions)  # nothing drains it here
                        log.info("round %d %s: %s", r, name,
                                 {k: v for k, v in got.items() if k != "percentiles"})
                        if balanced(got["worker_cpu_shares"]) or attempt == args.retries:
                            break
                        rerun[name] += 1
                    rounds[name].append(got)
    out = {name: _median(rs) for name, rs in rounds.items()}
    s, c = out["single"], out["cluster"]
    out.update(cluster_rps_over_single=round(c["rps"] / s["rps"], 3),
               cluster_p99_over_single=round(c["p99_ms"] / s["p99_ms"], 3),
               cluster_cpu_over_single=round(c["server_cpu_us"] / s["server_cpu_us"], 3),
               rounds_rerun=rerun,
               settings={"users": args.users, "items": args.items, "k": 100, "page_k": 10,
                         "cluster_nodes": 3, "workers": args.workers, "threads": args.threads,
                         "connections": args.connections, "seconds_per_round": args.duration,
                         "rounds": args.rounds, "cpus": os.cpu_count()})
    log.info("server logs in %s", work)
    return {"cluster": out}


def summary(result: dict) -> str:
    """The lines the benchmark prints."""
    r = result["cluster"]
    lines = [f"{name:>8}: {r[name]['rps']:8.1f} req/s  p50 {r[name]['p50_ms']:6.2f} ms  "
             f"p99 {r[name]['p99_ms']:6.2f} ms  server CPU {r[name]['server_cpu_us']:7.1f} us/req"
             for name in ("single", "cluster")]
    lines.append(f"cluster / single: rps {r['cluster_rps_over_single']}, p99 "
                 f"{r['cluster_p99_over_single']}, server CPU {r['cluster_cpu_over_single']}")
    return "\n".join(lines)
