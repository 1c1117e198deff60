"""The nightly job's stages between its Beam pipelines: what runs once per run, not per user."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, fields, replace

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
from models.vocab import Vocab

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


# -- the served recommender (--model served) ------------------------------------------------------


def served_config(text: str | None):
    """A ServedConfig from JSON overrides of its defaults (--served_config).

    Args:
        text: e.g. '{"tower": {"dim": 16, "epochs": 4}, "ranker": {"hidden": [32]},
            "n_tower": 50}'; None or "" keeps every default.

    Raises:
        ValueError: not a JSON object, or a field ServedConfig (or its parts) does not have.
    """
    from models.ranker import RankerConfig
    from models.served import ServedConfig
    from models.two_tower import TwoTowerConfig

    try:
        raw = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"--served_config is not JSON ({e}); pass an object such as "
                         '\'{"tower": {"dim": 16}}\'') from e
    if not isinstance(raw, dict):
        raise ValueError("--served_config must be a JSON object of ServedConfig fields")

    def build(cls, values: dict, where: str):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--served_config: unknown field(s) {unknown} in {where}; "
                             f"known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    parts = {"tower": build(TwoTowerConfig, raw.get("tower") or {}, "tower"),
             "ranker": build(RankerConfig, raw.get("ranker") or {}, "ranker")}
    rest = {k: v for k, v in raw.items() if k not in parts}
    return replace(build(ServedConfig, rest, "the top level"), **parts)


def history_csr(clean: pd.DataFrame, users: Vocab, items: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct items in order of first event, as the evaluation's warm cases
    see them: (indptr [num_users + 1], items [nnz]) int64 (unknown ids dropped)."""
    from models.evaluation import event_order

    first = event_order(clean).drop_duplicates(["user_id", "item_id"])
    u, i = users.lookup(first["user_id"]), items.lookup(first["item_id"])
    keep = (u >= 0) & (i >= 0)
    u, i = u[keep], i[keep]
    order = np.argsort(u, kind="stable")  # by user, each user's events still in order
    indptr = np.searchsorted(u[order], np.arange(len(users) + 1))
    return indptr.astype(np.int64), i[order].astype(np.int64)


def train_and_export_served(clean: pd.DataFrame, store, version: str, config,
                            users: pd.DataFrame | None, items: pd.DataFrame | None, k: int,
                            meta: dict) -> dict:
    """Trains the served recommender (fit_served on every valid row) and commits its bundle.

    Besides the common files (item_ids.json = the model's item vocabulary, user_ids.json,
    item_vectors.npy = the two-tower item embeddings, popular.json), it holds what the
    precompute needs per warm user (history_indptr/items.npy, user_tokens.npy) and
    `served/`: models.served.export's folder (served.npz/json, the SavedModels user_tower/,
    item_embeddings/ and ranker/, their LiteRT conversions).

    Returns:
        {"users", "items", "index", "litert_max_abs_diff"}.
    """
    from models.served import export
    from models.served_fit import fit_served

    model = fit_served(clean, users, items, config)
    item_vocab = model.tower.data.items
    user_vocab = Vocab.build(clean["user_id"])
    indptr, hist = history_csr(clean, user_vocab, item_vocab)
    popular = clean["item_id"].value_counts().reindex(item_vocab.ids).dropna()
    popular = popular.sort_values(ascending=False, kind="stable")

    writer = BundleWriter(store, version)
    writer.put_json("item_ids.json", [str(x) for x in item_vocab.ids])
    writer.put_json("user_ids.json", [str(x) for x in user_vocab.ids])
    writer.put_array("item_vectors.npy", model.tower.item_vectors.astype(np.float32))
    writer.put_array("history_indptr.npy", indptr)
    writer.put_array("history_items.npy", hist)
    writer.put_array("user_tokens.npy", model.tower.data.user_matrix(list(user_vocab.ids)))
    writer.put_json("popular.json", [str(x) for x in popular.index[:1000]])
    with tempfile.TemporaryDirectory() as tmp:
        exported = export(model, os.path.join(tmp, "served"))
        writer.put_dir("served", exported["path"])
    stats = {"users": len(user_vocab), "items": len(item_vocab),
             "index": {"type": "IndexFlatIP", "recall@k": 1.0, "k": config.n_tower},
             "litert_max_abs_diff": exported["litert_max_abs_diff"]}
    writer.commit({"model": "served", "config": asdict(config), "k": k, **stats, **meta})
    return stats
