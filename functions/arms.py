"""Experiments' arms as served: which loaded version answers a user, and under which arm.

At most one experiment runs (infra/redis/experiments.py). A function instance reads it with
the version pointer, in the same round trip and no more often (ServedLists.serving_state,
every RECSYS_POINTER_TTL_S: functions/serving.py), and turns it into a `Plan`: the current
version and, per arm, the loaded version that serves it (`current` and the pointer's own
version are the current one; another published version is loaded once beside it:
BundleSwap.other). A request then costs one hash of (salt, user id) (Experiment.arm_for) and
no round trip more: the arm's version goes through the same chain as the current one, with its
own lists, on-demand scorer and popular items (functions/chain.py).

An arm whose version cannot be served, its bundle unreadable or the version expired (gone from
NS:versions), is served the current version: logged once, and the answer and its impression
name the version actually served, with the arm the user is assigned to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from functions.filters import map_filters
from functions.loaded import Loaded
from functions.swap import BundleSwap
from models.experiments.assignment import CURRENT, Experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where one request goes: the version that serves it and its experiment and arm ("" for
    both outside an experiment)."""

    loaded: Loaded
    experiment: str = ""
    arm: str = ""


class Plan:
    """The current version and the running experiment's arms, as loaded: what requests route
    through until the next pointer read (immutable; a new read makes a new one).

    Args:
        current: the version the pointer names.
        experiment: the running experiment, or None.
        arms: arm name -> the Loaded serving it (every arm of `experiment`).
    """

    def __init__(self, current: Loaded, experiment: Experiment | None = None,
                 arms: dict[str, Loaded] | None = None):
        self.current, self.experiment = current, experiment
        self._outside = Route(current)
        self._routes = {} if experiment is None else {
            name: Route(loaded, experiment.name, name) for name, loaded in arms.items()}

    def arms(self) -> dict[str, str]:
        """Arm name -> the version serving it ({} outside an experiment)."""
        return {name: r.loaded.version for name, r in self._routes.items()}

    def route(self, user_id: str) -> Route:
        """The user's route: their arm's version inside the experiment, else the current one.

        A user id that is not an id by the assignment's rules (the request models already
        refuse those: functions/request_models.py) is served outside the experiment.
        """
        exp = self.experiment
        if exp is None:
            return self._outside
        try:
            return self._routes[exp.arm_for(user_id).name]
        except ValueError:
            return self._outside


def parse_running(running: dict[str, bytes]) -> Experiment | None:
    """The running experiment from NS:exp:running (name -> JSON definition), or None.

    A definition that does not parse is logged and ignored (everyone gets the current version);
    of several (the store starts one at a time), the first by name runs here.
    """
    for name in sorted(running):
        try:
            exp = Experiment.from_dict(json.loads(running[name]))
        except (ValueError, TypeError) as e:
            log.error("running experiment %r has a definition that does not parse (%s); "
                      "ignored", name[:80], e)
            continue
        if len(running) > 1:
            log.warning("%d experiments run at once (%s); serving %r only", len(running),
                        sorted(running), exp.name)
        return exp
    return None


class ArmPlanner:
    """Makes the Plan of each pointer read, loading arms' versions through `swap`."""

    def __init__(self, swap: BundleSwap):
        self.swap = swap
        self._warned: set[tuple[str, str]] = set()  # (experiment, version) logged as expired

    def plan(self, current: Loaded, running: dict[str, bytes], published: set[str],
             wait: bool) -> Plan:
        """The plan for `current` and the running experiment.

        Args:
            running: NS:exp:running as read (name -> JSON definition).
            published: the published versions (NS:versions).
            wait: wait for another thread loading an arm's version (False: raises
                functions.swap.Busy, and the caller keeps its previous plan).
        """
        exp = parse_running(running)
        if exp is None:
            self.swap.keep(set())
            return Plan(current)
        arms = {}
        for arm in exp.arms:
            arms[arm.name] = current
            if arm.version in (CURRENT, current.version):
                continue
            if arm.version not in published:
                if (exp.name, arm.version) not in self._warned:
                    self._warned.add((exp.name, arm.version))
                    log.error("experiment %r: arm %r serves version %s, which is not published "
                              "(expired?); its users get the current version %s", exp.name,
                              arm.name, arm.version, current.version)
                continue
            loaded = self.swap.other(arm.version, wait)
            if loaded is not None:
                if loaded.filters.rev != current.filters.rev:
                    loaded.filters = map_filters(loaded.item_index, current.filters)
                arms[arm.name] = loaded
        self.swap.keep({a.version for a in exp.arms})
        return Plan(current, exp, arms)
