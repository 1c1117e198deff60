"""The nightly job: validate -> train -> export bundle -> precompute top-K -> publish to Redis.

    recsys nightly --input data/interactions.parquet --store ./artifacts \
        --redis-url redis://localhost:6379/0

or, with Beam's own flags (e.g. --runner DataflowRunner ...):

    python -m batch.nightly --input ... --store s3://bucket/recsys --redis_url ...

Stages run as Beam pipelines (validate, precompute) around a training step; each stage is
timed in the JSON summary. The `current` pointer flips only after Redis confirms that every
shard wrote its users, so a failed run leaves the served version untouched.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from batch.sources import expand_paths
from batch.transforms import (
    ReadInteractions,
    Retrieve,
    ValidateInteractions,
    WriteListsFn,
    make_shards,
)
from infra.bundle import BundleWriter, new_version
from infra.redis_store import ListStore
from infra.store import open_store
from models.mf import MFConfig, train_mf
from models.preprocess import parse_event_weights
from models.topk import build_flat_index

log = logging.getLogger(__name__)

CLEAN_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                          ("timestamp", pa.int64()), ("event_type", pa.string()),
                          ("weight", pa.float64())])
DEAD_SCHEMA = pa.schema([("file", pa.string()), ("reason", pa.string()), ("row", pa.string())])


class NightlyOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input",
                            help="Interactions: a .parquet/.csv file, a folder or a glob; "
                                 "local or s3://")
        parser.add_argument("--store",
                            help="Artifact store: a local folder or s3://bucket/prefix")
        parser.add_argument("--redis_url", help="Redis to publish to")
        parser.add_argument("--namespace", default="recsys", help="Redis key prefix")
        parser.add_argument("--k", type=int, default=100, help="List length per user")
        parser.add_argument("--shard_size", type=int, default=2000, help="Users per shard")
        parser.add_argument("--keep_versions", type=int, default=3,
                            help="Published versions kept for rollback")
        parser.add_argument("--dim", type=int, default=MFConfig.dim, help="MF dimension")
        parser.add_argument("--epochs", type=int, default=MFConfig.epochs, help="MF epochs")
        parser.add_argument("--l2", type=float, default=MFConfig.l2, help="MF L2 penalty")
        parser.add_argument("--event_weights", default="view=1,click=2,purchase=5,rating=1",
                            help="Known event types and their weights, NAME=NUMBER,...")


def _write_parquet(rows: list[dict], schema: pa.Schema) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()


def validate_stage(opts: NightlyOptions, pipeline_options: PipelineOptions, work: str):
    """Runs the validation pipeline; returns (clean DataFrame, dead-letter rows)."""
    paths = expand_paths(opts.input)
    with beam.Pipeline(options=pipeline_options) as p:
        out = (p | "Read" >> ReadInteractions(paths)
               | ValidateInteractions(parse_event_weights(opts.event_weights)))
        out.valid | "WriteClean" >> beam.io.WriteToParquet(
            os.path.join(work, "clean"), CLEAN_SCHEMA, file_name_suffix=".parquet")
        out.dead | "WriteDead" >> beam.io.WriteToParquet(
            os.path.join(work, "dead"), DEAD_SCHEMA, file_name_suffix=".parquet")
    clean = pd.concat([pq.read_table(os.path.join(work, f)).to_pandas()
                       for f in sorted(os.listdir(work)) if f.startswith("clean")])
    dead = [r for f in sorted(os.listdir(work)) if f.startswith("dead")
            for r in pq.read_table(os.path.join(work, f)).to_pylist()]
    return clean.reset_index(drop=True), dead


def train_and_export(clean: pd.DataFrame, store, version: str, opts: NightlyOptions) -> dict:
    """Trains MF and popularity on the clean rows and commits the bundle; returns stats."""
    from models.export import check_tower, export_mf

    config = MFConfig(dim=opts.dim, epochs=opts.epochs, l2=opts.l2)
    model = train_mf(clean, config, parse_event_weights(opts.event_weights))
    popular = clean["item_id"].value_counts()
    popular = popular.reindex(model.items.ids).sort_values(ascending=False, kind="stable")
    writer = BundleWriter(store, version)
    writer.put_json("item_ids.json", [str(x) for x in model.items.ids])
    writer.put_json("user_ids.json", [str(x) for x in model.users.ids])
    writer.put_array("item_vectors.npy", model.item_vectors())
    writer.put_array("user_vectors.npy", model.user_vectors())
    import faiss

    index = build_flat_index(model.item_vectors())
    writer.put("items.faiss", faiss.serialize_index(index).tobytes())
    writer.put_json("popular.json", [str(x) for x in popular.index[:1000]])
    with tempfile.TemporaryDirectory() as tmp:
        tower = export_mf(model, os.path.join(tmp, "saved_model"), k=opts.k)
        tower_error = check_tower(tower, model)
        writer.put("user_tower.tflite", tower)
        writer.put_dir("saved_model", os.path.join(tmp, "saved_model"))
    writer.commit({"model": "mf", "config": asdict(config), "users": len(model.users),
                   "items": len(model.items), "k": opts.k, "index": "IndexFlatIP",
                   "tower_max_abs_error": tower_error})
    return {"model": model}


def run(argv: list[str] | None = None) -> dict:
    """Runs the whole nightly job; returns (and logs) the JSON summary."""
    pipeline_options = PipelineOptions(argv)
    opts = pipeline_options.view_as(NightlyOptions)
    # Not argparse-required: every PipelineOptions in the process parses these flags.
    missing = [f"--{name}" for name in ("input", "store", "redis_url") if not getattr(opts, name)]
    if missing:
        raise ValueError(f"missing required flag(s) {missing}; see `recsys nightly --help`")
    store = open_store(opts.store)
    lists = ListStore.from_url(opts.redis_url, opts.namespace)
    lists.r.ping()  # fail before any work if Redis is unreachable
    version = new_version()
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="recsys-nightly-") as work:
        clean, dead = validate_stage(opts, pipeline_options, work)
    if dead:
        store.put_bytes(f"runs/{version}/dead_letters.parquet", _write_parquet(dead, DEAD_SCHEMA))
    reasons = pd.Series([d["reason"] for d in dead], dtype=object).value_counts().to_dict()
    seconds["validate"] = time.perf_counter() - t
    if clean.empty:
        raise ValueError(f"{opts.input}: no valid interaction (dead letters: {reasons})")

    t = time.perf_counter()
    model = train_and_export(clean, store, version, opts)["model"]
    seconds["train_export"] = time.perf_counter() - t

    t = time.perf_counter()
    u = model.users.lookup(clean["user_id"])
    i = model.items.lookup(clean["item_id"])
    seen_df = pd.DataFrame({"u": u, "i": i}).drop_duplicates().sort_values(["u", "i"])
    bounds = np.searchsorted(seen_df.u.to_numpy(), np.arange(len(model.users) + 1))
    items_sorted = seen_df.i.to_numpy()
    seen = [items_sorted[bounds[n]:bounds[n + 1]] for n in range(len(model.users))]
    shards = make_shards(seen, opts.shard_size)
    with beam.Pipeline(options=pipeline_options) as p:
        _ = (p | "Shards" >> beam.Create(shards)
             | "Retrieve" >> Retrieve(opts.store, version, opts.k)
             | "WriteRedis" >> beam.ParDo(WriteListsFn(opts.redis_url, opts.namespace,
                                                       version)))
    seconds["precompute_publish"] = time.perf_counter() - t

    summary = {"version": version, "users_published": len(model.users),
               "items": len(model.items), "valid_events": len(clean),
               "dead_letters": reasons, "bundle": f"{opts.store}/bundles/{version}",
               "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    lists.flip(version, len(model.users), summary)
    summary["expired_versions"] = lists.expire_old(opts.keep_versions)
    store.put_bytes(f"runs/{version}/summary.json", json.dumps(summary, indent=1).encode())
    log.info("published version %s", version)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=1))
