"""The nightly job's stages, in the order batch/nightly.run calls them.

Each stage is a function of the run's frozen NightlyConfig (batch/options.py) and the earlier
stages' outputs. Training, export and scoring are the model kind's (models/kinds/); here the
validation pipeline's output is gathered, the refusals are decided, the bundle is written to
the artifact store, the precompute pipeline runs and the version is published.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import redis
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from batch import canary
from batch.carry_over import ListPlan
from batch.gate import GateResult, QualityGateError, decide, shrink_check, too_few_cases
from batch.options import NightlyConfig, is_local
from batch.transforms import (
    Precompute,
    ReadInteractions,
    ValidateInteractions,
    faiss_threads,
    user_shards,
)
from infra.bundle import BundleWriter
from infra.events_log import drain_events, drain_impressions
from infra.items_admin import ItemChanges, ItemsError, table_changes
from infra.parquet import DEAD_SCHEMA, parquet_bytes
from infra.redis.builds import BuildRecords
from infra.redis.event_stream import EventStream
from infra.redis.impressions import ImpressionStream
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.sources import read_features, resolve_input
from infra.store import ArtifactStore, open_store
from models.kinds import ModelKind, TrainingData, write_bundle
from models.schema import CLEAN_SCHEMA, drop_duplicates

log = logging.getLogger("batch.nightly")  # the job logs under one name, as before the split


@dataclass(frozen=True)
class Targets:
    """Where a run reads and writes: the artifact store and the Redis records."""

    store: ArtifactStore
    lists: ServedLists
    builds: BuildRecords
    events: EventStream


@dataclass(frozen=True)
class Inputs:
    """The files a run reads, and what the events drain did (None: --no_drain_events)."""

    paths: list[str]
    drained: dict | None
    users: str | None = None  # --users, else the --input folder's users.* (resolve_input)
    items: str | None = None


@dataclass(frozen=True)
class Validated:
    """The validation stage's output."""

    clean: pd.DataFrame  # CLEAN_SCHEMA rows, exact duplicates removed
    dead_letters: dict[str, int]  # reason -> rows


def open_targets(config: NightlyConfig) -> Targets:
    """Opens the store and Redis; fails before any work if Redis is unreachable, and drops the
    keys of earlier runs that never published."""
    lists = ServedLists.from_url(config.redis_url, config.namespace)
    targets = Targets(open_store(config.store), lists, BuildRecords(lists.r, config.namespace),
                      EventStream(lists.r, config.namespace))
    lists.r.ping()
    dropped = lists.drop_unpublished()
    if dropped:
        log.info("dropped the keys of unpublished (failed) versions %s", dropped)
    return targets


def gather_inputs(config: NightlyConfig, targets: Targets) -> Inputs:
    """--input's interactions files (infra.sources.resolve_input: a layout folder's
    interactions.*, its users.*/items.* being the feature tables unless --users/--items say
    otherwise) and, unless --no_drain_events, every file of the events log after draining the
    events posted to the functions since the last run into it (durable in the store first,
    acknowledged in Redis only then)."""
    layout = resolve_input(config.input)
    users, items = config.users or layout.users, config.items or layout.items
    log.info("input: interactions %s, users %s, items %s", layout.interactions, users, items)
    if config.no_drain_events:
        return Inputs(layout.interactions, None, users, items)
    store = targets.store
    drained = drain_events(targets.events, store)
    drain_impressions(ImpressionStream(targets.events.r, config.namespace), store)  # reports
    return Inputs(layout.interactions + [
        f"{store.uri}/{key}" for key in store.list("events")
        if key.endswith(".parquet") and not key.startswith("events/dead/")],
        drained, users, items)


def validate(config: NightlyConfig, paths: list[str], event_weights: dict[str, float],
             options: PipelineOptions, store: ArtifactStore, version: str) -> Validated:
    """The validation pipeline; dead letters to `runs/<version>/dead_letters.parquet`.

    Raises:
        ValueError: no row is valid.
    """
    with tempfile.TemporaryDirectory(prefix="recsys-nightly-") as tmp:
        local = is_local(options.view_as(StandardOptions).runner)
        work_uri = tmp if local else f"{config.store}/runs/{version}/work"
        clean, dead = validate_stage(paths, event_weights, options, open_store(work_uri))
    if dead:
        store.put_bytes(f"runs/{version}/dead_letters.parquet", parquet_bytes(dead, DEAD_SCHEMA))
    reasons = pd.Series([d["reason"] for d in dead], dtype=object).value_counts().to_dict()
    if clean.empty:
        raise ValueError(f"{config.input}: no valid interaction (dead letters: {reasons})")
    return Validated(clean, reasons)


def validate_stage(paths: list[str], event_weights: dict, pipeline_options,
                   work: ArtifactStore) -> tuple[pd.DataFrame, list[dict]]:
    """Runs the validation pipeline; returns (clean interactions, dead-letter rows).

    Args:
        work: where the workers write their output: a local folder on the DirectRunner, a
            prefix of the artifact store (s3://..., through Beam's filesystems) on a
            distributed runner.
    """
    with beam.Pipeline(options=pipeline_options) as p:
        out = p | "Read" >> ReadInteractions(paths) | ValidateInteractions(event_weights)
        out.valid | "WriteClean" >> beam.io.WriteToParquetBatched(
            f"{work.uri}/clean", CLEAN_SCHEMA, file_name_suffix=".parquet")
        out.dead | "WriteDead" >> beam.io.WriteToParquet(
            f"{work.uri}/dead", DEAD_SCHEMA, file_name_suffix=".parquet")
    files = work.list("")

    def table(name):
        return pq.read_table(io.BytesIO(work.get_bytes(name)))

    clean = pd.concat([table(f).to_pandas() for f in files if f.startswith("clean")]
                      or [CLEAN_SCHEMA.empty_table().to_pandas()])
    dead = [r for f in files if f.startswith("dead") for r in table(f).to_pylist()]
    clean, copies = drop_duplicates(clean)
    return clean, dead + copies


def training_data(kind: ModelKind, inputs: Inputs, clean: pd.DataFrame,
                  event_weights: dict[str, float]) -> TrainingData:
    """The rows to train on, with the users and items tables (`gather_inputs`) if the kind
    uses features."""
    if not kind.uses_features:
        return TrainingData(clean, event_weights, None, None)
    return TrainingData(clean, event_weights, read_features(inputs.users, "user_id"),
                        read_features(inputs.items, "item_id"))


def refuse_shrink(config: NightlyConfig, sizes: dict[str, int],
                  served_meta: dict | None) -> str | None:
    """The shrink check (batch/gate.shrink_check): raises QualityGateError on a run whose data
    shrank against the served version's, unless --force_publish; returns the overridden
    reason (None: no shrink)."""
    shrink = shrink_check(sizes, served_meta, config.max_shrink)
    if shrink:
        if not config.force_publish:
            raise QualityGateError(f"run refused: {shrink}; nothing was published (check "
                                   "--input; use --force-publish if the data really shrank)")
        log.warning("--force-publish: publishing although %s", shrink)
    return shrink


def refuse_too_few_cases(config: NightlyConfig, clean: pd.DataFrame, window: float,
                         served_meta: dict | None) -> GateResult | None:
    """Counts the validation window's cases before training (batch/gate.too_few_cases);
    raises unless --force_publish; returns the forced refusal (None: enough cases)."""
    gate = too_few_cases(clean, window, config.gate_min_cases, served_meta)
    if gate is not None:
        refuse_unless_forced(gate, config.force_publish)
    return gate


def judge(config: NightlyConfig, validation: dict | None, served_meta: dict | None,
          window: float) -> GateResult:
    """The gate's verdict on the fit's own validation figures (batch/gate.decide); raises
    unless it passed or --force_publish."""
    gate = decide(validation, served_meta, config.gate_tolerance, config.gate_min_cases, window)
    refuse_unless_forced(gate, config.force_publish)
    return gate


def refuse_unless_forced(gate: GateResult, force: bool) -> None:
    """Raises QualityGateError on a failed gate unless forced; the error's `gate` holds the
    verdict's figures (`GateResult.as_dict`), which the failed run's metrics push."""
    log.info("quality gate: %s", gate.as_dict())
    if not gate.passed and not force:
        error = QualityGateError(f"quality gate failed: {gate.reason}; nothing was published "
                                 "(use --force-publish to publish anyway, --skip-gate to skip "
                                 "the gate)")
        error.gate = gate.as_dict()
        raise error
    if not gate.passed:
        log.warning("--force-publish: publishing although the quality gate failed: %s",
                    gate.reason)


def export_bundle(kind: ModelKind, fit, store: ArtifactStore, version: str, k: int,
                  meta: dict) -> dict:
    """Writes `fit`'s bundle under `version` (models.kinds.write_bundle: the manifest last).

    Returns:
        The manifest.
    """
    return write_bundle(kind, fit, BundleWriter(store, version), k, meta)


def precompute(config: NightlyConfig, options: PipelineOptions, argv: list[str], version: str,
               plan: ListPlan, n_users: int) -> None:
    """The precompute pipeline over the users the carry-over left to compute: every user as
    index ranges, or some as arrays of their indices; nothing when every list was carried."""
    if not plan.refresh.size:
        return
    _default_to_both_cores(options, argv)
    users: int | np.ndarray = n_users if plan.refresh.size == n_users else plan.refresh
    threads = config.faiss_threads or faiss_threads(options)
    with beam.Pipeline(options=options) as p:
        _ = (p | "Shards" >> beam.Create(user_shards(users, config.shard_size))
             | "Precompute" >> Precompute(config.store, version, config.k, config.redis_url,
                                          config.namespace, threads))


def _default_to_both_cores(options: PipelineOptions, argv: list[str]) -> None:
    """The DirectRunner runs shards in parallel processes unless the flags say otherwise."""
    if not is_local(options.view_as(StandardOptions).runner):
        return
    if any(a.startswith("--direct_running_mode") for a in argv):
        return
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "multi_processing"
    direct.direct_num_workers = direct.direct_num_workers or os.cpu_count() or 1


def publish(config: NightlyConfig, targets: Targets, version: str, plan: ListPlan,
            n_users: int, summary: dict) -> dict:
    """Records the lists' build record and the summary, publishes the version (raises unless
    every shard wrote), expires old versions and writes `runs/<version>/summary.json`.

    The version becomes `current`, or with --canary (and a version served already) it is
    published without moving `current` and the experiment canary-<version> serves it to that
    share of users (batch/canary.py).

    Returns:
        The summary with `canary` (batch/canary.plan) and `expired_versions`.
    """
    trial = canary.plan(config.canary, targets.lists.current(), version)
    summary = {**summary, "canary": trial}
    targets.builds.put_built(version, plan.built_at, plan.fingerprints)  # the next run's plan
    targets.builds.put_summary(version, summary)
    serve_all = trial is None or trial["experiment"] is None
    targets.lists.flip(version, n_users, move_current=serve_all,  # raises unless all wrote
                       expected_similar=summary.get("similar_items"))
    if not serve_all:
        canary.start(targets.lists, trial)
    summary = {**summary, "expired_versions": targets.lists.expire_old(config.keep_versions)}
    targets.store.put_bytes(f"runs/{version}/summary.json",
                            json.dumps(summary, indent=1).encode())
    log.info("published version %s%s", version,
             "" if serve_all else f" to {trial['percent']}% of users ({trial['experiment']})")
    return summary


def item_filter_changes(items: str | None) -> ItemChanges | None:
    """The item filter changes of the run's items table (categories, availability), read and
    checked before training so that a bad value refuses the run with nothing published;
    `load_item_filters` applies them once the run has published. None: no items table, or
    one without a category or available column (infra/items_admin.table_changes).

    Raises:
        ItemsError: a bad value, each named with its row (the run stops here).
    """
    if not items:
        return None
    try:
        changes = table_changes(items)
    except ItemsError as e:
        raise ItemsError(f"the items table is refused, so the run stops before training and "
                         f"publishes nothing: {e}") from None
    if changes is None:
        log.info("items table %s: no category or available value; item filters unchanged",
                 items)
    return changes


def load_item_filters(targets: Targets, changes: ItemChanges | None, summary: dict) -> dict:
    """Writes the items table's categories and availability into the live item filters
    (ItemFilters.update: one transaction, as `recsys items --items FILE`), after the flip, so
    a refused or failed run never changes them.

    Returns:
        The summary with `item_filters` (the new revision and the counts; None: nothing to
        load).

    Raises:
        RuntimeError: Redis failed; the version is published and its filters are not loaded.
    """
    if changes is None:
        return {**summary, "item_filters": None}
    arguments = changes.arguments()
    filters = ItemFilters(targets.lists.r, targets.lists.keys.namespace)
    try:
        rev = filters.update(**arguments)
    except redis.RedisError as e:
        raise RuntimeError(f"version {summary['version']} is published, but the items table's "
                           f"categories and availability were not loaded into the item "
                           f"filters ({e}); run `recsys items --items FILE` with the same table "
                           "(idempotent)") from e
    counts = {name: len(value) for name, value in arguments.items()}
    log.info("item filters rev %d from the items table: %s", rev, counts)
    return {**summary, "item_filters": {"rev": rev, **counts}}
