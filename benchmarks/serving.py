"""Serving benchmark: the functions over real HTTP, real Redis, real load generators.

    python -m benchmarks.serving --json serving.json [--plot serving.png]

Builds a 20,000-item bundle from a random MF through the MF kind's export, as the nightly
writes one (models.kinds.write_bundle; so the fresh path runs the real LiteRT user tower),
publishes 100,000 users' top-100 lists (Faiss) to a throw-away redis-server, and gives 5,000
fresh users a recent history through ListStore.append_events. Then it starts, as subprocesses
under the same gunicorn settings (WORKERS/THREADS), `recsys serve` and the `bare` function of
functions/bare.py (one Redis GET of the same list), and measures:
- cached vs bare: wrk with a Lua script picking random users, alternating rounds of the two;
  the medians over rounds are reported. A round in which gunicorn's workers split the work
  unevenly (one took almost all of wrk's keep-alive connections; see `balanced`) is run
  again, up to --retries times, for either server; the count is in the result;
- fresh: an open-loop client at a fixed 50 requests/s (latency counted from the scheduled send
  time), users with no nightly list, so /recommend ranks them on demand;
- cold start: `recsys serve` process start to its first successful /recommend.
Writes {"cached": {"rps", "p50_ms", "p99_ms"}, "bare": {...}, "fresh": {...}, "cold_start_s"}
plus the settings and the acceptance checks, and a latency plot (matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import numpy as np

log = logging.getLogger("benchmarks.serving")
NS = "bench"
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9)
WRK_SCRIPT = """
local n, prefix = %(users)d, "%(prefix)s"
local thread_seed = 0
function setup(thread) thread_seed = thread_seed + 1; thread:set("seed", thread_seed) end
function init(args) math.randomseed(%(seed)d * 7919 + (seed or 0)) end
function request() return wrk.format("GET", prefix .. math.random(0, n - 1)) end
function done(summary, latency, requests)
  local p = {}
  for _, q in ipairs({%(percentiles)s}) do
    p[#p + 1] = string.format('"%%s": %%d', q, latency:percentile(q))
  end
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, ' ..
    '"socket_errors": %%d, "percentiles_us": {%%s}}\\n', summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, table.concat(p, ", ")))
end
"""


# Servers and load ---------------------------------------------------------------------------------
def _get(url: str, timeout: float = 5.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        resp.read()
        return resp.status


@contextlib.contextmanager
def start_server(command: list[str], env: dict, port: int, probe: str, log_path: str):
    """Starts a server subprocess; yields (base url, seconds to first 200 on `probe`, pid)."""
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen([*command, "--port", str(port)], env={**os.environ, **env},
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    if _get(base + probe) == 200:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if proc.poll() is not None or time.perf_counter() - started > 120:
                    raise RuntimeError(f"{command} did not start; see {log_path}")
                time.sleep(0.01)
            yield base, time.perf_counter() - started, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _server_pids(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *map(int, f.read().split())]
    return [pid]


def _cpu_ticks(pids: list[int]) -> list[int]:
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out.append(int(fields[11]) + int(fields[12]))  # utime, stime (clock ticks)
        except OSError:
            out.append(0)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process and its workers, in seconds."""
    return sum(_cpu_ticks(_server_pids(pid))) / os.sysconf("SC_CLK_TCK")


def worker_shares(pid: int, before: dict[int, int]) -> list[float]:
    """Each gunicorn worker's share of the workers' CPU time since `before` (pid -> ticks)."""
    workers = _server_pids(pid)[1:]
    used = [now - before.get(w, 0) for w, now in zip(workers, _cpu_ticks(workers), strict=True)]
    total = sum(used)
    return [round(u / total, 3) for u in used] if total else []


def run_wrk(url_prefix: str, users: int, seconds: int, connections: int, work: str,
            pid: int | None = None, seed: int = 0) -> dict:
    """One wrk run over random user ids; returns rps, p50/p99, the latency percentiles and,
    given the server's pid, the server CPU time per request (less sensitive than rps to
    other load on the machine)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found on PATH: apt-get install wrk")
    host, _, path = url_prefix.partition("//")[2].partition("/")
    script = os.path.join(work, "users.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % {"users": users, "prefix": "/" + path, "seed": seed,
                              "percentiles": ", ".join(map(str, PERCENTILES))})
    cpu = cpu_seconds(pid) if pid else 0.0
    workers = _server_pids(pid)[1:] if pid else []
    ticks = dict(zip(workers, _cpu_ticks(workers), strict=True))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script,
                          f"http://{host}"], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu if pid else 0.0
    shares = worker_shares(pid, ticks) if pid else []  # [] without a pid
    stats = json.loads(next(line for line in out.splitlines() if line.startswith("WRKJSON"))[8:])
    if stats["status_errors"] or stats["socket_errors"]:
        raise RuntimeError(f"wrk saw errors against {url_prefix}: {stats}")
    p = {float(q): us / 1000 for q, us in stats["percentiles_us"].items()}
    return {"rps": round(stats["requests"] / (stats["duration_us"] / 1e6), 1),
            "p50_ms": round(p[50.0], 3), "p99_ms": round(p[99.0], 3),
            "server_cpu_us": round(1e6 * cpu / stats["requests"], 1),
            "worker_cpu_shares": shares, "requests": stats["requests"], "percentiles": p}


def balanced(shares: list[float]) -> bool:
    """Whether every worker did at least half of an even share of the work.

    gunicorn's gthread workers race to accept the burst of keep-alive connections wrk opens
    at the start of a round, and a connection stays with the worker that accepted it: now and
    then one worker takes (almost) all of them and the round measures one process on one core
    whatever the code does. It happens to either server, at random.
    """
    return len(shares) < 2 or min(shares) >= 0.5 / len(shares)


def open_loop(base: str, users: list[str], rate: float, seconds: float, k: int = 10,
              clients: int = 16, seed: int = 0) -> dict:
    """Sends GET /recommend at a fixed rate whatever the answers' latency (open loop).

    Latency is counted from each request's scheduled send time, so a slow answer also
    delays, and is charged to, the requests queued behind it.
    """
    host, port = base.removeprefix("http://").split(":")
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    jobs: queue.Queue = queue.Queue()
    results: list = [None] * n

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while (job := jobs.get()) is not None:
            i, scheduled, path = job
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = json.loads(resp.read())
                results[i] = (time.perf_counter() - scheduled, resp.status, body.get("source"))
            except (OSError, http.client.HTTPException, ValueError) as e:
                results[i] = (time.perf_counter() - scheduled, 0, type(e).__name__)
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.05
    for i in range(n):
        scheduled = start + i / rate
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        jobs.put((i, scheduled, f"/recommend?k={k}&user_id={users[rng.integers(len(users))]}"))
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ms = np.array([r[0] for r in results]) * 1000
    return {"rps": round(n / elapsed, 1), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3), "requests": n,
            "errors": sum(r[1] != 200 for r in results),
            "sources": dict(Counter(r[2] for r in results)),
            "latencies_ms": [round(x, 3) for x in ms.tolist()]}


def process_info(pid: int) -> dict:
    """RSS of a server and its worker processes, and whether any of them mapped TensorFlow."""
    pids, rss, tf = [pid], 0, False
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{p}/status") as f:
                rss += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            with open(f"/proc/{p}/maps") as f:
                tf = tf or "tensorflow" in f.read()
    return {"processes": len(pids), "rss_mb": round(rss / 1024, 1), "tensorflow_loaded": tf}


def plot(result: dict, path: str) -> None:
    """Fresh-path latency histogram and the latency percentiles of all three paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    fresh = result["fresh"]
    left.hist(fresh["latencies_ms"], bins=60, color="tab:green")
    left.axvline(fresh["p99_ms"], color="k", ls="--", label=f"p99 {fresh['p99_ms']:.1f} ms")
    left.set(title=f"fresh (on-demand) at {result['settings']['fresh_rate']:g} req/s, "
                   f"{result['settings']['items']:,} items", xlabel="latency (ms)",
             ylabel="requests")
    left.legend()
    for name, color in (("bare", "tab:gray"), ("cached", "tab:blue")):
        rounds = result[name]["rounds"]
        mid = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
        qs = sorted(mid["percentiles"])
        right.plot(qs, [mid["percentiles"][q] for q in qs], "o-", color=color,
                   label=f"{name}: {result[name]['rps']:,.0f} req/s (wrk, median round)")
    qs = list(PERCENTILES)
    right.plot(qs, np.percentile(fresh["latencies_ms"], qs), "o-", color="tab:green",
               label=f"fresh: {fresh['rps']:.0f} req/s (open loop)")
    right.set(title="latency by percentile", xlabel="percentile", ylabel="latency (ms)",
              yscale="log")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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
    lists.flip(version, n, {"version": version, "users_published": n, "benchmark": True})


def seed_fresh(lists, popular: list[str], n_items: int, n_fresh: int, seed: int) -> list[str]:
    """n_fresh users known only by 5-20 recent events each; returns their ids."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed + 1)
    users, events = [f"f{n}" for n in range(n_fresh)], []
    for user in users:
        for _ in range(int(rng.integers(5, 21))):
            item = popular[rng.integers(len(popular))] if rng.random() < 0.5 else \
                str(rng.integers(n_items))
            events.append({"user_id": user, "item_id": item, "event_type": "click",
                           "timestamp": 1_750_000_000})
    for lo in tqdm(range(0, len(events), 1000), desc="fresh events", unit="batch"):
        lists.append_events(events[lo:lo + 1000])
    return users


def _median(rounds: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_us")
    out = {key: round(statistics.median(r[key] for r in rounds), 2) for key in keys}
    return {**out, "rounds": rounds}


def run(args) -> dict:
    from infra.redis_server import free_port, local_redis
    from infra.redis_store import ListStore
    from infra.store import open_store

    work = tempfile.mkdtemp(prefix="recsys-bench-")
    store_dir = os.path.join(work, "artifacts")
    store, version = open_store(store_dir), "bench-0001"
    settings = {"users": args.users, "items": args.items, "k": 100, "page_k": 10,
                "workers": args.workers, "threads": args.threads,
                "connections": args.connections, "seconds_per_round": args.duration,
                "rounds": args.rounds, "fresh_rate": args.fresh_rate,
                "fresh_seconds": args.fresh_seconds, "cpus": os.cpu_count()}
    with local_redis() as url:
        lists = ListStore.from_url(url, NS)
        model, popular = build_bundle(store, version, args.users, args.items, 32, args.seed)
        publish_lists(lists, store, version, model, 100)
        fresh_users = seed_fresh(lists, popular, args.items, args.fresh_users, args.seed)
        env = {"REDIS_URL": url, "RECSYS_STORE": store_dir, "RECSYS_NAMESPACE": NS,
               "WORKERS": str(args.workers), "THREADS": str(args.threads),
               "RECSYS_BARE_PREFIX": f"{NS}:v:{version}:u:"}
        serve = [sys.executable, "-m", "infra.cli", "serve"]
        bare = [sys.executable, "-m", "functions_framework", "--source", "functions/bare.py",
                "--target", "bare", "--host", "127.0.0.1"]
        load = {"before": os.getloadavg()}
        with start_server(serve, env, free_port(), "/recommend?user_id=0&k=10",
                          os.path.join(work, "serve.log")) as (cached_url, cold_start, pid), \
             start_server(bare, env, free_port(), "/?user_id=0",
                          os.path.join(work, "bare.log")) as (bare_url, _, bare_pid):
            targets = {"bare": (f"{bare_url}/?user_id=", bare_pid),
                       "cached": (f"{cached_url}/recommend?k=10&user_id=", pid)}
            for url_prefix, _ in targets.values():  # warm-up, not recorded
                run_wrk(url_prefix, args.users, 2, args.connections, work)
            rounds, rerun = {"bare": [], "cached": []}, {"bare": 0, "cached": 0}
            for r in range(args.rounds):
                order = ("bare", "cached") if r % 2 == 0 else ("cached", "bare")
                for name in order:
                    url_prefix, server = targets[name]
                    for attempt in range(args.retries + 1):
                        got = run_wrk(url_prefix, args.users, args.duration, args.connections,
                                      work, server, r)
                        log.info("round %d %s: %s", r, name,
                                 {k: v for k, v in got.items() if k != "percentiles"})
                        if balanced(got["worker_cpu_shares"]) or attempt == args.retries:
                            break
                        rerun[name] += 1
                        log.info("round %d %s: connections landed unevenly on the workers "
                                 "(CPU shares %s): run again", r, name, got["worker_cpu_shares"])
                    rounds[name].append(got)
            cpu = cpu_seconds(pid)
            fresh = open_loop(cached_url, fresh_users, args.fresh_rate, args.fresh_seconds)
            fresh["server_cpu_us"] = round(1e6 * (cpu_seconds(pid) - cpu) / fresh["requests"], 1)
            server = process_info(pid)
        load["after"] = os.getloadavg()
    result = {"cached": _median(rounds["cached"]), "bare": _median(rounds["bare"]),
              "fresh": fresh, "cold_start_s": round(cold_start, 3), "server": server,
              "settings": settings, "load_average": load, "unbalanced_rounds_rerun": rerun}
    c, b, f = result["cached"], result["bare"], result["fresh"]
    result["checks"] = {
        "cached_rps_over_bare": round(c["rps"] / b["rps"], 3),
        "cached_p99_over_bare": round(c["p99_ms"] / b["p99_ms"], 3),
        "cached_cpu_over_bare": round(c["server_cpu_us"] / b["server_cpu_us"], 3),
        "fresh_p99_ms": f["p99_ms"],
        "cached_ok": c["rps"] >= 0.8 * b["rps"] and c["p99_ms"] <= 1.5 * b["p99_ms"],
        "fresh_ok": f["p99_ms"] <= 25 and f["errors"] == 0
        and f["sources"].get("on_demand", 0) == f["requests"]}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the result to this file")
    parser.add_argument("--plot", help="latency plot (PNG); default: next to --json")
    parser.add_argument("--users", type=int, default=100_000, help="users with a nightly list")
    parser.add_argument("--items", type=int, default=20_000, help="items in the bundle")
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
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--retries", type=int, default=3,
                        help="reruns of a round whose connections landed on one worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    target = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if target:
        plot(result, target)
        log.info("wrote %s", target)
    log.info("checks: %s", result["checks"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
