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

Validation and the precompute are Beam pipelines; training runs once between them. Users
whose interactions did not change keep the served version's list (copied inside Redis) until
it is --list_max_age_days old (batch/carry_over.py). The `current` pointer flips only after
Redis confirms every shard (computed or copied) wrote its users, so a failed or killed run
leaves the served version untouched; rerunning publishes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time

import apache_beam as beam
import pandas as pd
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from batch.carry_over import carry_over
from batch.gate import (
    MAX_SHRINK,
    MIN_CASES,
    GateResult,
    QualityGateError,
    data_sizes,
    decide,
    shrink_check,
    too_few_cases,
)
from batch.stages import DEAD_SCHEMA, export_bundle, parquet_bytes, validate_stage
from batch.transforms import Precompute, faiss_threads, user_shards
from infra.bundle import new_version
from infra.events_log import drain_events
from infra.redis.builds import BuildRecords
from infra.redis.event_stream import EventStream
from infra.redis.lists import ServedLists
from infra.sources import expand_paths, read_features
from infra.store import open_store
from models import kinds
from models.kinds import TrainingData
from models.mf import MFConfig
from models.preprocess import parse_event_weights

log = logging.getLogger(__name__)


class NightlyOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        # Not argparse-required: every PipelineOptions in the process parses these flags.
        parser.add_argument("--input", help="Interactions: a .parquet/.csv file, a folder or "
                                            "a glob; local or s3://")
        parser.add_argument("--store", help="Artifact store: a local folder or s3://bucket/prefix")
        parser.add_argument("--redis_url", help="Redis to publish to (default: $REDIS_URL)")
        parser.add_argument("--namespace", default="recsys", help="Redis key prefix")
        parser.add_argument("--k", type=int, default=100, help="List length per user")
        parser.add_argument("--shard_size", type=int, default=5000, help="Users per shard")
        parser.add_argument("--faiss_threads", type=int, default=None,
                            help="Faiss threads per precompute worker (default: the cores "
                                 "shared among the DirectRunner's workers; 1 elsewhere)")
        parser.add_argument("--keep_versions", type=int, default=3,
                            help="Published versions kept for rollback")
        parser.add_argument("--list_max_age_days", type=float, default=7.0,
                            help="Users whose interactions did not change keep the served "
                                 "list until it is this old; 0 = recompute every list")
        parser.add_argument("--model", default="served", choices=sorted(kinds.KINDS),
                            help="The model kind (models/kinds/): served (default): "
                                 "retrieval -> ranker -> rules (models/served.py); mf: MF + "
                                 "Faiss, the cheap option")
        parser.add_argument("--served_config", default="",
                            help="JSON overrides of ServedConfig for --model served, e.g. "
                                 '\'{"tower": {"dim": 16}, "n_tower": 50}\'')
        parser.add_argument("--users", help="Users table (user_id + feature columns; "
                                            ".parquet/.csv, local or s3://), --model served")
        parser.add_argument("--items", help="Items table (item_id + feature columns), "
                                            "--model served")
        parser.add_argument("--dim", type=int, default=MFConfig.dim, help="MF dimension")
        parser.add_argument("--epochs", type=int, default=MFConfig.epochs, help="MF epochs")
        parser.add_argument("--l2", type=float, default=MFConfig.l2, help="MF L2 penalty")
        parser.add_argument("--event_weights", default="view=1,click=2,purchase=5,rating=1",
                            help="Known event types and their weights, NAME=NUMBER,...")
        parser.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "hnsw"],
                            help="Item index: auto = Flat up to --flat_max items, else IVF")
        parser.add_argument("--flat_max", type=int, default=50_000,
                            help="Largest catalog searched exactly under --index auto")
        parser.add_argument("--gate_tolerance", type=float, default=0.05,
                            help="Allowed relative NDCG@10 drop against the served version")
        parser.add_argument("--gate_window", type=float, default=0.1,
                            help="Share of the time range held out to evaluate the gate (MF; "
                                 "--model served validates on the last of its own windows)")
        parser.add_argument("--gate_min_cases", type=int, default=MIN_CASES,
                            help="Fewest validation cases the quality gate decides on; fewer "
                                 "refuses the run (batch/gate.py says why 50)")
        parser.add_argument("--max_shrink", type=float, default=MAX_SHRINK,
                            help="Refuse a run whose users, items with events or valid events "
                                 "drop by more than this share of the served version's "
                                 "(0..1; checked with --skip_gate too)")
        parser.add_argument("--force_publish", action="store_true",
                            help="Publish even if the quality gate or the shrink check "
                                 "refuses")
        parser.add_argument("--no_drain_events", action="store_true",
                            help="Do not drain the events ingested by the functions into "
                                 "<store>/events/ and train on them")
        parser.add_argument("--skip_gate", action="store_true",
                            help="Do not evaluate the quality gate (MF: saves one training)")


def _default_to_both_cores(options: PipelineOptions, argv: list[str]) -> None:
    """The DirectRunner runs shards in parallel processes unless the flags say otherwise."""
    if options.view_as(StandardOptions).runner not in (None, "DirectRunner"):
        return
    if any(a.startswith("--direct_running_mode") for a in argv):
        return
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "multi_processing"
    direct.direct_num_workers = direct.direct_num_workers or os.cpu_count() or 1


def run(argv: list[str] | None = None) -> dict:
    """Runs the whole nightly job; returns (and logs) the JSON summary.

    Raises:
        QualityGateError: the new model regressed, the gate had too few validation cases or
            the data shrank against the served version (nothing published).
        ValueError / SchemaError: bad flags or input (nothing published); NonFiniteError (a
            ValueError): the trained model holds NaN or inf (nothing published).
    """
    options = PipelineOptions(argv)
    opts = options.view_as(NightlyOptions)
    # The Redis URL holds a password: deployments pass it as REDIS_URL, not as a flag that
    # runners show in their consoles.
    opts.redis_url = opts.redis_url or os.environ.get("REDIS_URL")
    missing = [f"--{name}" for name in ("input", "store", "redis_url") if not getattr(opts, name)]
    if missing:
        raise ValueError(f"missing required flag(s) {missing}; see `recsys nightly --help`")
    kind = kinds.get(opts.model)
    config = kind.config(opts.get_all_options())  # bad flags: before any work
    store = open_store(opts.store)
    lists = ServedLists.from_url(opts.redis_url, opts.namespace)
    builds = BuildRecords(lists.r, opts.namespace)
    lists.r.ping()  # fail before any work if Redis is unreachable
    dropped = lists.drop_unpublished()
    if dropped:
        log.info("dropped the keys of unpublished (failed) versions %s", dropped)
    weights = parse_event_weights(opts.event_weights)
    if opts.list_max_age_days < 0:
        raise ValueError(f"--list_max_age_days={opts.list_max_age_days}: use a number of days "
                         ">= 0 (0 recomputes every list)")
    if not 0 <= opts.max_shrink <= 1:
        raise ValueError(f"--max_shrink={opts.max_shrink}: use a share in [0, 1] (0.5 refuses "
                         "a run with less than half the served version's users, items or events)")
    if opts.gate_min_cases < 1:
        raise ValueError(f"--gate_min_cases={opts.gate_min_cases}: use a number >= 1 "
                         "(--skip_gate skips the evaluation)")
    version, seconds = new_version(), {}

    t = time.perf_counter()
    paths = expand_paths(opts.input)
    drained = None
    if not opts.no_drain_events:
        # Events posted to the functions since the last run: durable in the store first,
        # acknowledged in Redis only then; every run trains on the whole events log.
        drained = drain_events(EventStream(lists.r, opts.namespace), store)
        paths += [f"{store.uri}/{key}" for key in store.list("events")
                  if key.endswith(".parquet") and not key.startswith("events/dead/")]
    seconds["drain_events"] = time.perf_counter() - t

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-nightly-") as tmp:
        local = options.view_as(StandardOptions).runner in (None, "DirectRunner")
        work_uri = tmp if local else f"{opts.store}/runs/{version}/work"
        clean, dead = validate_stage(paths, weights, options, open_store(work_uri))
    if dead:
        store.put_bytes(f"runs/{version}/dead_letters.parquet", parquet_bytes(dead, DEAD_SCHEMA))
    reasons = pd.Series([d["reason"] for d in dead], dtype=object).value_counts().to_dict()
    seconds["validate"] = time.perf_counter() - t
    if clean.empty:
        raise ValueError(f"{opts.input}: no valid interaction (dead letters: {reasons})")
    data = TrainingData(clean, weights, *((read_features(opts.users, "user_id"),
                                           read_features(opts.items, "item_id"))
                                          if kind.uses_features else (None, None)))

    # Refusals come before any training and any Redis write: nothing to undo.
    served = lists.current()
    served_meta = builds.summary(served) if served else None
    sizes = data_sizes(clean)
    shrink = shrink_check(sizes, served_meta, opts.max_shrink)
    if shrink:
        if not opts.force_publish:
            raise QualityGateError(f"run refused: {shrink}; nothing was published (check "
                                   "--input; use --force_publish if the data really shrank)")
        log.warning("--force_publish: publishing although %s", shrink)
    gate, window = None, None
    if not opts.skip_gate:
        t = time.perf_counter()
        window = kind.validation_window(config, opts.gate_window)
        gate = too_few_cases(clean, window, opts.gate_min_cases, served_meta)
        seconds["quality_gate"] = time.perf_counter() - t
        if gate is not None:
            _refuse_unless_forced(gate, opts.force_publish)
            window = None  # forced: nothing to validate on

    t = time.perf_counter()
    fit = kind.fit(data, config, window)  # the one training, its validation figure inside
    seconds["train"] = time.perf_counter() - t
    if window is not None:
        gate = decide(fit.validation, served_meta, opts.gate_tolerance, opts.gate_min_cases,
                      window)
        _refuse_unless_forced(gate, opts.force_publish)

    t = time.perf_counter()
    manifest = export_bundle(kind, fit, store, version, opts.k,
                             {"gate": gate.as_dict() if gate else None})
    stats = {"users": manifest["users"], "items": manifest["items"], "index": manifest["index"]}
    seconds["export"] = time.perf_counter() - t

    t = time.perf_counter()
    plan, refreshed = carry_over(lists, builds, store, clean, version, opts.k,
                                 opts.list_max_age_days, int(time.time()))
    seconds["carry_over"] = time.perf_counter() - t
    log.info("lists: %s", refreshed)

    t = time.perf_counter()
    _default_to_both_cores(options, argv if argv is not None else sys.argv[1:])
    users = stats["users"] if plan.refresh.size == stats["users"] else plan.refresh
    if plan.refresh.size:
        with beam.Pipeline(options=options) as p:
            _ = (p | "Shards" >> beam.Create(user_shards(users, opts.shard_size))
                 | "Precompute" >> Precompute(opts.store, version, opts.k, opts.redis_url,
                                              opts.namespace,
                                              opts.faiss_threads or faiss_threads(options)))
    seconds["precompute_publish"] = time.perf_counter() - t

    summary = {"version": version, "model": opts.model, "users_published": stats["users"],
               **refreshed,
               "items": stats["items"], "items_with_events": sizes["items_with_events"],
               "valid_events": len(clean), "dead_letters": reasons,
               "events_drained": drained,
               "bundle": f"{opts.store}/bundles/{version}", "index": stats["index"],
               "gate": gate.as_dict() if gate else None,
               "shrink": shrink,  # null unless --force_publish overrode the shrink check
               "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    builds.put_built(version, plan.built_at, plan.fingerprints)  # for the next run's plan
    builds.put_summary(version, summary)
    lists.flip(version, stats["users"])  # raises unless every shard wrote
    summary["expired_versions"] = lists.expire_old(opts.keep_versions)
    store.put_bytes(f"runs/{version}/summary.json", json.dumps(summary, indent=1).encode())
    log.info("published version %s", version)
    return summary


def _refuse_unless_forced(gate: GateResult, force: bool) -> None:
    log.info("quality gate: %s", gate.as_dict())
    if not gate.passed and not force:
        raise QualityGateError(f"quality gate failed: {gate.reason}; nothing was published "
                               "(use --force_publish to publish anyway, --skip_gate to skip "
                               "the gate)")
    if not gate.passed:
        log.warning("--force_publish: publishing although the quality gate failed: %s",
                    gate.reason)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=1))
