"""Composite PTransforms and thin DoFns of the nightly job."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from batch.options import is_local
from infra.sources import read_interaction_chunks
from models.rows import DEFAULT_EVENT_WEIGHTS
from models.schema import CLEAN_SCHEMA, validate_batch

DEAD = "dead"


class ReadInteractions(beam.PTransform):
    """Every input file as (path, pandas DataFrame) chunks, and (path, [dead letters]) for
    CSV lines that could not be parsed (infra/sources.read_interaction_chunks); files fan out
    to workers."""

    def __init__(self, paths: list[str]):
        super().__init__()
        self.paths = paths

    def expand(self, pbegin):
        return (pbegin | "InputFiles" >> beam.Create(self.paths)
                | "Spread" >> beam.Reshuffle()
                | "ReadChunks" >> beam.FlatMap(read_interaction_chunks))


def validate_chunk(path: str, rows: pd.DataFrame | list[dict], event_weights: Mapping[str, float]
                   ) -> tuple[pa.Table | None, list[dict]]:
    """One chunk of ReadInteractions' output -> (its clean rows as a CLEAN_SCHEMA Table, None if
    there is none; its dead letters).

    The rules are models/rows.py's, applied to the whole chunk by models.schema.validate_batch:
    the same as the functions' and the events drain's.

    Args:
        rows: a file's rows, or the dead letters of the lines its reader could not parse.
    """
    if isinstance(rows, list):
        return None, rows
    clean, dead = validate_batch(rows, path, event_weights)
    if not len(clean):
        return None, dead
    return pa.Table.from_pandas(clean, schema=CLEAN_SCHEMA, preserve_index=False), dead


class ValidateFn(beam.DoFn):
    """Clean rows of a chunk to the main output (a pyarrow Table); invalid ones, and the
    reader's dead letters (malformed CSV lines), to `dead` (`validate_chunk`)."""

    def __init__(self, event_weights: Mapping[str, float] | None = None):
        self.event_weights = DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights

    def process(self, chunk):
        path, rows = chunk
        clean, dead = validate_chunk(path, rows, self.event_weights)
        for d in dead:
            Metrics.counter("dead_letters", d["reason"]).inc()
            yield beam.pvalue.TaggedOutput(DEAD, d)
        if clean is not None:
            Metrics.counter("validate", "valid").inc(clean.num_rows)
            yield clean


class ValidateInteractions(beam.PTransform):
    """Chunks -> Validated(valid: pyarrow Tables of clean rows, dead: dead-letter dicts).

    Exact duplicates are removed where the clean data is gathered (models.schema
    `drop_duplicates`), since a copy may sit in another file or chunk.
    """

    def __init__(self, event_weights: Mapping[str, float] | None = None):
        super().__init__()
        self.event_weights = event_weights

    def expand(self, chunks):
        out = chunks | "Validate" >> beam.ParDo(ValidateFn(self.event_weights)).with_outputs(
            DEAD, main="valid")
        return Validated(out.valid, out[DEAD])


class Validated(NamedTuple):
    """The outputs of ValidateInteractions."""

    valid: beam.PCollection  # pyarrow Tables of clean rows (CLEAN_SCHEMA)
    dead: beam.PCollection  # {"file", "reason", "row"} dead letters


class ScoreFn(beam.DoFn):
    """Lists for a shard of users from the bundle's own kind (its manifest's `model`):
    models.kinds.get(model).batch_scorer, built once per worker in setup() (the bundle, and
    MF's index and seen items or the served model and histories, load there).

    Input: (shard_id, users): user indices, a `range` (sliced) or an int array (gathered).
    Output: (shard_id, user_ids [n], items [n, k], scores [n, k]).

    Args:
        threads: Faiss (OpenMP) threads of each DoFn instance; None leaves Faiss' default
            (every core). Where the runner runs several bundles at once on a machine, their
            threads together should not exceed its cores (see `faiss_threads`).
    """

    def __init__(self, store_uri: str, version: str, k: int, threads: int | None = None):
        self.store_uri, self.version, self.k, self.threads = store_uri, version, k, threads

    def setup(self):
        from infra.bundle import read_bundle
        from infra.store import open_store
        from models import kinds

        bundle = read_bundle(open_store(self.store_uri), self.version)
        self.scorer = kinds.get(bundle.manifest.get("model")).batch_scorer(bundle)

    def process(self, shard):
        _set_faiss_threads(self.threads)
        shard_id, users = shard
        yield (shard_id, *self.scorer.score(users, self.k))


def _set_faiss_threads(threads: int | None) -> None:
    """Faiss' OpenMP threads for the calling thread (the setting is per thread, and a
    runner may call setup() and process() on different ones); None leaves them be."""
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)


class WriteListsFn(beam.DoFn):
    """Writes a shard's lists to Redis under the version's namespace; yields the count."""

    def __init__(self, redis_url: str, namespace: str, version: str):
        self.redis_url, self.namespace, self.version = redis_url, namespace, version

    def setup(self):
        from infra.redis.lists import ServedLists

        self.lists = ServedLists.from_url(self.redis_url, self.namespace)

    def process(self, shard):
        shard_id, user_ids, items, scores = shard
        n = self.lists.write_shard(self.version, str(shard_id), user_ids, items, scores)
        Metrics.counter("publish", "users").inc(n)
        yield n


class Retrieve(beam.PTransform):
    """Shards (shard_id, users) -> (shard_id, user_ids, items, scores), by the bundle's kind
    (MF: Faiss -> rules; served: candidates -> ranker -> rules)."""

    def __init__(self, store_uri: str, version: str, k: int, threads: int | None = None):
        super().__init__()
        self.fn = ScoreFn(store_uri, version, k, threads)

    def expand(self, shards):
        return (shards | "Spread" >> beam.Reshuffle()
                | "SearchAndRules" >> beam.ParDo(self.fn))


class Precompute(beam.PTransform):
    """Shards -> retrieve (-> rank) -> rules -> Redis lists under the version; outputs counts."""

    def __init__(self, store_uri: str, version: str, k: int, redis_url: str, namespace: str,
                 threads: int | None = None):
        super().__init__()
        self.retrieve = Retrieve(store_uri, version, k, threads)
        self.write = WriteListsFn(redis_url, namespace, version)

    def expand(self, shards):
        return shards | "Retrieve" >> self.retrieve | "WriteRedis" >> beam.ParDo(self.write)


def faiss_threads(options) -> int | None:
    """Faiss threads per DoFn instance for these pipeline options: the DirectRunner's cores
    shared among its parallel workers (processes or threads); one on other runners, whose
    Python workers run one SDK process per core. The pipeline option `--faiss_threads`
    (NightlyOptions) overrides it."""
    if not is_local(options.view_as(StandardOptions).runner):
        return 1
    workers = options.view_as(DirectOptions).direct_num_workers or 1
    return max(1, (os.cpu_count() or 1) // workers)


def user_shards(users: int | np.ndarray, shard_size: int) -> list[tuple[int, range | np.ndarray]]:
    """(shard_id, users) shards of at most shard_size users.

    Args:
        users: n (users 0..n-1, as `range`s) or [n] ascending user indices (as arrays).
    """
    if isinstance(users, int | np.integer):
        return [(s, range(lo, min(lo + shard_size, users)))
                for s, lo in enumerate(range(0, users, shard_size))]
    return [(s, users[lo:lo + shard_size])
            for s, lo in enumerate(range(0, len(users), shard_size))]
