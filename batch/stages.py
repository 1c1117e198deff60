"""The nightly job's stages between its Beam pipelines: what runs once per run, not per user."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import asdict

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch.transforms import ReadInteractions, ValidateInteractions, drop_duplicates
from infra.bundle import BundleWriter
from infra.store import ArtifactStore
from models.index import IndexConfig, build_index
from models.mf import MFConfig, MFModel, train_mf
from models.schema import CLEAN_SCHEMA

log = logging.getLogger(__name__)

DEAD_SCHEMA = pa.schema([("file", pa.string()), ("reason", pa.string()), ("row", pa.string())])


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()


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


def seen_csr(clean: pd.DataFrame, model: MFModel) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct items as CSR: (indptr [num_users + 1], items [nnz]) int64."""
    u = model.users.lookup(clean["user_id"])
    i = model.items.lookup(clean["item_id"])
    pairs = np.unique(np.stack([u, i], axis=1)[(u >= 0) & (i >= 0)], axis=0)
    indptr = np.searchsorted(pairs[:, 0], np.arange(len(model.users) + 1))
    return indptr.astype(np.int64), pairs[:, 1].astype(np.int64)


def train_and_export(clean: pd.DataFrame, store, version: str, config: MFConfig,
                     event_weights: dict, k: int, index_config: IndexConfig,
                     meta: dict) -> dict:
    """Trains MF, builds the index and commits the bundle (manifest last).

    Returns:
        {"users", "items", "index": index info, "tower_max_abs_error"}.
    """
    import faiss

    from models.export import check_tower, export_mf

    model = train_mf(clean, config, event_weights)
    popular = clean["item_id"].value_counts()
    popular = popular.reindex(model.items.ids).sort_values(ascending=False, kind="stable")
    user_vectors = model.user_vectors()
    sample = user_vectors[np.random.default_rng(0).choice(
        len(user_vectors), min(1000, len(user_vectors)), replace=False)]
    index, index_info = build_index(model.item_vectors(), sample, k, index_config)
    indptr, items = seen_csr(clean, model)

    writer = BundleWriter(store, version)
    writer.put_json("item_ids.json", [str(x) for x in model.items.ids])
    writer.put_json("user_ids.json", [str(x) for x in model.users.ids])
    writer.put_array("item_vectors.npy", model.item_vectors())
    writer.put_array("user_vectors.npy", user_vectors)
    writer.put_array("seen_indptr.npy", indptr)
    writer.put_array("seen_items.npy", items)
    writer.put("items.faiss", faiss.serialize_index(index).tobytes())
    writer.put_json("popular.json", [str(x) for x in popular.index[:1000]])
    with tempfile.TemporaryDirectory() as tmp:
        tower = export_mf(model, os.path.join(tmp, "saved_model"), k=k)
        tower_error = check_tower(tower, model)
        writer.put("user_tower.tflite", tower)
        writer.put_dir("saved_model", os.path.join(tmp, "saved_model"))
    stats = {"users": len(model.users), "items": len(model.items), "index": index_info,
             "tower_max_abs_error": tower_error}
    writer.commit({"model": "mf", "config": asdict(config), "k": k, **stats, **meta})
    return stats
