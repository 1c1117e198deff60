"""`recsys canary check`: promote, roll back or keep the running canary experiment.

    recsys canary check --store ./artifacts --redis-url redis://localhost:6379/0 [--min-users N]

`recsys nightly --canary PERCENT` (batch/canary.py) starts the experiment canary-<version>;
this command, run on a schedule (hourly in Terraform: terraform/modules/batch), drains the
impressions and events and builds its report (infra/experiment_data.py,
models/experiments/report.py), asks models/experiments/canary.decide (with NS:current, so a
canary whose control is no longer current is stopped, never promoted over a newer version),
then acts:

- promote: Experiments.promote — the experiment stops and NS:current becomes the canary's
  version in one transaction;
- rollback: Experiments.stop — the experiment stops and everyone is served NS:current again,
  which was not moved and kept its lists (ServedLists.expire_old keeps a running
  experiment's versions);
- wait: nothing changes; the next check looks again.

Every decision, with its reasons and figures, is logged, printed and recorded on the
experiment's record (`recsys experiment list --json` shows them). Exit status 0 for all three
outcomes and when no canary runs; 1 with one `Error:` line when the check itself fails (the
OneLineErrors group of app/cli.py).
"""

from __future__ import annotations

import calendar
import json
import logging
import time

import click

from models.experiments.canary import MIN_IMPRESSIONS, MIN_USERS, PROMOTE, ROLLBACK

log = logging.getLogger(__name__)

CONTEXT = {"show_default": True, "max_content_width": 100}


def check_canary(client, namespace: str, store, *, min_users: int = MIN_USERS,
                 min_impressions: int = MIN_IMPRESSIONS, now_ms: int | None = None) -> dict:
    """Decides on the running canary experiment and acts on the decision.

    Args:
        client: a redis.Redis of the namespace.
        store: the artifact store (infra.store) the logs are drained into.
        now_ms: the report's time (default: now).

    Returns:
        {"experiment": None, "running": [names]} when no canary runs; else the recorded
        decision: experiment, action, reasons, figures, current (the version served to
        everyone after the action), at.

    Raises:
        ValueError: the action was refused (e.g. the experiment stopped meanwhile); the
            decision is recorded with its `error`.
    """
    from batch.canary import CANARY_ARM, PREFIX
    from infra.experiment_data import load
    from infra.redis.experiments import Experiments
    from infra.redis.lists import ServedLists
    from models.experiments.canary import decide
    from models.experiments.report import experiment_report

    experiments = Experiments(client, namespace)
    running = experiments.running()
    canaries = sorted(name for name in running if name.startswith(PREFIX))
    if not canaries:
        return {"experiment": None, "running": sorted(running)}
    name = canaries[0]
    record = experiments.get(name)
    data = load(client, namespace, store, experiment=name)
    report = experiment_report(running[name], data.impressions, data.events,
                               started_ms=_epoch_ms(record.get("started_at")),
                               now_ms=int(time.time() * 1000) if now_ms is None else now_ms)
    lists = ServedLists(client, namespace)
    served = lists.current()
    decision = decide(report, canary_arm=CANARY_ARM, min_users=min_users,
                      min_impressions=min_impressions, current=served).to_dict()
    try:
        if decision["action"] == PROMOTE:
            decision["current"] = experiments.promote(name, CANARY_ARM,
                                                      expected_current=served)["promoted_version"]
        else:
            if decision["action"] == ROLLBACK:
                experiments.stop(name)
            decision["current"] = lists.current()
    except ValueError as error:
        experiments.record_decision(name, {**decision, "error": str(error)})
        raise
    entry = experiments.record_decision(name, decision)
    log.info("canary %s: %s (%s); served to everyone: %s; figures %s", name,
             decision["action"], "; ".join(decision["reasons"]), decision["current"],
             json.dumps(decision["figures"], default=str))
    return {"experiment": name, **entry}


def _epoch_ms(stamp: str | None) -> int | None:
    """Experiments' `2026-11-30T08:30:00Z` as epoch milliseconds."""
    if not stamp:
        return None
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) * 1000


def lines(result: dict) -> list[str]:
    """What `recsys canary check` prints for `check_canary`'s result."""
    if result["experiment"] is None:
        others = (f" (running: {', '.join(result['running'])}, not a canary)"
                  if result["running"] else "")
        return [f"no canary experiment is running{others}; nothing to check"]
    after = {"promote": f"promoted: {result['current']} is now served to everyone",
             "rollback": f"rolled back: everyone is served {result['current']} again",
             "wait": f"waiting: the canary keeps its share; {result['current']} stays current"}
    return [f"canary {result['experiment']}: {result['action']} — {after[result['action']]}",
            *[f"  - {reason}" for reason in result["reasons"]],
            "  figures: " + json.dumps(result["figures"], default=str)]


@click.group(context_settings=CONTEXT)
def canary() -> None:
    """Canary rollouts (`recsys nightly --canary PERCENT`): check, promote or roll back."""


@canary.command(context_settings=CONTEXT)
@click.option("--min-users", envvar="RECSYS_CANARY_MIN_USERS", show_envvar=True,
              default=MIN_USERS, type=click.IntRange(min=1),
              help="Users every arm needs before the canary may be promoted.")
@click.option("--min-impressions", envvar="RECSYS_CANARY_MIN_IMPRESSIONS", show_envvar=True,
              default=MIN_IMPRESSIONS, type=click.IntRange(min=1),
              help="Impressions of the canary before its guardrails (latency, errors, "
                   "fallbacks) can roll it back.")
@click.option("--json", "as_json", envvar="RECSYS_CANARY_JSON", show_envvar=True,
              is_flag=True, help="Print the recorded decision as JSON instead of lines.")
@click.option("--store", envvar="RECSYS_STORE", show_envvar=True, default="./artifacts",
              help="Artifact store the impressions and events are drained into (the "
                   "nightly's --store).")
@click.option("--namespace", envvar="RECSYS_NAMESPACE", show_envvar=True, default="recsys",
              help="Redis key prefix.")
@click.option("--redis-url", envvar="REDIS_URL", show_envvar=True, required=True,
              help="Redis holding the lists, the experiments and the streams.")
def check(min_users, min_impressions, as_json, store, namespace, redis_url) -> None:
    """Promote the running canary, roll it back or wait (docs/EXPERIMENTS.md, Canary)."""
    from infra.redis.client import connect
    from infra.store import open_store

    result = check_canary(connect(redis_url), namespace, open_store(store),
                          min_users=min_users, min_impressions=min_impressions)
    click.echo(json.dumps(result, indent=1, default=str) if as_json
               else "\n".join(lines(result)))
