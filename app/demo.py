"""`recsys demo`: the whole loop on generated data, then a clean shutdown."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra.redis_server import free_port, local_redis
from models.schema import Dataset

log = logging.getLogger(__name__)


def write_dataset(dataset: Dataset, out: str) -> dict:
    """Writes interactions/users/items.parquet under `out`; returns the paths."""
    Path(out).mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("interactions", "users", "items"):
        frame = getattr(dataset, name)
        if frame is not None:
            paths[name] = os.path.join(out, f"{name}.parquet")
            frame.to_parquet(paths[name], index=False)
    return paths


def _get(url: str, timeout: float = 30.0) -> tuple[dict, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = json.loads(resp.read())
    return body, 1000 * (time.perf_counter() - started)


def _post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(payload).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


@contextlib.contextmanager
def _server(env: dict, port: int):
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                            env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{base}/health?warm=1", timeout=60)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the serving function did not start") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def offline_ndcg(dataset: Dataset) -> dict:
    """NDCG@10 (all cases) of the served model, MF and popularity under the temporal-holdout
    protocol."""
    from evaluation.run import run_evaluation

    report = run_evaluation(dataset, ["served", "mf", "popularity"], None, None)
    return {name: round(m["all"]["ndcg@10"], 4) for name, m in report["models"].items()}


def run_demo(workdir: str, n_users: int, n_items: int, seed: int, redis_url: str | None,
             port: int) -> dict:
    from batch.nightly import run
    from models.synthetic import generate

    dataset = generate(n_users, n_items, seed)
    paths = write_dataset(dataset, os.path.join(workdir, "data"))
    store = os.path.abspath(os.path.join(workdir, "artifacts"))
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(local_redis())
        summary = run([f"--input={paths['interactions']}", f"--store={store}",
                       f"--redis_url={redis_url}", f"--users={paths['users']}",
                       f"--items={paths['items']}"])
        log.info("nightly: %s", json.dumps(summary))
        base = stack.enter_context(_server(
            {"RECSYS_STORE": store, "REDIS_URL": redis_url}, port or free_port()))
        # A warm user: one who has events in the data the nightly job trained on.
        warm_user = dataset.interactions["user_id"].iloc[0]
        warm, warm_ms = _get(f"{base}/recommend?user_id={warm_user}&k=10")
        # A fresh user: first seen now, known only by five events posted to /events.
        taste = dataset.interactions[dataset.interactions.user_id == warm_user]
        fresh_user = f"fresh-{os.urandom(3).hex()}"
        _post(f"{base}/events", {"events": [
            {"user_id": fresh_user, "item_id": item, "event_type": "click"}
            for item in taste["item_id"].drop_duplicates().iloc[:5]]})
        fresh, fresh_ms = _get(f"{base}/recommend?user_id={fresh_user}&k=10")
    result = {
        "version": summary["version"],
        "nightly_seconds": summary["seconds"],
        "warm": {"user_id": warm_user, "source": warm["source"],
                 "items": [i["item_id"] for i in warm["items"]], "latency_ms": round(warm_ms, 2)},
        "fresh": {"user_id": fresh_user, "source": fresh["source"],
                  "items": [i["item_id"] for i in fresh["items"]],
                  "latency_ms": round(fresh_ms, 2)},
        "ndcg@10": offline_ndcg(dataset),
    }
    return result
