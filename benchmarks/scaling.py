"""How the nightly grows with users, items and events: a measured sweep, power-law fits, a plot.

    nice -n 19 python -m benchmarks.scaling --json scaling.json --plot docs/scaling.png

From a base size (`--users 2000 --items 1000 --events 20000`) each of users, items and events
is multiplied by `--factor` (3) twice while the other two stay at the base: 7 runs of the
whole nightly (`recsys nightly`'s defaults, the served model) on synthetic data
(models/synthetic.py), each in a process of its own with its own redis-server. The runner is
chosen explicitly: `--runner=FnApiRunner --direct_running_mode=multi_processing` with one
worker per core, the runner Beam's DirectRunner falls back to when it cannot fetch Prism, so
a machine with internet runs what this one ran. Per run: wall seconds per stage (the nightly
summary's `seconds`) and CPU seconds per stage (driver and workers; the fits use these, as the
wall seconds on shared cores follow the neighbours' load), the driver's peak RSS (training
runs there), the workers' peak RSS and the Redis bytes the run added (INFO used_memory).

Fits, per figure and axis (numpy.polyfit): the exponent a of log y = a log x + b (growth over
the measured range, flattened by fixed costs at these sizes) and the straight line y = k x + c
(k: the marginal cost of a user, item or event). The extrapolation to `--target-users` (100M)
adds the marginal costs, with events growing with users at the base's events per user and
items at `--target-items`; `--refit JSON` redoes fits, extrapolation and plot from a saved run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.output import emit

log = logging.getLogger("benchmarks.scaling")
AXES = ("users", "items", "events")
RUNNER = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
          f"--direct_num_workers={os.cpu_count() or 1}"]
MIN_SECONDS = 0.5  # a stage shorter than this at every size is not fitted


def _cpu_seconds() -> float:
    """CPU seconds of this process and all its descendants, living (the runner's workers, the
    redis-server) or finished: the sum over the living tree of each one's own and reaped
    children's user + system time (Linux /proc)."""
    parent, times = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        parent[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier and p not in tree]
        tree.update(children)
        frontier = children
    return sum(times.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cpu_per_stage(into: dict[str, float]):
    """Also records each nightly stage's CPU seconds: on shared cores the wall seconds of the
    summary move with the neighbours' load, the CPU seconds much less."""
    from batch import nightly

    wall = nightly.Stopwatch.__call__

    @contextlib.contextmanager
    def timed(self, stage):
        started = _cpu_seconds()
        with wall(self, stage):
            yield
        into[stage] = round(_cpu_seconds() - started, 3)

    nightly.Stopwatch.__call__ = timed
    try:
        yield
    finally:
        nightly.Stopwatch.__call__ = wall


def one_run(users: int, items: int, events: int, extra: list[str]) -> dict:
    """The whole nightly once at one size (in this process); its figures."""
    import redis

    from batch.nightly import run
    from infra.redis_server import local_redis
    from models.synthetic import generate

    data = generate(users, items, seed=0, events_per_user=events / users).interactions
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="recsys-scaling-") as tmp, local_redis() as url:
        path = os.path.join(tmp, "interactions.parquet")
        data.to_parquet(path)
        client = redis.Redis.from_url(url)
        before = client.info("memory")["used_memory"]
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        with cpu_per_stage(cpu):
            summary = run([f"--input={path}", f"--store={tmp}/store", f"--redis_url={url}",
                           "--skip_gate", *RUNNER, *extra])
        total, cpu_total = time.perf_counter() - started, _cpu_seconds() - cpu_started
        redis_bytes = client.info("memory")["used_memory"] - before
        keys = client.dbsize()
    return {"users": users, "items": items, "events": len(data),
            "users_published": summary["users_published"], "seconds": summary["seconds"],
            "cpu_seconds": cpu, "total_seconds": round(total, 2),
            "total_cpu_seconds": round(cpu_total, 2),
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "redis_bytes": int(redis_bytes), "redis_keys": int(keys),
            "redis_bytes_per_user": round(redis_bytes / max(1, summary["users_published"]), 1)}


def sizes(base: dict, factor: int, steps: int) -> list[dict]:
    """The sweep: the base, then each axis times factor**1..steps-1 with the others at base."""
    runs = [dict(base, axis="base")]
    for axis in AXES:
        for n in range(1, steps):
            runs.append(dict(base, **{axis: base[axis] * factor ** n}, axis=axis))
    return runs


def metrics(run: dict) -> dict[str, float]:
    """The figures fitted: CPU seconds per stage and in total (`seconds.*`: what the work
    costs, steadier than wall seconds on shared cores), peak RSS, Redis bytes."""
    return {**{f"seconds.{k}": v for k, v in run["cpu_seconds"].items()},
            "seconds.total": run["total_cpu_seconds"],
            "driver_peak_rss_mb": run["driver_peak_rss_mb"],
            "redis_bytes": run["redis_bytes"]}


def _axis_points(runs: list[dict], axis: str) -> list[dict]:
    return sorted((r for r in runs if r["axis"] in ("base", axis)), key=lambda r: r[axis])


def fit(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """Per axis and figure, over the sizes of that axis (a stage under MIN_SECONDS at every
    size is left out):
    - `exponent`: a of log y = a log x + b (numpy.polyfit), the growth over the measured range;
      fixed costs (TensorFlow's import, Beam's start) flatten it at small sizes;
    - `per_unit`, `constant`: k and c of y = k x + c, the marginal cost of one more user, item
      or event over a fixed part, which the extrapolation uses."""
    out: dict[str, dict[str, dict]] = {}
    for axis in AXES:
        points = _axis_points(runs, axis)
        x = np.array([r[axis] for r in points], dtype=float)
        out[axis] = {}
        for name in metrics(points[0]):
            y = np.array([metrics(r).get(name, 0.0) for r in points], dtype=float)
            if name.startswith("seconds.") and y.max() < MIN_SECONDS:
                continue
            a, b = np.polyfit(np.log(x), np.log(np.maximum(y, 1e-3)), 1)
            k, c = np.polyfit(x, y, 1)
            out[axis][name] = {"exponent": round(float(a), 3), "intercept": round(float(b), 3),
                               "per_unit": float(f"{k:.4g}"), "constant": float(f"{c:.4g}")}
    return out


def extrapolate(runs: list[dict], fits: dict, target_users: int, target_items: int,
                window_hours: float, machine_gb: float, machine_cores: int) -> dict:
    """Each figure at the target from the base run plus the marginal costs (straight lines,
    added over the axes; a negative slope, noise around a flat line, counts as 0). Along the
    path where events grow with users (items at the base): the users at which a stage's CPU
    seconds exceed `window_hours` on `machine_cores` cores, and the driver's memory
    `machine_gb`."""
    base = next(r for r in runs if r["axis"] == "base")
    per_user = base["events"] / base["users"]
    target = {"users": target_users, "items": target_items,
              "events": int(target_users * per_user)}
    out, window = {}, {}

    def slope(axis, name):
        return max(0.0, fits[axis][name]["per_unit"])

    for name, y0 in metrics(base).items():
        if name not in fits["users"]:
            continue
        value = y0 + sum(slope(a, name) * (target[a] - base[a]) for a in AXES)
        along = slope("users", name) + per_user * slope("events", name)  # per added user
        out[name] = {"value": float(f"{value:.4g}"), "per_user_along_path": float(f"{along:.4g}")}
        if name.startswith("seconds."):
            out[name]["cpu_hours"] = round(value / 3600, 1)
            if along > 0:
                users = base["users"] + (window_hours * 3600 * machine_cores - y0) / along
                window[name] = float(f"{users:.3g}")
    rss = out["driver_peak_rss_mb"]["per_user_along_path"]
    driver_users = base["users"] + (machine_gb * 1024 - base["driver_peak_rss_mb"]) / rss \
        if rss > 0 else None
    redis_per_user = fits["users"]["redis_bytes"]["per_unit"]
    return {"target": target, "figures": out,
            "users_when_stage_exceeds_window": window, "window_hours": window_hours,
            "machine_cores": machine_cores,
            "users_when_driver_exceeds_machine": (float(f"{driver_users:.3g}")
                                                  if driver_users else None),
            "machine_gb": machine_gb,
            "redis_bytes_per_user_marginal": round(redis_per_user, 1),
            "redis_gb_at_target": round(redis_per_user * target_users / 2 ** 30, 1)}


def plot(runs: list[dict], fits: dict, path: str) -> None:
    """Log-log curves per axis: stage seconds (top), peak RSS and Redis MB (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 3, figsize=(14, 8))
    for col, axis in enumerate(AXES):
        points = _axis_points(runs, axis)
        x = np.array([r[axis] for r in points], dtype=float)
        rows = ([n for n in fits[axis] if n.startswith("seconds.")],
                ["driver_peak_rss_mb", "redis_bytes"])
        for row, names in enumerate(rows):
            ax = grid[row][col]
            for name in names:
                y = np.array([metrics(r)[name] for r in points], dtype=float)
                if name == "redis_bytes":
                    y = y / 2 ** 20
                a = fits[axis][name]["exponent"]
                label = name.removeprefix("seconds.").replace("redis_bytes", "redis_mb")
                ax.plot(x, np.maximum(y, 1e-3), "o-", label=f"{label} (x^{a:.2f})")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel("CPU seconds" if row == 0 else "MB")
            ax.legend(fontsize=7)
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Nightly growth per axis (others at base), log-log; exponent of the fit")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _child(size: dict, extra: list[str], timeout: float) -> dict:
    """One run in a fresh process (so peak RSS is its own), niced like its parent."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--one",
               f"{size['users']},{size['items']},{size['events']}", "--json", out.name, *extra]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
        with open(out.name) as f:
            return {**json.load(f), "axis": size["axis"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000, help="base users")
    parser.add_argument("--items", type=int, default=1000, help="base items")
    parser.add_argument("--events", type=int, default=20_000, help="base events")
    parser.add_argument("--factor", type=int, default=3, help="size step per axis")
    parser.add_argument("--steps", type=int, default=3, help="sizes per axis (>= 2)")
    parser.add_argument("--target-users", type=int, default=100_000_000)
    parser.add_argument("--target-items", type=int, default=1_000_000)
    parser.add_argument("--window-hours", type=float, default=4.0,
                        help="nightly window a stage must fit in on one machine")
    parser.add_argument("--machine-gb", type=float, default=64.0,
                        help="memory of the one machine the driver (training) runs on")
    parser.add_argument("--machine-cores", type=int, default=32,
                        help="cores of that machine (the window holds window x cores CPU s)")
    parser.add_argument("--refit", metavar="JSON",
                        help="fit, extrapolate and plot the runs of an earlier --json again")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--plot", help="write the curves to this PNG")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # USERS,ITEMS,EVENTS: one run only
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.one:
        users, items, events = map(int, args.one.split(","))
        emit(one_run(users, items, events, extra), args.json)
        return 0
    if args.steps < 2 or args.factor < 2:
        print("Error: --steps and --factor must be >= 2 (a fit needs two sizes)")  # noqa: T201
        return 1
    base = {"users": args.users, "items": args.items, "events": args.events}
    runs, started = [], time.perf_counter()
    if args.refit:
        with open(args.refit) as f:
            earlier = json.load(f)
        runs, started = earlier["runs"], started - earlier["sweep_seconds"]
    for size in [] if args.refit else sizes(base, args.factor, args.steps):
        runs.append(_child(size, extra, args.timeout))
        log.info("%s: %.1f s total, CPU s %s", size, runs[-1]["total_seconds"],
                 runs[-1]["cpu_seconds"])
    fits = fit(runs)
    result = {"runner": RUNNER, "runs": runs, "fits": fits,
              "extrapolated": extrapolate(runs, fits, args.target_users, args.target_items,
                                          args.window_hours, args.machine_gb,
                                          args.machine_cores),
              "sweep_seconds": round(time.perf_counter() - started, 1), "cpus": os.cpu_count()}
    if args.plot:
        plot(runs, fits, args.plot)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
