"""Experiments' definitions and states: draft → running → stopped, in two hashes.

`recsys experiment create|start|stop|list` writes them; the functions will read `running()`
(one HGETALL of one small hash). Keys (keys.py): NS:exp:defs holds every experiment, name ->
JSON record (definition, state, timestamps); NS:exp:running holds the running one, name ->
JSON definition: one experiment runs at a time, so every request follows at most one and no
user is in two tests at once. Names are hash fields, never part of a key, so no name can
reach a key or a pattern; they follow the definition's rules (models/experiments/assignment.py).

An arm's version must be published (NS:versions) when the
experiment is created and again when it starts; `current` always is. `promote` ends a running
experiment by making one arm's version the served one (NS:current) in the same transaction,
and `record_decision` keeps the decisions taken on an experiment (a canary check's, with their
figures) on its record. ServedLists.expire_old never expires a running experiment's versions.
"""

from __future__ import annotations

import json
import time

import redis

from infra.redis.keys import Namespaced
from models.experiments.assignment import CURRENT, Experiment

DRAFT, RUNNING, STOPPED = "draft", "running", "stopped"
MAX_DECISIONS = 500  # kept per experiment, newest last: three weeks of hourly checks
_NEXT = {"start": (DRAFT, RUNNING, "started_at"), "stop": (RUNNING, STOPPED, "stopped_at")}


class Experiments(Namespaced):
    """The experiments of one namespace.

    Contract: every change is one transaction (WATCH/MULTI), so two concurrent `start`s of one
    experiment make one run; a refused change writes nothing and raises ValueError naming
    the experiment and why.
    """

    def create(self, exp: Experiment) -> dict:
        """Records `exp` (a checked Experiment) as a draft.

        Raises:
            ValueError: the name is taken (by an experiment in any state) or an arm's version
                is not published.
        """
        if not isinstance(exp, Experiment):
            raise TypeError("create takes an Experiment (models.experiments.assignment)")
        self._check_published(exp)
        record = {"experiment": exp.to_dict(), "state": DRAFT, "created_at": _now(),
                  "started_at": None, "stopped_at": None}
        if not self.r.hsetnx(self.keys.experiments, exp.name, json.dumps(record)):
            raise ValueError(f"experiment {exp.name!r} already exists; choose another name "
                             "(see `recsys experiment list`)")
        return record

    def start(self, name: str) -> dict:
        """draft → running; its arms' versions must still be published."""
        return self._move(name, "start")

    def stop(self, name: str) -> dict:
        """running → stopped (for good: a stopped experiment does not restart)."""
        return self._move(name, "stop")

    def promote(self, name: str, arm: str, *, expected_current: str | None = None) -> dict:
        """Stops the running experiment `name` with `arm` as the winner: NS:current becomes the
        arm's version in the same transaction (an arm serving `current` flips nothing).

        Every user moves from their arm to the promoted version at once; no request can see the
        experiment stopped while `current` still names the old version. `expected_current`
        (a canary check's): refuse unless NS:current still names that version, checked in the
        same transaction.

        Returns:
            The stopped record, with `promoted_arm` and `promoted_version` (the version now
            current).

        Raises:
            ValueError: no such experiment, it is not running, it has no arm `arm`, the arm's
                version is no longer published, or `current` is not `expected_current`
                (nothing changes).
        """

        def change(pipe: redis.client.Pipeline) -> dict:
            record = self._record(pipe, name)
            if record["state"] != RUNNING:
                raise ValueError(f"experiment {name!r} is {record['state']}; only a running "
                                 "experiment can be promoted")
            exp = Experiment.from_dict(record["experiment"])
            arms = {a.name: a for a in exp.arms}
            if arm not in arms:
                raise ValueError(f"experiment {name!r} has no arm {str(arm)[:80]!r}; its arms: "
                                 f"{', '.join(arms)}")
            version = arms[arm].version
            current = pipe.get(self.keys.current)
            current = current.decode() if current is not None else None
            if expected_current is not None and current != expected_current:
                raise ValueError(f"current is {current}, not {expected_current}: it moved while "
                                 f"experiment {name!r} was being decided; nothing was promoted")
            if version == CURRENT:
                version = current
            elif pipe.zscore(self.keys.versions, version) is None:
                raise ValueError(f"arm {arm!r} of experiment {name!r} serves version {version!r}, "
                                 "which is no longer published (see `recsys versions`); "
                                 "nothing was promoted")
            record.update(state=STOPPED, stopped_at=_now(), promoted_arm=arm,
                          promoted_version=version)
            pipe.multi()
            pipe.hset(self.keys.experiments, name, json.dumps(record))
            pipe.hdel(self.keys.experiments_running, name)
            if arms[arm].version != CURRENT:
                pipe.set(self.keys.current, version)
            return record

        return self.r.transaction(change, self.keys.experiments, self.keys.versions,
                                  self.keys.experiments_running, self.keys.current,
                                  value_from_callable=True)

    def record_decision(self, name: str, decision: dict) -> dict:
        """Appends `decision` (JSON-ready: action, reasons, figures, …) to the `decisions` of
        experiment `name`'s record, stamped with `at`; keeps the newest MAX_DECISIONS.

        Returns:
            The decision as recorded.

        Raises:
            ValueError: no such experiment.
            TypeError: `decision` is not a JSON-ready dict.
        """
        if not isinstance(decision, dict):
            raise TypeError("record_decision takes a dict (e.g. Decision.to_dict())")
        entry = {"at": _now(), **decision}
        json.dumps(entry)  # not JSON-ready: TypeError before anything is written

        def change(pipe: redis.client.Pipeline) -> dict:
            record = self._record(pipe, name)
            record["decisions"] = [*record.get("decisions", []), entry][-MAX_DECISIONS:]
            pipe.multi()
            pipe.hset(self.keys.experiments, name, json.dumps(record))
            return entry

        return self.r.transaction(change, self.keys.experiments, value_from_callable=True)

    def get(self, name: str) -> dict | None:
        """The record of `name` (experiment, state, created_at, started_at, stopped_at)."""
        raw = self.r.hget(self.keys.experiments, name)
        return None if raw is None else json.loads(raw)

    def list(self) -> list[dict]:
        """Every record, oldest first."""
        records = [json.loads(v) for v in self.r.hvals(self.keys.experiments)]
        return sorted(records, key=lambda r: (r["created_at"], r["experiment"]["name"]))

    def running(self) -> dict[str, Experiment]:
        """The running experiments, name -> Experiment: one HGETALL of NS:exp:running."""
        return {k.decode(): Experiment.from_dict(json.loads(v))
                for k, v in self.r.hgetall(self.keys.experiments_running).items()}

    def _move(self, name: str, action: str) -> dict:
        before, after, stamp = _NEXT[action]

        def change(pipe: redis.client.Pipeline) -> dict:
            record = self._record(pipe, name)
            if record["state"] != before:
                raise ValueError(f"experiment {name!r} is {record['state']}; only a {before} "
                                 f"experiment can {action} ({DRAFT} → {RUNNING} → {STOPPED})")
            exp = Experiment.from_dict(record["experiment"])
            if action == "start":
                self._check_published(exp, pipe)
                others = [k.decode() for k in pipe.hkeys(self.keys.experiments_running)]
                if others:
                    raise ValueError(f"experiment {others[0]!r} is running; one experiment "
                                     f"runs at a time (each user follows one), so stop it "
                                     f"before starting {name!r}")
            record.update(state=after, **{stamp: _now()})
            pipe.multi()
            pipe.hset(self.keys.experiments, name, json.dumps(record))
            if after == RUNNING:
                pipe.hset(self.keys.experiments_running, name, json.dumps(exp.to_dict()))
            else:
                pipe.hdel(self.keys.experiments_running, name)
            return record

        return self.r.transaction(change, self.keys.experiments, self.keys.versions,
                                  self.keys.experiments_running, value_from_callable=True)

    def _record(self, client, name: str) -> dict:
        raw = client.hget(self.keys.experiments, name)
        if raw is None:
            raise ValueError(f"no experiment named {str(name)[:80]!r}; see `recsys experiment "
                             "list`")
        return json.loads(raw)

    def _check_published(self, exp: Experiment, client=None) -> None:
        client = client or self.r
        published = {v.decode() for v in client.zrange(self.keys.versions, 0, -1)}
        for i, arm in enumerate(exp.arms):
            if arm.version != CURRENT and arm.version not in published:
                raise ValueError(f"arms[{i}].version {arm.version!r} (arm {arm.name!r}) is not "
                                 f"a published version; see `recsys versions`, or use "
                                 f"{CURRENT!r}")


def _now() -> str:
    """UTC now, to the second: 2026-11-30T08:30:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
