"""`recsys experiment create|start|stop|list`: A/B experiments' definitions and states.

The definition's rules are models/experiments/assignment.py's, the store is
infra/redis/experiments.py; a refusal is one `Error:` line and exit status 1 (app/console.py's
OneLineErrors, the group this one is registered in). What is not built yet: serving the arms,
impressions, the report (docs/EXPERIMENTS.md).
"""

from __future__ import annotations

import json

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
    """A/B experiments between published versions: create a draft, start it, stop it."""


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
