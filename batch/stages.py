"""The nightly job's stages between its Beam pipelines: what runs once per run, not per user.

Training, export and scoring are the model kind's (models/kinds/); here the validation
pipeline's output is gathered and the bundle is written to the artifact store."""

from __future__ import annotations

import io
import logging

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch.transforms import ReadInteractions, ValidateInteractions, drop_duplicates
from infra.bundle import BundleWriter
from infra.store import ArtifactStore
from models.kinds import ModelKind, write_bundle
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


def export_bundle(kind: ModelKind, fit, store: ArtifactStore, version: str, k: int,
                  meta: dict) -> dict:
    """Writes `fit`'s bundle under `version` (models.kinds.write_bundle: the manifest last).

    Returns:
        The manifest.
    """
    return write_bundle(kind, fit, BundleWriter(store, version), k, meta)

