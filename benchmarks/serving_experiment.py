"""The serving benchmark's experiment scenario (benchmarks/serving.py, `cached_experiment`): a
second version published beside the current one, experiments started and stopped between
rounds, and a check that the answers come from the versions a round names.
"""

from __future__ import annotations

import json
import os
import shutil
import time

VERSION, SECOND = "bench-0001", "bench-0002"
POINTER_TTL_S = 2.0  # the servers' RECSYS_POINTER_TTL_S (the default)


def publish_second(lists, folder: str, n_users: int, user_ids) -> None:
    """SECOND: VERSION's bundle copied under another name and its lists copied in Redis,
    published without moving `current` (as `recsys nightly --canary` publishes)."""
    from infra.redis.builds import BuildRecords

    bundles = os.path.join(folder, "bundles")
    shutil.copytree(os.path.join(bundles, VERSION), os.path.join(bundles, SECOND),
                    dirs_exist_ok=True)
    for lo in range(0, n_users, 10_000):
        lists.copy_lists(VERSION, SECOND, str(lo), [str(u) for u in user_ids[lo:lo + 10_000]])
    BuildRecords(lists.r, lists.keys.namespace).put_summary(
        SECOND, {"version": SECOND, "users_published": n_users, "benchmark": True})
    lists.flip(SECOND, n_users, move_current=False)


def set_experiment(lists, name: str | None, running: str | None) -> str | None:
    """Stops the experiment `running` (if any), starts `name` (if given: current vs SECOND at
    50/50), waits out the servers' pointer TTL; returns the one now running."""
    from infra.redis.experiments import Experiments
    from models.experiments.assignment import experiment

    store = Experiments(lists.r, lists.keys.namespace)
    if running is not None:
        store.stop(running)
    if name is not None:
        store.create(experiment(name, [
            {"name": "control", "version": "current", "allocation": 5000},
            {"name": "second", "version": SECOND, "allocation": 5000}], name))
        store.start(name)
    time.sleep(POINTER_TTL_S + 0.5)
    return name


def answered_by(base: str, users: list[str]) -> set[tuple]:
    """The (experiment, model_version) pairs of the answers to `users` (one request each)."""
    import urllib.request

    seen = set()
    for user in users:
        with urllib.request.urlopen(f"{base}/recommend?k=10&user_id={user}", timeout=10) as r:
            body = json.loads(r.read())
        seen.add((body["experiment"], body["model_version"]))
    return seen


def check_answers(base: str, users: list[str], running: str | None) -> None:
    """Raises unless the answers come from both arms' versions (`running`) or from the
    current version alone (None): a round measures what it names."""
    want = ({(running, VERSION), (running, SECOND)} if running is not None
            else {(None, VERSION)})
    seen = answered_by(base, users)
    if seen != want:
        raise RuntimeError(f"answers came from {sorted(seen, key=str)}, not "
                           f"{sorted(want, key=str)}")
