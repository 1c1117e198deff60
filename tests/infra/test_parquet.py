"""infra.parquet: the shared writer and the two dead-letter layouts, read back with pyarrow."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.parquet import DEAD_SCHEMA, STREAM_DEAD_SCHEMA, parquet_bytes


def _read(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


@pytest.mark.parametrize(("schema", "origin", "where"), [(DEAD_SCHEMA, "file", "a.csv"),
                                                         (STREAM_DEAD_SCHEMA, "stream_id", "1-0")])
def test_dead_letters_round_trip_with_their_origin_column(schema, origin, where):
    rows = [{origin: where, "reason": "missing item_id", "row": '{"user_id": "u"}'},
            {origin: "", "reason": "exact duplicate", "row": "{}"}]
    table = _read(parquet_bytes(rows, schema))
    assert table.schema == schema
    assert table.column_names == [origin, "reason", "row"]
    assert table.to_pylist() == rows


def test_no_rows_still_write_the_columns():
    assert _read(parquet_bytes([], DEAD_SCHEMA)).schema == DEAD_SCHEMA


def test_a_value_of_the_wrong_type_is_refused():
    with pytest.raises(pa.ArrowException):
        parquet_bytes([{"file": "a", "reason": "r", "row": {"not": "text"}}], DEAD_SCHEMA)
