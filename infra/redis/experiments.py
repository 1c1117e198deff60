"""Experiments' definitions and states: draft → running → stopped, in two hashes.

`recsys experiment create|start|stop|list` writes them; the functions will read `running()`
(one HGETALL of one small hash). Keys (keys.py): NS:exp:defs holds every experiment, name ->
JSON record (definition, state, timestamps); NS:exp:running holds the running one, name ->
JSON definition: one experiment runs at a time, so every request follows at most one and no
user is in two tests at once. Names are hash fields, never part of a key, so no name can
reach a key or a pattern; they follow the definition's rules (models/experiments/assignment.py).

An arm's version must be published (NS:versions, read through ServedLists.versions) when the
experiment is created and again when it starts; `current` always is.
"""

from __future__ import annotations

import json
import time

import redis

from infra.redis.keys import Namespaced
from infra.redis.lists import ServedLists
from models.experiments.assignment import CURRENT, Experiment

DRAFT, RUNNING, STOPPED = "draft", "running", "stopped"
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
            raw = pipe.hget(self.keys.experiments, name)
            if raw is None:
                raise ValueError(f"no experiment named {str(name)[:80]!r}; see `recsys "
                                 "experiment list`")
            record = json.loads(raw)
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

    def _check_published(self, exp: Experiment, client=None) -> None:
        published = set(ServedLists(client or self.r, self.keys.namespace).versions())
        for i, arm in enumerate(exp.arms):
            if arm.version != CURRENT and arm.version not in published:
                raise ValueError(f"arms[{i}].version {arm.version!r} (arm {arm.name!r}) is not "
                                 f"a published version; see `recsys versions`, or use "
                                 f"{CURRENT!r}")


def _now() -> str:
    """UTC now, to the second: 2026-11-30T08:30:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
