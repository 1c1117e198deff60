"""The monitored system of benchmarks/monitoring.py, started for real: a redis-server, a
Pushgateway, two nightly runs pushing to it, `recsys serve` with two gunicorn workers and a
Prometheus scraping both (`monitored_system`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from infra.redis_server import free_port, local_redis

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "infra" / "monitoring" / "recsys.rules.yml"
SCRAPE_SECONDS = 1.0


@dataclass
class System:
    """The running system: its addresses and the data it serves."""

    url: str  # recsys serve
    prometheus: str
    pushgateway: str
    redis_url: str
    serve: subprocess.Popen
    users: list[str]
    items: list[str]
    summaries: list[dict]


@dataclass
class Tally:
    """What the clients sent and got, counted on their side."""

    requests: Counter = field(default_factory=Counter)  # path -> answers received
    sources: Counter = field(default_factory=Counter)  # /recommend 200 answers by source
    events: Counter = field(default_factory=Counter)  # by result, as recsys_events_total
    lock: threading.Lock = field(default_factory=threading.Lock)


def binary(*names: str) -> str:
    """The path of the first of `names` on PATH.

    Raises:
        RuntimeError: none is installed (the message says how to install it).
    """
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    raise RuntimeError(f"{names[0]} not found: apt-get install {names[0]}")


def call(tally: Tally, path: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    """One request; every answer received (whatever its status) is counted under `path`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    with tally.lock:
        tally.requests[path] += 1
    try:
        return status, json.loads(text)
    except ValueError:
        return status, {}


def _wait_ready(url: str, process: subprocess.Popen, what: str, log_file: Path,
                tally: Tally | None = None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if tally is None:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            elif call(tally, "health", url)[0] == 200:
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log_file.read_text()[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def _process(args: list[str], log_file: Path, env: dict | None = None
             ) -> Iterator[subprocess.Popen]:
    with open(log_file, "w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def nightly_input(folder: Path) -> tuple[Path, list[str], list[str]]:
    """Tiny synthetic interactions (120 users, 60 items) plus one row of an unknown event
    type (a dead letter); returns (file, user ids, item ids)."""
    from models.synthetic import generate

    data = generate(n_users=120, n_items=60, seed=3, events_per_user=15).interactions
    bad = data.iloc[:1].assign(event_type="teleport")
    path = folder / "interactions.parquet"
    pd.concat([data, bad], ignore_index=True).to_parquet(path)
    return (path, sorted({str(u) for u in data["user_id"]}),
            sorted({str(i) for i in data["item_id"]}))


def run_nightlies(path: Path, store: Path, redis_url: str, pushgateway: str) -> list[dict]:
    """Two real nightly runs that push their metrics: one to everyone, then a 50 % canary."""
    from batch.nightly import run

    argv = [f"--input={path}", f"--store={store}", f"--redis_url={redis_url}", "--model=mf",
            "--epochs=2", "--dim=8", "--k=20", "--shard_size=60", "--gate_min_cases=1",
            "--force_publish", "--direct_running_mode=in_memory",
            f"--pushgateway={pushgateway}"]
    return [run(argv), run([*argv, "--canary=50"])]


def _prometheus_config(folder: Path, serve: str, pushgateway: str) -> Path:
    path = folder / "prometheus.yml"
    path.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": f"{int(SCRAPE_SECONDS * 1000)}ms",
                   "evaluation_interval": f"{int(SCRAPE_SECONDS * 1000)}ms"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "recsys", "static_configs": [{"targets": [serve]}]},
            {"job_name": "pushgateway", "honor_labels": True,
             "static_configs": [{"targets": [pushgateway]}]}]}))
    return path


@contextlib.contextmanager
def monitored_system(folder: Path, tally: Tally) -> Iterator[System]:
    """Everything of the module docstring up and published; stopped on exit."""
    prometheus_bin = binary("prometheus")
    pushgateway_bin = binary("prometheus-pushgateway", "pushgateway")
    pushgateway, serve_port, prometheus_port = (f"127.0.0.1:{free_port()}", free_port(),
                                                free_port())
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(local_redis())
        gateway = stack.enter_context(_process(
            [pushgateway_bin, f"--web.listen-address={pushgateway}"], folder / "pushgateway.log"))
        _wait_ready(f"http://{pushgateway}/-/ready", gateway, "pushgateway",
                    folder / "pushgateway.log")
        path, users, items = nightly_input(folder)
        summaries = run_nightlies(path, folder / "store", redis_url, pushgateway)
        env = {**os.environ, "REDIS_URL": redis_url, "RECSYS_STORE": str(folder / "store"),
               "RECSYS_NAMESPACE": "recsys", "WORKERS": "2", "THREADS": "4",
               "RECSYS_REQUEST_LOG": "0"}
        for key in ("RECSYS_API_KEY", "RECSYS_RECOMMEND_KEY", "RECSYS_ADMIN_KEY"):
            env.pop(key, None)
        serve = stack.enter_context(_process(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(serve_port)],
            folder / "serve.log", env))
        url = f"http://127.0.0.1:{serve_port}"
        _wait_ready(f"{url}/health", serve, "recsys serve", folder / "serve.log", tally)
        config = _prometheus_config(folder, f"127.0.0.1:{serve_port}", pushgateway)
        prometheus = stack.enter_context(_process(
            [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"], folder / "prometheus.log"))
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        _wait_ready(f"{prometheus_url}/-/ready", prometheus, "prometheus",
                    folder / "prometheus.log")
        yield System(url, prometheus_url, pushgateway, redis_url, serve, users, items,
                     summaries)
