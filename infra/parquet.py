"""Parquet files in memory: the one writer of the nightly job's, the events drain's and the
evaluation's tables, and the dead-letter layout they share (docs/SCHEMA.md).

A dead letter is a row set aside with its reason, {origin, "reason", "row"}; its first column
says where the row came from:

    DEAD_SCHEMA         file: the input file (the nightly job, the dataset loaders; "" for
                        exact duplicates, found where the clean rows are gathered)
    STREAM_DEAD_SCHEMA  stream_id: the Redis stream entry (the events drain, infra/events_log.py)
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq


def _dead_letters(origin: str) -> pa.Schema:
    return pa.schema([(origin, pa.string()), ("reason", pa.string()), ("row", pa.string())])


DEAD_SCHEMA = _dead_letters("file")
STREAM_DEAD_SCHEMA = _dead_letters("stream_id")


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    """`rows` as one Parquet file of `schema`.

    Raises:
        pyarrow.ArrowException (ArrowInvalid, ArrowTypeError, ...): a value does not fit its
            column's type.
    """
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()
