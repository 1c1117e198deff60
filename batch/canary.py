"""`recsys nightly --canary PERCENT`: publish the new version to a share of users only.

The run publishes the version as every run does (lists written and counted, NS:versions, out
of NS:started: ServedLists.flip's checks) but leaves NS:current where it was, then creates and
starts the experiment `canary-<version>`: arm `control` pinned to the version served so far at
100 − PERCENT %, arm `canary` on the new version at PERCENT % (allocations in basis points,
salt = the experiment's name). `recsys canary check` (app/canary_cli.py) later promotes it
(NS:current flips to it) or rolls it back (the experiment stops, everyone is on the control,
whose lists ServedLists.expire_old keeps while the experiment runs).

One experiment runs at a time, so a canary run is refused before any work while an A/B test
(any experiment not named `canary-*`) runs (`refuse_while_running`). A canary still undecided
from an earlier night does not block the night: once this run's version is published, the old
canary is stopped (its decision recorded as `superseded`, its users back on the control) and
the new one starts, so a slow check never leaves everyone on ever older lists. With nothing
served yet there is nothing to compare against: the run publishes to everyone and says so.
"""

from __future__ import annotations

import logging

from infra.redis.experiments import Experiments
from infra.redis.lists import ServedLists
from models.experiments.assignment import BASIS_POINTS, experiment

log = logging.getLogger("batch.nightly")

CANARY_ARM, CONTROL_ARM, PREFIX = "canary", "control", "canary-"


def experiments(lists: ServedLists) -> Experiments:
    """The experiments store of the lists' namespace, on the same client."""
    return Experiments(lists.r, lists.keys.namespace)


def refuse_while_running(percent: int, lists: ServedLists) -> None:
    """Raises ValueError if `--canary` is asked while an experiment runs (one at a time);
    without --canary, warns that a running canary keeps its arms' versions (the run moves
    `current`, so the next `recsys canary check` stops that canary instead of promoting it)."""
    running = sorted(experiments(lists).running())
    if not percent:
        for name in (n for n in running if n.startswith(PREFIX)):
            log.warning("experiment %s is running: its arms keep serving their versions, not "
                        "this run's, until `recsys canary check` stops it (current will have "
                        "moved, so it is stopped, not promoted)", name)
        return
    tests = [n for n in running if not n.startswith(PREFIX)]
    if tests:
        raise ValueError(f"--canary {percent}: experiment {tests[0]!r} is running and one "
                         "experiment runs at a time; nothing was trained or published (wait "
                         "for it to end, or `recsys experiment stop "
                         f"{tests[0]}`)")
    for name in running:
        log.info("canary %s is still undecided: once this run publishes, its canary "
                 "supersedes it", name)


def plan(percent: int, served: str | None, version: str) -> dict | None:
    """What the run will do with `--canary percent`: the summary's `canary` entry.

    Returns:
        None without --canary; {"percent", "experiment": None, "skipped"} when nothing is
        served (first run: published to everyone); else {"percent", "experiment", "control",
        "canary"} (the versions of the two arms).
    """
    if not percent:
        return None
    if served is None:
        log.info("--canary %d: no version is served yet, so there is nothing to canary "
                 "against; publishing %s to everyone", percent, version)
        return {"percent": percent, "experiment": None,
                "skipped": "no version was served yet: published to everyone"}
    return {"percent": percent, "experiment": PREFIX + version, "control": served,
            "canary": version}


def start(lists: ServedLists, canary: dict) -> dict:
    """Creates and starts the canary experiment of `plan`; the version is published already.

    Returns:
        The running experiment's record.

    Raises:
        RuntimeError: the experiment could not start (e.g. another one started meanwhile);
            the version stays published but serves nobody, and the message says how to go on.
    """
    share = canary["percent"] * BASIS_POINTS // 100
    exp = experiment(canary["experiment"], [
        {"name": CONTROL_ARM, "version": canary["control"], "allocation": BASIS_POINTS - share},
        {"name": CANARY_ARM, "version": canary["canary"], "allocation": share}],
        canary["experiment"])
    store = experiments(lists)
    try:
        store.create(exp)
        _supersede(store, canary["canary"])
        record = store.start(exp.name)
    except ValueError as e:
        raise RuntimeError(f"version {canary['canary']} is published but serves nobody: the "
                           f"canary experiment did not start ({e}); serve it to everyone with "
                           f"`recsys rollback {canary['canary']}`, or leave "
                           f"{canary['control']} served") from e
    log.info("canary: version %s serves %d%% of users (experiment %s); the others keep %s "
             "until `recsys canary check` decides", canary["canary"], canary["percent"],
             exp.name, canary["control"])
    return record


def _supersede(store: Experiments, version: str) -> None:
    """Stops every running canary-* experiment (an earlier night's, still undecided), recording
    why; its users go back to its control, whose lists were kept while it ran."""
    for name in sorted(n for n in store.running() if n.startswith(PREFIX)):
        try:
            store.record_decision(name, {"action": "superseded", "reasons": [
                f"the next night's canary ({version}) replaces it before a decision"]})
            store.stop(name)
        except ValueError as e:  # stopped meanwhile (a check decided): nothing to do
            log.info("canary %s: %s", name, e)
            continue
        log.warning("canary %s was still undecided: stopped, superseded by %s's canary", name,
                    version)
