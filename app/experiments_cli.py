"""`recsys experiment create|start|stop|list|report|promote`: A/B experiments from the shell.

The definition's rules are models/experiments/assignment.py's, the store is
infra/redis/experiments.py; a refusal is one `Error:` line and exit status 1 (app/console.py's
OneLineErrors, the group this one is registered in). `report` drains the impression and event
streams into the store (infra/experiment_data.py), computes models/experiments/report.py's
report and prints it (report_text.py), optionally as JSON and a plot; `promote` ends a running
experiment by serving one arm's version to everyone (docs/EXPERIMENTS.md).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click

CONTEXT = {"show_default": True, "max_content_width": 100}


def _store_flags(command):
    command = click.option("--namespace", envvar="RECSYS_NAMESPACE", show_envvar=True,
                           default="recsys", help="Redis key prefix.")(command)
    return click.option("--redis-url", envvar="REDIS_URL", show_envvar=True, required=True,
                        help="Redis holding the lists and the experiments.")(command)


def _store(redis_url: str, namespace: str):
    from infra.redis.experiments import Experiments

    return Experiments.from_url(redis_url, namespace)


def parse_arm(text: str, i: int) -> dict:
    """One `--arm NAME=VERSION:BASIS_POINTS` as the definition's arm mapping.

    Raises:
        click.ClickException: not of that shape, or the share is not an integer (one
            `Error:` line, exit status 1, like the definition's own refusals).
    """
    name, sep, rest = text.partition("=")
    version, sep2, share = rest.rpartition(":")
    if not (sep and sep2 and name.strip() and version):
        raise click.ClickException(f"--arm {text[:80]!r} (arm {i + 1}) is not "
                                   "NAME=VERSION:BASIS_POINTS, e.g. control=current:5000")
    try:
        allocation = int(share)
    except ValueError:
        raise click.ClickException(f"--arm {text[:80]!r} (arm {i + 1}): the share "
                                   f"{share[:20]!r} must be an integer number of basis points "
                                   "(1% = 100)") from None
    return {"name": name.strip(), "version": version, "allocation": allocation}


def _arms_text(exp: dict) -> str:
    return " ".join(f"{a['name']}={a['version']}:{a['allocation']}" for a in exp["arms"])


def _line(record: dict) -> str:
    exp = record["experiment"]
    return f"experiment {exp['name']}: {record['state']} ({_arms_text(exp)}; salt {exp['salt']})"


def table(records: list[dict]) -> str:
    """`recsys experiment list`'s table: one line per experiment, oldest first."""
    head = ("name", "state", "arms (name=version:basis points)", "salt", "created", "started",
            "stopped")
    rows = [head] + [(r["experiment"]["name"], r["state"], _arms_text(r["experiment"]),
                      r["experiment"]["salt"], r["created_at"], r["started_at"] or "-",
                      r["stopped_at"] or "-") for r in records]
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


@click.group(context_settings=CONTEXT)
def experiment() -> None:
    """A/B experiments between published versions: create, start, report, promote, stop."""


@experiment.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--arm", "arms", envvar="RECSYS_EXPERIMENT_ARM", show_envvar=True, multiple=True,
              required=True, help="NAME=VERSION:BASIS_POINTS, VERSION a published version or "
              "`current` (the served one); shares sum to 10000 (repeatable, ≥ 2).")
@click.option("--salt", envvar="RECSYS_EXPERIMENT_SALT", show_envvar=True, default=None,
              help="Hash salt of the assignment (default: the experiment's name); a new salt "
                   "reshuffles users.")
@_store_flags
def create(name, arms, salt, redis_url, namespace) -> None:
    """Record experiment NAME as a draft (its arms' versions must be published)."""
    from models.experiments.assignment import experiment as definition

    exp = definition(name, [parse_arm(a, i) for i, a in enumerate(arms)],
                     name if salt is None else salt)
    click.echo(_line(_store(redis_url, namespace).create(exp)))


@experiment.command(context_settings=CONTEXT)
@click.argument("name")
@_store_flags
def start(name, redis_url, namespace) -> None:
    """Start the draft experiment NAME (once; its versions must still be published)."""
    click.echo(_line(_store(redis_url, namespace).start(name)))


@experiment.command(context_settings=CONTEXT)
@click.argument("name")
@_store_flags
def stop(name, redis_url, namespace) -> None:
    """Stop the running experiment NAME, for good."""
    click.echo(_line(_store(redis_url, namespace).stop(name)))


@experiment.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", envvar="RECSYS_EXPERIMENT_JSON", show_envvar=True,
              is_flag=True, help="Print every record whole as JSON instead of the table.")
@_store_flags
def list_(as_json, redis_url, namespace) -> None:
    """List the experiments, oldest first: state, arms, salt, timestamps."""
    records = _store(redis_url, namespace).list()
    click.echo(json.dumps(records, indent=1) if as_json else table(records))


def _ms(stamp: str | None) -> int | None:
    """Epoch ms of a record's timestamp (2026-11-30T08:30:00Z); None stays None."""
    if not stamp:
        return None
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
               .timestamp() * 1000)


def _now_ms(record: dict) -> int:
    """The report's end: now, or the end of the second a stopped experiment stopped in."""
    stopped = _ms(record["stopped_at"])
    return int(time.time() * 1000) if stopped is None else stopped + 999


@experiment.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--store", envvar="RECSYS_STORE", show_envvar=True, default="./artifacts",
              help="Artifact store the nightly job uses (a folder or s3://bucket/prefix): the "
                   "streams are drained into its events/ and impressions/ logs.")
@click.option("--json", "json_path", envvar="RECSYS_REPORT_JSON", show_envvar=True,
              type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the whole report as JSON to this file.")
@click.option("--plot", "plot_path", envvar="RECSYS_REPORT_PLOT", show_envvar=True,
              type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also plot CTR per arm by day (cumulative) with its interval (.png, .svg).")
@click.option("--alpha", envvar="RECSYS_REPORT_ALPHA", show_envvar=True, default=0.05,
              type=click.FloatRange(0.001, 0.5), help="Level of the tests (1 - coverage).")
@click.option("--min-lift", envvar="RECSYS_REPORT_MIN_LIFT", show_envvar=True, default=0.05,
              type=click.FloatRange(0.001, 10.0),
              help="Smallest relative change worth detecting (0.05 = +5%): the mSPRT's tau and "
                   "the recommended sample size. Larger: big effects show sooner, small ones "
                   "later.")
@click.option("--no-drain", envvar="RECSYS_REPORT_NO_DRAIN", show_envvar=True, is_flag=True,
              help="Read only the logs already in the store (no Redis writes).")
@_store_flags
def report(name, store, json_path, plot_path, alpha, min_lift, no_drain, redis_url,
           namespace) -> None:
    """Report experiment NAME: per-arm figures, differences with intervals, sample-ratio
    check, guardrails and which arm is better (draining the streams first; safe beside the
    nightly job)."""
    from infra.experiment_data import load
    from infra.store import open_store
    from models.experiments.assignment import Experiment
    from models.experiments.report import experiment_report
    from models.experiments.report_text import report_text

    experiments = _store(redis_url, namespace)
    record = experiments.get(name)
    if record is None:
        raise click.ClickException(f"no experiment {name[:80]!r}; see `recsys experiment list`")
    if record["state"] == "draft":
        raise click.ClickException(f"experiment {name!r} has not started: nothing to report "
                                   f"(`recsys experiment start {name}`)")
    data = load(experiments.r, namespace, open_store(store), drain=not no_drain,
                experiment=name)
    result = experiment_report(Experiment.from_dict(record["experiment"]), data.impressions,
                               data.events, started_ms=_ms(record["started_at"]),
                               now_ms=_now_ms(record),
                               alpha=alpha, min_lift=min_lift)
    result["state"] = record["state"]
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
    if plot_path:
        from models.experiments.plot import plot_daily

        plot_daily(result, plot_path)
    text = report_text(result)
    if record.get("promoted_arm"):
        text += (f"\n(stopped {record['stopped_at']}: {record['promoted_arm']} was promoted, "
                 f"version {record['promoted_version']} is served to everyone)")
    elif record["state"] != "running":
        text += f"\n(stopped {record['stopped_at']}; the figures end there)"
    click.echo(text)


@experiment.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("arm")
@_store_flags
def promote(name, arm, redis_url, namespace) -> None:
    """Stop the running experiment NAME and serve ARM's version to everyone (one transaction:
    NS:current becomes the arm's version)."""
    record = _store(redis_url, namespace).promote(name, arm)
    click.echo(f"{_line(record)}; promoted {record['promoted_arm']}: version "
               f"{record['promoted_version']} is served to everyone")
