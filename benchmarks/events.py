"""Event ingestion benchmark: POST /events under load, a server kill, the drain into Parquet.

    python -m benchmarks.events --json events.json [--events 100000 --batch 500 --clients 8]
    python -m benchmarks.events --redis-kill --json redis_kill.json   # benchmarks/events_redis.py

Per scenario (`normal`, then `kill`; `--scenario` picks one) against a throw-away redis-server
and `recsys serve` (functions-framework's gunicorn, WORKERS=2) in its own process group:
- a small bundle without a user tower is published (`/health` and `/recommend` need one;
  `/events` does not), and `--load-clients` threads keep asking `/recommend` for random users;
- `--clients` threads post `--events` events (unique event ids) in batches of `--batch`; a
  batch that gets no 200 (connection error, timeout, 5xx) is sent again with the same ids
  until one comes: the at-least-once client contract that the server's dedup makes exactly once;
- `kill`: when half of the events are acknowledged, SIGKILL the server's process group (master
  and workers) and start it again on the same port; the clients carry on with their retries.
  Only the HTTP server dies: Redis keeps running, so its persistence (off here) plays no part;
- then the nightly drain (`infra.events_log.drain_events`) into a local artifact store, first
  one that dies between writing a Parquet file and acknowledging it, then a complete one;
- every Parquet row is counted by event id across all files: each acknowledged event must be
  there exactly once, with the content that was posted, and nothing else.
Writes {"normal": {...}, "kill": {...}}, each with the counts, rates, latencies and "checks".
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import tempfile
import threading
import time

import numpy as np
from tqdm import tqdm

from benchmarks.events_http import (
    Server,
    Tally,
    build_small_bundle,
    count_rows,
    make_event,
    post_batches,
    recommend_load,
)
from benchmarks.output import write_json
from benchmarks.serving import publish_lists

log = logging.getLogger("benchmarks.events")
def ingest(server: Server, batches: list[list[dict]], clients: int, load_clients: int,
           users: int, kill: bool, seed: int = 0) -> tuple[Tally, dict]:
    """Posts the batches under /recommend load, killing and restarting the server midway if
    asked; returns the tally and {"seconds", "kill": {...} or None}."""
    tally, jobs, stop = Tally(), queue.Queue(), threading.Event()
    for batch in batches:
        jobs.put(batch)
    total = sum(map(len, batches))
    loaders = [threading.Thread(target=recommend_load, args=(server.port, users, stop, tally,
                                                             seed + n), daemon=True)
               for n in range(load_clients)]
    posters = [threading.Thread(target=post_batches, args=(server.port, jobs, tally),
                                daemon=True) for _ in range(clients)]
    killed, started = None, time.perf_counter()
    for t in loaders + posters:
        t.start()
    with tqdm(total=total, desc="events acknowledged", unit="ev", leave=False) as bar:
        while any(t.is_alive() for t in posters):
            done = len(tally.acked)
            bar.update(done - bar.n)
            if kill and killed is None and done >= total // 2:
                at = time.perf_counter()
                pids = server.kill()
                restart = server.start()
                killed = {"at_acknowledged": done, "at_s": round(at - started, 3),
                          "pids_killed": len(pids), "downtime_s": round(time.perf_counter()
                                                                        - at, 3),
                          "restart_s": round(restart, 3)}
                log.info("killed %d server processes at %d acknowledged events; back after "
                         "%.2f s", len(pids), done, killed["downtime_s"])
            time.sleep(0.01)
        bar.update(len(tally.acked) - bar.n)
    seconds = time.perf_counter() - started
    stop.set()
    for t in loaders:
        t.join()
    return tally, {"seconds": seconds, "kill": killed}


class _AckFails:
    """An EventStream whose acknowledgements fail after `after` of them: a drain that dies
    between writing a file and acknowledging its entries."""

    def __init__(self, stream, after: int):
        self.stream, self.after = stream, after

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def ack(self, group: str, ids: list[str]) -> None:
        if self.after <= 0:
            raise ConnectionError("drain killed after writing a file, before its XACK")
        self.after -= 1
        self.stream.ack(group, ids)


def drain_with_crash(stream, store, batch_size: int) -> dict:
    """A drain that dies midway (between a write and its acknowledgement), then a full one."""
    from infra.events_log import drain_events

    files = -(-stream.r.xlen(stream.keys.events) // batch_size)
    started = time.perf_counter()
    try:
        drain_events(_AckFails(stream, (files - 1) // 2), store, batch_size=batch_size)
        crashed = None
    except ConnectionError:
        crashed = {"files_written": len(store.list("events")),
                   "pending": stream.r.xpending(stream.keys.events, "nightly")["pending"]}
    final = drain_events(stream, store, batch_size=batch_size)
    return {"seconds": round(time.perf_counter() - started, 3), "crash": crashed,
            "final": {k: v for k, v in final.items() if k != "files"},
            "stream_left": stream.r.xlen(stream.keys.events),
            "pending_left": stream.r.xpending(stream.keys.events, "nightly")["pending"]}


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def run_scenario(name: str, redis_url: str, work: str, *, events: int = 100_000,
                 batch: int = 500, clients: int = 8, load_clients: int = 2, kill: bool = False,
                 users: int = 1000, items: int = 2000, workers: int = 2, threads: int = 4,
                 drain_batch: int = 20_000, seed: int = 0) -> dict:
    """One scenario end to end (server, ingestion, drain, checks) in a namespace of its own."""
    from infra.events_log import read_events_log
    from infra.redis.event_stream import EventStream
    from infra.redis.lists import ServedLists
    from infra.redis_server import free_port
    from infra.store import open_store

    os.makedirs(work, exist_ok=True)
    ns, version = f"evbench-{name}", f"evbench-{name}-0001"
    bundles = open_store(os.path.join(work, "artifacts"))
    lists = ServedLists.from_url(redis_url, ns)
    model = build_small_bundle(bundles, version, users, items, 16, seed)
    publish_lists(lists, bundles, version, model, 20, shard=max(1, users))
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": bundles.uri, "RECSYS_NAMESPACE": ns,
           "WORKERS": str(workers), "THREADS": str(threads)}
    server = Server(env, free_port(), os.path.join(work, f"serve-{name}.log"))
    posted = [make_event(name, n, users, items) for n in range(events)]
    try:
        cold_start = server.start()
        tally, run = ingest(server, [posted[lo:lo + batch] for lo in range(0, events, batch)],
                            clients, load_clients, users, kill, seed)
    finally:
        server.stop()
    log_store = open_store(os.path.join(work, f"log-{name}"))
    drain = drain_with_crash(EventStream(lists.r, ns), log_store, drain_batch)
    counts, content, dead = count_rows(log_store)
    drained = read_events_log(log_store)
    acked, ids = set(tally.acked), {e["event_id"] for e in posted}
    expected = {e["event_id"]: (e["user_id"], e["item_id"], e["timestamp"]) for e in posted}
    ok_recs = tally.recommend[200]
    result = {
        "events_posted": events, "acknowledged": len(acked), "acknowledgements": len(tally.acked),
        "posts": tally.posts, "retried_batches": tally.retries, "refused_batches": tally.failed,
        "server_stored": tally.stored, "server_duplicates": tally.duplicates,
        "rows_in_parquet": sum(counts.values()),
        "parquet_files": sum("/dead/" not in k for k in log_store.list("events")),
        "missing": len(acked - counts.keys()),
        "duplicated_rows": sum(c - 1 for c in counts.values() if c > 1),
        "unknown": len(counts.keys() - ids), "dead_letters": dead,
        "mismatched": sum(content[i] != expected[i] for i in counts.keys() & ids),
        "read_events_log_rows": len(drained),
        "ingest_seconds": round(run["seconds"], 3),
        "ingest_events_per_s": round(len(acked) / run["seconds"], 1),
        "post_p50_ms": _pct(tally.post_ms, 50), "post_p99_ms": _pct(tally.post_ms, 99),
        "drain_seconds": drain["seconds"], "drain": drain,
        "recommend": {"ok": ok_recs, "per_s": round(ok_recs / run["seconds"], 1),
                      "failed": sum(tally.recommend.values()) - ok_recs,
                      "p50_ms": _pct(tally.recommend_ms, 50),
                      "p99_ms": _pct(tally.recommend_ms, 99)},
        "kill": run["kill"], "cold_start_s": round(cold_start, 3),
        "settings": {"events": events, "batch": batch, "clients": clients,
                     "load_clients": load_clients, "workers": workers, "threads": threads,
                     "users": users, "items": items, "drain_batch": drain_batch,
                     "cpus": os.cpu_count()}}
    r = result
    checks = {
        "all_acknowledged": r["acknowledged"] == events and r["refused_batches"] == 0,
        "none_missing": r["missing"] == 0,
        "no_duplicated_rows": r["duplicated_rows"] == 0,
        "nothing_unknown": r["unknown"] == 0 and r["dead_letters"] == 0,
        "content_matches": r["mismatched"] == 0,
        "rows_equal_acknowledged": r["rows_in_parquet"] == r["acknowledged"]
        == r["read_events_log_rows"] and set(drained["event_id"]) == acked,
        "server_counts_add_up": r["server_stored"] + r["server_duplicates"]
        == r["acknowledgements"],
        "drain_resumed_after_crash": drain["crash"] is not None
        and drain["final"]["already_written"] > 0,
        "stream_emptied": drain["stream_left"] == 0 and drain["pending_left"] == 0,
        "server_killed_and_restarted": not kill or (r["kill"] is not None
                                                    and r["kill"]["pids_killed"] == workers + 1),
        "recommend_served": ok_recs > 0 and (kill or r["recommend"]["failed"] == 0)}
    result["checks"] = {**checks, "passed": all(checks.values())}
    return result


def summary(name: str, r: dict) -> str:
    kill = r["kill"]
    killed = (f"; killed {kill['pids_killed']} processes at {kill['at_acknowledged']:,} "
              f"acknowledged, back in {kill['downtime_s']:.2f} s" if kill else "")
    return (f"{name}: {r['events_posted']:,} posted, {r['acknowledged']:,} acknowledged, "
            f"{r['retried_batches']} retried batches, {r['server_duplicates']} server duplicates"
            f"{killed}; parquet {r['rows_in_parquet']:,} rows in {r['parquet_files']} files, "
            f"missing {r['missing']}, duplicated {r['duplicated_rows']}; ingest "
            f"{r['ingest_events_per_s']:,.0f} events/s, POST p50 {r['post_p50_ms']} ms p99 "
            f"{r['post_p99_ms']} ms; /recommend {r['recommend']['per_s']:,.0f}/s alongside; "
            f"drain (crash + rerun) {r['drain_seconds']:.2f} s; "
            f"checks {'pass' if r['checks']['passed'] else 'FAIL'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the result to this file")
    parser.add_argument("--scenario", choices=["normal", "kill", "both"], default="both",
                        help="normal, kill (the server SIGKILLed midway) or both in turn")
    parser.add_argument("--kill", action="store_true", help="the kill scenario only")
    parser.add_argument("--redis-kill", action="store_true",
                        help="kill redis-server (not the HTTP server) midway, once per "
                        "--persistence configuration (benchmarks/events_redis.py)")
    parser.add_argument("--persistence", nargs="+", default=["aof-always", "aof-everysec", "none"],
                        choices=["aof-always", "aof-everysec", "none"],
                        help="with --redis-kill: Redis' persistence configurations to run")
    parser.add_argument("--down-s", type=float, default=1.0,
                        help="with --redis-kill: seconds Redis stays down")
    parser.add_argument("--events", type=int, help="events posted (100000; 20000 with "
                        "--redis-kill)")
    parser.add_argument("--batch", type=int, help="events per POST (500; 100 with --redis-kill)")
    parser.add_argument("--clients", type=int, default=8, help="posting client threads")
    parser.add_argument("--load-clients", type=int, default=2, help="/recommend client threads")
    parser.add_argument("--users", type=int, default=1000, help="users of the bundle")
    parser.add_argument("--items", type=int, default=2000, help="items of the bundle")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 2)),
                        help="gunicorn workers (env WORKERS)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 4)),
                        help="gunicorn threads per worker (env THREADS)")
    parser.add_argument("--drain-batch", type=int, default=20_000, help="stream entries per file")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    args.events = args.events or (20_000 if args.redis_kill else 100_000)
    args.batch = args.batch or (100 if args.redis_kill else 500)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    if args.redis_kill:
        from benchmarks import events_redis

        result, lines, passed = events_redis.main(args)
        write_json(result, args.json)
        print("\n".join(lines))
        return 0 if passed else 1
    from infra.redis_server import local_redis

    names = ["kill"] if args.kill else ["normal", "kill"] if args.scenario == "both" \
        else [args.scenario]
    result = {}
    with tempfile.TemporaryDirectory(prefix="recsys-events-") as work, local_redis() as url:
        for name in names:
            result[name] = run_scenario(
                name, url, os.path.join(work, name), events=args.events, batch=args.batch,
                clients=args.clients, load_clients=args.load_clients, kill=name == "kill",
                users=args.users, items=args.items, workers=args.workers,
                threads=args.threads, drain_batch=args.drain_batch, seed=args.seed)
            log.info("%s checks: %s", name, result[name]["checks"])
    write_json(result, args.json)
    for name, r in result.items():
        print(summary(name, r))
    return 0 if all(r["checks"]["passed"] for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
