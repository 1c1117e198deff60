"""Redis killed mid-stream: which acknowledged events survive, per persistence configuration.

    python -m benchmarks.events --redis-kill --json redis_kill.json [--events 20000 --batch 100]

Per configuration (`aof-always`, `aof-everysec`, `none`; `--persistence` picks some) a fresh
redis-server in a folder of its own and `recsys serve` (gunicorn, WORKERS=2) in front of it:
- `--clients` threads post `--events` events (unique event ids) to POST /events in batches of
  `--batch`; a batch without a 200 (503, connection error, timeout) is sent again with the same
  ids until one comes (the 503 contract of functions/main.py: resent ids are stored once);
- when half of the events are acknowledged, redis-server gets SIGKILL (no shutdown, no final
  fsync: a crash of the process), stays down `--down-s` seconds and is started again from the
  same folder and port: with AOF it replays its append-only file, without it starts empty;
- then every stream entry is counted by event id (duplicates the server stored), the nightly's
  drain (infra.events_log.drain_events) writes the stream to Parquet, and each acknowledged
  event is looked for there: `lost` are acknowledged events in no file, `duplicated_rows`
  event ids in more than one row.
A SIGKILL of the process leaves what Redis had written to the kernel: with appendfsync
everysec too, the file keeps it. Only a crash of the machine (power, kernel, VM) loses the
writes not yet fsynced, which everysec bounds at about a second and always at none; this
benchmark cannot crash the machine, so it measures the process crash only (docs/DEPLOY.md).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter

from benchmarks.events_http import Server, Tally, count_rows, make_event, post_batches

CONFIGURATIONS = {
    "aof-always": ["--appendonly", "yes", "--appendfsync", "always"],
    "aof-everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "none": ["--appendonly", "no"],
}


class RedisProcess:
    """redis-server on a fixed port and folder, so a killed one restarts from its own files."""

    def __init__(self, workdir: str, port: int, persistence: list[str]):
        self.workdir, self.port, self.persistence = workdir, port, persistence
        self.url, self.proc = f"redis://127.0.0.1:{port}/0", None
        os.makedirs(workdir, exist_ok=True)

    def start(self, timeout: float = 60) -> float:
        """Starts it; returns the seconds until it answers PING with its data loaded."""
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH: install it "
                               "(Debian/Ubuntu: `apt-get install redis-server`)")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", self.workdir, *self.persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                if client.ping() and client.info("persistence")["loading"] == 0:
                    return time.perf_counter() - started
            if self.proc.poll() is not None or time.perf_counter() - started > timeout:
                raise RuntimeError(f"redis-server did not start (exit {self.proc.poll()})")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def ingest_killing_redis(server: Server, redis_proc: RedisProcess, batches: list[list[dict]],
                         clients: int, down_s: float) -> tuple[Tally, dict]:
    """Posts the batches; SIGKILLs Redis at half of them acknowledged and restarts it."""
    tally, jobs = Tally(), queue.Queue()
    for batch in batches:
        jobs.put(batch)
    total = sum(map(len, batches))
    posters = [threading.Thread(target=post_batches, args=(server.port, jobs, tally),
                                daemon=True) for _ in range(clients)]
    started, killed = time.perf_counter(), None
    for t in posters:
        t.start()
    while any(t.is_alive() for t in posters):
        if killed is None and len(tally.acked) >= total // 2:
            with tally.lock:
                acked_before = len(tally.acked)
            redis_proc.kill()
            time.sleep(down_s)
            restart = redis_proc.start()
            killed = {"acknowledged_before_kill": acked_before, "down_s": down_s,
                      "restart_s": round(restart, 3)}
        time.sleep(0.005)
    return tally, {"seconds": time.perf_counter() - started, "kill": killed}


def stream_event_ids(client, key: str) -> Counter:
    """Entries per event id in the stream (before the drain, which skips repeated ids)."""
    counts, start = Counter(), "-"
    while True:
        entries = client.xrange(key, min=start, count=10_000)
        counts.update(f[b"event_id"].decode() for _, f in entries if b"event_id" in f)
        if len(entries) < 10_000:
            return counts
        start = "(" + entries[-1][0].decode()


def run_configuration(name: str, work: str, *, events: int, batch: int, clients: int,
                      down_s: float, workers: int, threads: int, seed: int = 0) -> dict:
    """One persistence configuration end to end: serve, post, kill Redis, drain, count."""
    from benchmarks.events_http import build_small_bundle
    from benchmarks.serving import publish_lists
    from infra.events_log import drain_events
    from infra.redis.event_stream import EventStream
    from infra.redis.lists import ServedLists
    from infra.redis_server import free_port
    from infra.store import open_store

    users, items, ns = 500, 1000, f"rkill-{name}"
    redis_proc = RedisProcess(os.path.join(work, "redis"), free_port(), CONFIGURATIONS[name])
    redis_proc.start()
    server = None
    try:
        bundles = open_store(os.path.join(work, "artifacts"))
        lists = ServedLists.from_url(redis_proc.url, ns)
        model = build_small_bundle(bundles, f"{ns}-0001", users, items, 16, seed)
        publish_lists(lists, bundles, f"{ns}-0001", model, 20, shard=users)
        env = {"REDIS_URL": redis_proc.url, "RECSYS_STORE": bundles.uri,
               "RECSYS_NAMESPACE": ns, "WORKERS": str(workers), "THREADS": str(threads),
               "RECSYS_REDIS_RETRY_S": "0.2"}
        server = Server(env, free_port(), os.path.join(work, "serve.log"))
        server.start()
        posted = [make_event(name, n, users, items) for n in range(events)]
        tally, run = ingest_killing_redis(
            server, redis_proc, [posted[lo:lo + batch] for lo in range(0, events, batch)],
            clients, down_s)
        stream = EventStream(lists.r, ns)
        in_stream = stream_event_ids(lists.r, stream.keys.events)
        store = open_store(os.path.join(work, "log"))
        drained = drain_events(stream, store, batch_size=max(1000, events))
        rows, _, dead = count_rows(store)
    finally:
        if server is not None:
            server.stop()
        redis_proc.stop()
    acked = set(tally.acked)
    lost = acked - rows.keys()
    before = run["kill"]["acknowledged_before_kill"] if run["kill"] else 0
    return {
        "appendonly": CONFIGURATIONS[name], "events_posted": events,
        "acknowledged": len(acked), "acknowledged_before_kill": before,
        "retried_posts": tally.retries, "refused_batches": tally.failed,
        "server_duplicates": tally.duplicates,
        "stream_entries": sum(in_stream.values()),
        "stream_duplicates": sum(c - 1 for c in in_stream.values() if c > 1),
        "drain_skipped_duplicates": drained["duplicates"], "rows_in_parquet": sum(rows.values()),
        "lost": len(lost), "lost_share_of_acknowledged": round(len(lost) / max(1, len(acked)), 4),
        "duplicated_rows": sum(c - 1 for c in rows.values() if c > 1),
        "unknown": len(rows.keys() - {e["event_id"] for e in posted}) + dead,
        "ingest_seconds": round(run["seconds"], 3),
        "ingest_events_per_s": round(len(acked) / run["seconds"], 1),
        "kill": run["kill"], "aof_bytes": _folder_bytes(redis_proc.workdir),
        "settings": {"events": events, "batch": batch, "clients": clients, "down_s": down_s,
                     "workers": workers, "threads": threads, "cpus": os.cpu_count()}}


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def checks(name: str, r: dict) -> dict:
    """With AOF nothing acknowledged is lost; without persistence, the loss is only reported."""
    out = {"all_acknowledged": r["acknowledged"] == r["events_posted"]
           and r["refused_batches"] == 0,
           "killed_mid_stream": r["kill"] is not None
           and 0 < r["acknowledged_before_kill"] < r["events_posted"],
           "no_duplicated_rows": r["duplicated_rows"] == 0 and r["stream_duplicates"] == 0,
           "nothing_unknown": r["unknown"] == 0}
    if name != "none":
        out["none_lost"] = r["lost"] == 0
    return {**out, "passed": all(out.values())}


def summary(name: str, r: dict) -> str:
    kill = r["kill"] or {}
    return (f"redis-kill {name}: {r['events_posted']:,} posted, {r['acknowledged']:,} "
            f"acknowledged ({kill.get('acknowledged_before_kill', 0):,} before the SIGKILL, "
            f"Redis back in {kill.get('restart_s', float('nan')):.2f} s after "
            f"{kill.get('down_s', 0)} s down), {r['retried_posts']} posts retried; lost "
            f"{r['lost']:,} acknowledged events, duplicated rows {r['duplicated_rows']} "
            f"(stream duplicates {r['stream_duplicates']}); {r['ingest_events_per_s']:,.0f} "
            f"events/s; checks {'pass' if r['checks']['passed'] else 'FAIL'}")


def main(args) -> tuple[dict, list[str], bool]:
    """Runs the configurations named by args.persistence; (result, summary lines, passed)."""
    import tempfile

    result = {}
    with tempfile.TemporaryDirectory(prefix="recsys-redis-kill-") as work:
        for name in args.persistence:
            r = run_configuration(name, os.path.join(work, name), events=args.events,
                                  batch=args.batch, clients=args.clients, down_s=args.down_s,
                                  workers=args.workers, threads=args.threads, seed=args.seed)
            result[name] = {**r, "checks": checks(name, r)}
    lines = [summary(n, r) for n, r in result.items()]
    return result, lines, all(r["checks"]["passed"] for r in result.values())
