"""The nightly job's flags, declared once: the fields of the frozen `NightlyConfig`.

Each field carries its flag's default, help, choices and environment variable. Both entry
points are generated from them: `python -m batch.nightly` (Beam's `PipelineOptions`,
underscored flags, dashed ones taken too: batch.nightly.NightlyOptions, through
`add_argparse_args`) and `recsys nightly` (click, dashed flags, each with its environment
variable: app/cli.py), which hands its values to the one parser as `--name=value`. A flag
added here appears in both, with the same default. The job's messages name a flag by its
dashed spelling, which both entry points take (`--max-shrink`).

This module imports neither Beam nor pandas: `recsys` builds its commands from it at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

REQUIRED = dataclasses.MISSING
# The local runner, named explicitly: Beam's "DirectRunner" (2.77) first tries to fetch and run
# the Prism runner, and only falls back to this one when that fails (offline), so the same
# command ran on Prism with internet and on FnApiRunner without. FnApiRunner takes
# --direct_running_mode and --direct_num_workers as the DirectRunner does.
DEFAULT_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = frozenset({None, "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner",
                           "SwitchingDirectRunner", "PrismRunner"})


def is_local(runner: str | None) -> bool:
    """Whether `runner` (a --runner value, None for Beam's default) runs on this machine."""
    return runner in LOCAL_RUNNERS
# With fewer validation cases the gate's NDCG@10 is noise: per-case NDCG@10 has a standard
# deviation of ~0.25 on the synthetic data (0.26 / 0.22 at 300 / 1,000 users), so the mean of
# 50 cases is known to +-0.035 (one standard error), already a quarter of a typical figure
# (0.11-0.20) and far more than the 5% tolerance; at 20 cases it is +-0.056.
MIN_CASES = 50
# A run may lose at most half of the served version's users, items or events.
MAX_SHRINK = 0.5
# A canary is a minority of users; past half it is the A/B test of `recsys experiment`.
MAX_CANARY = 50


def flag(default: Any = REQUIRED, help: str = "", *, of: type | None = None,
         choices: tuple[str, ...] | None = None, envvar: str | None = None) -> Any:
    """A NightlyConfig field that is also a command-line flag.

    Args:
        default: the flag's default (both entry points); REQUIRED: none, the run refuses
            to start without it.
        help: the `--help` text.
        of: the value's type when `default` does not show it (None or REQUIRED: str).
        choices: the allowed values.
        envvar: the environment variable of `recsys nightly` (default RECSYS_<NAME>).
    """
    shown = str if default is None or default is REQUIRED else type(default)
    meta = {"help": help, "type": of or shown, "choices": choices, "envvar": envvar}
    if default is REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NightlyConfig:
    """One nightly run's settings, checked once when built (`from_options`)."""

    input: str = flag(help="A folder holding interactions.csv/.parquet (or interactions/ of "
                           "part files) and optional users.*, items.* (docs/SCHEMA.md); or "
                           "an interactions .parquet/.csv file, a folder of them or a glob; "
                           "local or s3://.")
    redis_url: str = flag(help="Redis to publish the lists to; $REDIS_URL when the flag is absent "
                               "(the URL holds a password: pass it in the environment).",
                          envvar="REDIS_URL")
    store: str = flag("./artifacts", "Artifact store: a local folder or s3://bucket/prefix "
                                     "(a distributed runner needs s3://).")
    namespace: str = flag("recsys", "Redis key prefix.")
    k: int = flag(100, "List length per user.")
    # 2,000: the served kind scores a shard in one call over shard x 256 candidates; more
    # shards spread over the workers; the bundle loads once per worker (ARCHITECTURE.md).
    shard_size: int = flag(2000, "Users per precompute shard.")
    keep_versions: int = flag(3, "Published versions kept for rollback; older ones expire.")
    list_max_age_days: float = flag(7.0, "Users without new interactions keep the served list "
                                         "until it is this old; 0 = recompute every list.")
    model: str = flag("served", "The model kind (models/kinds/). served: two-tower, item-kNN, "
                                "session and recent candidates -> ranker -> business rules "
                                "(models/served.py), with --users/--items features. mf: MF + "
                                "Faiss, the cheap option.")
    served_config: str = flag("", "JSON overrides of ServedConfig for --model served, e.g. "
                                  '\'{"tower": {"dim": 16}, "n_tower": 50}\'.')
    graphsage_config: str = flag("", "A JSON file of GraphSAGEConfig overrides, e.g. "
                                     '{"dim": 32}: for --model graphsage, and with --model '
                                     "served it turns GraphSAGE on as a candidate source and "
                                     "feature (off by default).")
    dqn_config: str = flag("", "A JSON file of DQNConfig overrides (models/dqn_config.py) for "
                               '--model served_dqn, e.g. {"rounds": 20}.')
    users: str | None = flag(None, "Users table (user_id + feature columns; .parquet/.csv, "
                                   "local or s3://) for --model served; default: the --input "
                                   "folder's users.*.")
    items: str | None = flag(None, "Items table (item_id + feature columns; .parquet/.csv, "
                                   "local or s3://) for --model served; default: the --input "
                                   "folder's items.*.")
    # MFConfig's defaults (tests/batch/test_options.py holds them equal).
    dim: int = flag(32, "MF embedding dimension.")
    epochs: int = flag(12, "MF training epochs.")
    l2: float = flag(0.01, "MF L2 penalty.")
    event_weights: str = flag("view=1,click=2,purchase=5,rating=1",
                              "Known event types and their weights, NAME=NUMBER,...; other "
                              "types are dead letters.")
    index: str = flag("auto", "Item index: auto = exact up to --flat_max items, else IVF at "
                              "recall >= 0.95.", choices=("auto", "flat", "ivf", "hnsw"))
    flat_max: int = flag(50_000, "Largest catalog searched exactly under --index auto.")
    faiss_threads: int | None = flag(None, "Faiss threads per precompute worker (default: the "
                                           "cores shared among the DirectRunner's workers; 1 "
                                           "elsewhere).", of=int)
    gate_tolerance: float = flag(0.05, "Allowed relative NDCG@10 drop against the served "
                                       "version.")
    gate_window: float = flag(0.1, "Share of the time range held out to evaluate the quality "
                                   "gate (MF; --model served validates on the last of its own "
                                   "windows).")
    gate_min_cases: int = flag(MIN_CASES, "Fewest validation cases the quality gate decides "
                                          "on; fewer refuses the run (batch/options.py, "
                                          "MIN_CASES, says why 50).")
    max_shrink: float = flag(MAX_SHRINK, "Refuse a run whose users, items with events or valid "
                                         "events drop by more than this share of the served "
                                         "version's (0..1; checked with --skip_gate too).")
    force_publish: bool = flag(False, "Publish even if the quality gate or the shrink check "
                                      "refuses.")
    skip_gate: bool = flag(False, "Do not evaluate the quality gate (MF: saves one training).")
    canary: int = flag(0, "Publish the new version to this whole percentage of users only "
                          "(1..50; 0 = to everyone): `current` stays, and the experiment "
                          "canary-<version> serves the new version to that share and the "
                          "current one to the rest, until `recsys canary check` promotes or "
                          "rolls it back. An undecided earlier canary is superseded; "
                          "refused while an A/B test runs.")
    no_drain_events: bool = flag(False, "Do not drain the events ingested by the functions "
                                        "into <store>/events/ and train on them.")
    pushgateway: str | None = flag(None, "Prometheus Pushgateway (HOST:PORT or http(s)://URL) "
                                         "the run pushes its summary to as the "
                                         "recsys_nightly_* metrics, after a publish and after a "
                                         "failure (docs/OPERATIONS.md); a failed push is logged "
                                         "and never fails the run. Unset: no push.")

    def __post_init__(self):
        if self.list_max_age_days < 0:
            raise ValueError(f"--list-max-age-days={self.list_max_age_days}: use a number of "
                             "days >= 0 (0 recomputes every list)")
        if not 0 <= self.max_shrink <= 1:
            raise ValueError(f"--max-shrink={self.max_shrink}: use a share in [0, 1] (0.5 "
                             "refuses a run with less than half the served version's users, "
                             "items or events)")
        if self.gate_min_cases < 1:
            raise ValueError(f"--gate-min-cases={self.gate_min_cases}: use a number >= 1 "
                             "(--skip-gate skips the evaluation)")
        if not (self.canary == 0 or 1 <= self.canary <= MAX_CANARY):
            raise ValueError(f"--canary={self.canary}: use a whole percentage of users from 1 "
                             f"to {MAX_CANARY} (0 publishes to everyone)")
        if self.shard_size < 1:
            raise ValueError(f"--shard-size={self.shard_size}: use a number of users >= 1")
        if self.pushgateway is not None and not _is_http_address(self.pushgateway):
            raise ValueError(f"--pushgateway={self.pushgateway!r}: use HOST:PORT or an "
                             "http(s):// URL of a Pushgateway (e.g. localhost:9091)")

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> NightlyConfig:
        """The config of parsed flags (extra keys, e.g. Beam's, are ignored); $REDIS_URL for an
        absent --redis_url.

        Raises:
            ValueError: a required flag is missing or a value is out of range.
        """
        values = {f.name: flags.get(f.name) for f in fields()}
        # The Redis URL holds a password: deployments pass it as REDIS_URL, not as a flag that
        # runners show in their consoles.
        values["redis_url"] = values["redis_url"] or os.environ.get("REDIS_URL")
        missing = [flag_names(f)[-1] for f in fields()
                   if f.default is REQUIRED and not values[f.name]]
        if missing:
            raise ValueError(f"missing required flag(s) {missing}; see `recsys nightly --help`")
        return cls(**{name: value for name, value in values.items() if value is not None})


def _is_http_address(value: str) -> bool:
    """HOST[:PORT][/path] or http(s)://HOST[:PORT][/path], as prometheus_client's push takes."""
    try:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(
        c.isspace() for c in value)


def fields() -> tuple[dataclasses.Field, ...]:
    """The flags (NightlyConfig's fields), in declaration order."""
    return dataclasses.fields(NightlyConfig)


def envvar(f: dataclasses.Field) -> str:
    """The environment variable of the flag `f` in `recsys nightly`."""
    return f.metadata["envvar"] or f"RECSYS_{f.name.upper()}"


def flag_names(f: dataclasses.Field) -> list[str]:
    """The spellings the job takes for a field's flag: `--shard_size` (Beam's style) and
    `--shard-size` (`recsys nightly`'s), so that the job's messages, which name the dashed
    one, are right for both entry points."""
    return list(dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}"]))


def add_argparse_args(parser: argparse.ArgumentParser) -> None:
    """NightlyConfig's fields as flags (`--shard_size` or `--shard-size`, ...), not
    argparse-required: every PipelineOptions in the process parses them; `from_flags` checks."""
    for f in fields():
        if f.metadata["type"] is bool:
            parser.add_argument(*flag_names(f), dest=f.name, action="store_true",
                                help=f.metadata["help"])
            continue
        parser.add_argument(*flag_names(f), dest=f.name, type=f.metadata["type"],
                            choices=f.metadata["choices"],
                            default=None if f.default is REQUIRED else f.default,
                            help=f.metadata["help"])


def to_argv(values: Mapping[str, Any]) -> list[str]:
    """The underscored flags that give the parser (`add_argparse_args`) these values; None
    and False leave a flag out, so that its default applies."""
    argv = []
    for f in fields():
        value = values.get(f.name)
        if f.metadata["type"] is bool:
            argv += [f"--{f.name}"] if value else []
        elif value is not None:
            argv.append(f"--{f.name}={value}")
    return argv
