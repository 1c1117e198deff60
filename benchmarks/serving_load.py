"""The serving benchmark's tools (benchmarks/serving.py): server subprocesses, wrk over random
users, an open-loop client at a fixed rate, and what the server processes cost and load.

wrk (Debian's, not wrk2) has no fixed request rate: it drives as many requests as its
connections allow, which is what the cached and bare rounds measure. The fresh path's latency
at a fixed rate comes from `open_loop`, which schedules each request whatever the answers'
latency and counts from the scheduled send time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import numpy as np

log = logging.getLogger("benchmarks.serving")
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9)
# Modules the function must not load (tests/functions/test_light_imports.py), as the paths of
# the shared objects they map.
HEAVY = ("tensorflow", "keras", "pandas", "pyarrow")
WRK_SCRIPT = """
local ids_file, prefix = "%(ids_file)s", "%(prefix)s"
local ids, thread_seed = {}, 0
function setup(thread) thread_seed = thread_seed + 1; thread:set("seed", thread_seed) end
function init(args)
  for line in io.lines(ids_file) do ids[#ids + 1] = line end
  math.randomseed(%(seed)d * 7919 + (seed or 0))
end
function request() return wrk.format("GET", prefix .. ids[math.random(1, #ids)]) end
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


def write_ids(path: str, ids) -> str:
    """The user ids wrk picks from, URL-quoted, one a line; returns `path`."""
    with open(path, "w") as f:
        f.writelines(urllib.parse.quote(str(u), safe="") + "\n" for u in ids)
    return path


def run_wrk(url_prefix: str, ids_file: str, seconds: int, connections: int, work: str,
            pid: int | None = None, seed: int = 0) -> dict:
    """One wrk run over random user ids of `ids_file` (write_ids) appended to `url_prefix`;
    returns rps, p50/p99, the latency percentiles and, given the server's pid, the server CPU
    time per request (less sensitive than rps to other load on the machine)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found on PATH: apt-get install wrk")
    host, _, path = url_prefix.partition("//")[2].partition("/")
    script = os.path.join(work, "users.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % {"ids_file": ids_file, "prefix": "/" + path, "seed": seed,
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


def settled_round(url_prefix: str, ids_file: str, args, work: str, pid: int, seed: int,
                  settle_s: float, label: str, clear=None) -> tuple[dict, int, int]:
    """One measured wrk round of `args.duration` s with `args.connections` connections, after
    `settle_s` of idle (a worker still writing the last round's impressions would let the other
    accept every connection), run again up to `args.retries` times while the connections land
    unevenly on the workers (`balanced`); `clear()` runs after each try (e.g. deleting the
    impressions nothing drains). Returns (the last try, the reruns, the requests of every try).
    """
    requests = 0
    for attempt in range(args.retries + 1):
        time.sleep(settle_s)
        got = run_wrk(url_prefix, ids_file, args.duration, args.connections, work, pid, seed)
        requests += got["requests"]
        if clear is not None:
            clear()
        log.info("%s: %s", label, {k: v for k, v in got.items() if k != "percentiles"})
        if balanced(got["worker_cpu_shares"]) or attempt == args.retries:
            break
        log.info("connections landed unevenly on the workers (CPU shares %s): run again",
                 got["worker_cpu_shares"])
    return got, attempt, requests


def open_loop(base: str, users: list[str], rate: float, seconds: float, k: int = 10,
              clients: int = 16, seed: int = 0, features: list[dict] | None = None) -> dict:
    """Sends /recommend at a fixed rate whatever the answers' latency (open loop).

    Latency is counted from each request's scheduled send time, so a slow answer also
    delays, and is charged to, the requests queued behind it. Without `features` each request
    is a GET; with them, a POST whose JSON body carries a random row of `features` as the
    user's features (what a client sends for a user the nightly does not know).
    """
    host, port = base.removeprefix("http://").split(":")
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    jobs: queue.Queue = queue.Queue()
    results: list = [None] * n

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while (job := jobs.get()) is not None:
            i, scheduled, user, body = job
            try:
                if body is None:
                    conn.request("GET", f"/recommend?k={k}&user_id={urllib.parse.quote(user)}")
                else:
                    conn.request("POST", "/recommend", body,
                                 {"Content-Type": "application/json"})
                resp = conn.getresponse()
                answer = json.loads(resp.read())
                results[i] = (time.perf_counter() - scheduled, resp.status, answer.get("source"))
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
        user = users[rng.integers(len(users))]
        body = None if features is None else json.dumps(
            {"user_id": user, "k": k, "features": features[rng.integers(len(features))]})
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        jobs.put((i, scheduled, user, body))
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
    """RSS of a server and its worker processes, and which of HEAVY any of them mapped."""
    pids, rss, heavy = _server_pids(pid), 0, set()
    for p in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{p}/status") as f:
                rss += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            with open(f"/proc/{p}/maps") as f:
                maps = f.read()
            heavy.update(m for m in HEAVY if f"/{m}/" in maps or f"/lib{m}" in maps)
    return {"processes": len(pids), "rss_mb": round(rss / 1024, 1),
            "heavy_modules_mapped": sorted(heavy), "tensorflow_loaded": "tensorflow" in heavy}
