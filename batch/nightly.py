"""The nightly job: validate -> shrink check -> train once -> quality gate -> export ->
precompute -> publish.

    recsys nightly --input data/interactions.parquet --store ./artifacts \
        --redis-url redis://localhost:6379/0

or with Beam's own flags, e.g. on Dataflow (see docs/RUNNERS.md):

    python -m batch.nightly --input s3://... --store s3://bucket/recsys --redis_url ... \
        --runner DataflowRunner --project P --region R --temp_location gs://... \
        --setup_file ./setup.py

`--model` names the model kind (models/kinds/), which does the training, the export and the
scoring: `mf` (MF + Faiss) or `served` (two-tower retrieval, item-kNN, session and recent
candidates -> the ranker -> the business rules; models/served.py) with the user and item
features of `--users`/`--items`; each warm user's list is the kind's batch scorer, the same
code the functions run for fresh users.

A run whose users, items with events or valid events drop past --max_shrink of the served
version's, or whose validation window holds fewer than --gate_min_cases cases, is refused
before anything is trained or written to Redis. The model is trained once; the quality gate
then reads the figures it measured on its own last temporal window (MF: one extra MF fit on the
earlier rows; served: fit_served's) and refuses a regression before anything is exported or
written to Redis (--force_publish overrides; batch/gate.py).

The flags are the fields of one frozen NightlyConfig (batch/options.py, which `recsys nightly`
is generated from too); `run` only wires the stages of batch/stages.py, each timed under its
key of the summary's `seconds`. Validation and the precompute are Beam pipelines; training
runs once between them. Users whose interactions did not change keep the served version's list
(copied inside Redis) until it is --list_max_age_days old (batch/carry_over.py). The `current`
pointer flips only after Redis confirms every shard (computed or copied) wrote its users, so a
failed or killed run leaves the served version untouched; rerunning publishes.
With --canary PERCENT the version is published but `current` stays: the experiment
canary-<version> serves it to PERCENT % of users until `recsys canary check` promotes or rolls
it back (batch/canary.py); an undecided earlier canary is superseded once the version is
published, and the run is refused before any work while an A/B test runs.
An items table with a `category` (`Comedy|Drama`: several) or `available` column is checked
with the input and loaded into the live item filters only once the run published.
With --pushgateway HOST:PORT the run pushes its summary as the recsys_nightly_* metrics once
published, and what it measured with success 0 when it fails (`push_metrics`;
docs/OPERATIONS.md, *Where the numbers come from*).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from batch import canary, stages
from batch.carry_over import carry_over
from batch.gate import data_sizes
from batch.options import DEFAULT_RUNNER, NightlyConfig, add_argparse_args
from batch.similar import similar_items
from infra.bundle import new_version
from infra.redis.similar import SimilarLists
from models import kinds
from models.preprocess import parse_event_weights

log = logging.getLogger(__name__)


class NightlyOptions(PipelineOptions):
    """NightlyConfig's fields (batch/options.py) as Beam pipeline options (`--shard_size`)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_argparse_args(parser)


class Stopwatch:
    """Seconds per stage, for the summary's `seconds` (only stages that ran and finished)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.seconds[stage] = time.perf_counter() - t


def run(argv: list[str] | None = None) -> dict:
    """Runs the whole nightly job; returns (and logs) the JSON summary.

    With --pushgateway the run pushes its metrics once it published, and what it got to with
    `recsys_nightly_success 0` when it fails (`push_metrics`).

    Raises:
        QualityGateError: the new model regressed, the gate had too few validation cases or
            the data shrank against the served version (nothing published).
        ValueError / SchemaError: bad flags or input, or --canary while an experiment runs
            (nothing published); NonFiniteError (a
            ValueError): the trained model holds NaN or inf (nothing published).
    """
    argv = sys.argv[1:] if argv is None else argv
    options = PipelineOptions(argv)
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER  # never Prism by surprise
    # Bad flags fail here, before any work.
    config = NightlyConfig.from_flags(options.view_as(NightlyOptions).get_all_options())
    clock = Stopwatch()
    so_far = {"seconds": clock.seconds}  # what a failed run measured, for its push
    try:
        summary, targets, item_filters = _publish(config, options, argv, clock, so_far)
    except Exception as error:
        so_far["gate"] = so_far.get("gate") or getattr(error, "gate", None)
        push_metrics(config.pushgateway, so_far, succeeded=False)
        raise
    push_metrics(config.pushgateway, summary, succeeded=True)  # published, whatever follows
    return stages.load_item_filters(targets, item_filters, summary)


def _publish(config: NightlyConfig, options: PipelineOptions, argv: list[str],
             clock: Stopwatch, so_far: dict) -> tuple[dict, stages.Targets, object]:
    """The stages up to the publish; `so_far` gets the dead letters and the gate's figures
    as soon as they are known.

    Returns:
        (summary, targets, the items table's filter changes to load).
    """
    kind = kinds.get(config.model)
    kind_config = kind.config(dataclasses.asdict(config))
    weights = parse_event_weights(config.event_weights)
    targets = stages.open_targets(config)
    canary.refuse_while_running(config.canary, targets.lists)  # before any work
    version = new_version()

    with clock("drain_events"):
        inputs = stages.gather_inputs(config, targets)
    with clock("validate"):
        rows = stages.validate(config, inputs.paths, weights, options, targets.store, version)
    so_far["dead_letters"] = rows.dead_letters
    data = stages.training_data(kind, inputs, rows.clean, weights)
    item_filters = stages.item_filter_changes(inputs.items)  # loaded once published

    # Refusals come before any training and any Redis write: nothing to undo.
    served = targets.lists.current()
    served_meta = targets.builds.summary(served) if served else None
    sizes = data_sizes(rows.clean)
    shrink = stages.refuse_shrink(config, sizes, served_meta)
    gate, window = None, None
    if not config.skip_gate:
        with clock("quality_gate"):
            window = kind.validation_window(kind_config, config.gate_window)
            gate = stages.refuse_too_few_cases(config, rows.clean, window, served_meta)
        if gate is not None:
            window = None  # forced: nothing to validate on

    with clock("train"):
        fit = kind.fit(data, kind_config, window)  # the one training, its validation inside
    if window is not None:
        gate = stages.judge(config, fit.validation, served_meta, window)
    so_far["gate"] = gate.as_dict() if gate else None

    with clock("export"):
        manifest = stages.export_bundle(kind, fit, targets.store, version, config.k,
                                        {"gate": so_far["gate"]})
    n_users = manifest["users"]
    so_far["index"] = manifest["index"]
    with clock("similar"):  # every item's neighbours (/similar), checked by the same flip
        n_similar = similar_items(targets.store, SimilarLists(targets.lists.r, config.namespace),
                                  version, rows.clean)

    with clock("carry_over"):
        plan, refreshed = carry_over(targets.lists, targets.builds, targets.store, rows.clean,
                                     version, config.k, config.list_max_age_days,
                                     int(time.time()))
    log.info("lists: %s", refreshed)

    with clock("precompute_publish"):
        stages.precompute(config, options, argv, version, plan, n_users)

    summary = {"version": version, "model": config.model, "users_published": n_users,
               **refreshed,
               "items": manifest["items"], "similar_items": n_similar,
               "items_with_events": sizes["items_with_events"],
               "valid_events": len(rows.clean), "dead_letters": rows.dead_letters,
               "events_drained": inputs.drained,
               "bundle": f"{config.store}/bundles/{version}", "index": manifest["index"],
               "gate": so_far["gate"],
               "shrink": shrink,  # null unless --force_publish overrode the shrink check
               "seconds": {k: round(v, 3) for k, v in clock.seconds.items()}}
    summary = stages.publish(config, targets, version, plan, n_users, summary)
    return summary, targets, item_filters


def push_metrics(gateway: str | None, summary: dict, *, succeeded: bool) -> None:
    """Pushes a run's summary as the recsys_nightly_* metrics (infra/monitoring/exporters.py)
    to the Pushgateway `gateway` (None: no push). A push that fails is logged: the metrics
    never fail the run (a missing push shows as RecsysNoPublish).

    Args:
        summary: the published run's summary, or what a failed run measured (`seconds`,
            `dead_letters`, `gate`, `index`).
        succeeded: whether the run published.
    """
    if not gateway:
        return
    summary = {**summary, "seconds": {k: round(v, 3) for k, v in
                                      (summary.get("seconds") or {}).items()}}
    try:  # prometheus_client only where a run pushes
        from infra.monitoring.exporters import nightly_registry, push_nightly

        registry = nightly_registry(summary, succeeded=succeeded, finished_at=time.time())
        push_nightly(gateway, registry, succeeded=succeeded)
    except Exception as e:  # noqa: BLE001 (whatever the push raises, the run's outcome stands)
        log.warning("the run's metrics were not pushed to the Pushgateway %s: %s", gateway, e)
        return
    log.info("pushed the run's metrics (success %d) to the Pushgateway %s", succeeded, gateway)


def _help() -> None:
    """`python -m batch.nightly --help`: the job's flags (Beam's own pass through as well)."""
    parser = argparse.ArgumentParser(prog="python -m batch.nightly",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Beam's own flags (--runner, --project, ...) are "
                                            "taken as well; see docs/RUNNERS.md.")
    add_argparse_args(parser)
    parser.print_help()


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        _help()
        sys.exit(0)
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=1))
