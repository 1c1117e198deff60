"""Reading input files (Parquet or CSV, local or s3://) row by row through pyarrow."""

from __future__ import annotations

import glob
import io
import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from infra.store import S3Store
from models.rows import INTERACTION_COLUMNS, clean_id
from models.schema import SchemaError, check_columns

SUFFIXES = (".parquet", ".csv")
# Read as text, so that ids keep leading zeros and the validator (models/rows.py) parses the rest.
CSV_TEXT_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "weight")


def expand_paths(spec: str) -> list[str]:
    """A file, a folder (its *.parquet and *.csv files) or a glob; s3:// prefixes too."""
    if spec.startswith("s3://"):
        store = S3Store(spec.rsplit("/", 1)[0] if spec.endswith(SUFFIXES) else spec)
        if spec.endswith(SUFFIXES):
            return [spec]
        return [f"{store.uri}/{k}" for k in store.list("") if k.endswith(SUFFIXES)]
    if os.path.isdir(spec):
        paths = [os.path.join(spec, f) for f in sorted(os.listdir(spec)) if f.endswith(SUFFIXES)]
    else:
        paths = sorted(glob.glob(spec))
    if not paths:
        raise SchemaError(f"{spec}: no input file found (expected a .parquet or .csv file, a "
                          "folder holding some, or a glob)")
    return paths


def read_table(path: str, malformed: list[dict] | None = None) -> pa.Table:
    """Reads one file; SchemaError naming the file if it is missing or unreadable.

    Args:
        path: a local or s3:// .parquet or .csv file.
        malformed: where CSV lines with the wrong number of fields go, as dead letters
            {"file", "reason": "malformed CSV line: expected N fields, got M", "row": the
            line's text}, the rest of the file being read; None: such a line fails the read.
    """
    try:
        if path.startswith("s3://"):
            parent, _, name = path.rpartition("/")
            source = io.BytesIO(S3Store(parent).get_bytes(name))
        else:
            source = path
        if path.endswith(".csv"):
            convert = pacsv.ConvertOptions(
                column_types={c: pa.string() for c in CSV_TEXT_COLUMNS})
            parse = pacsv.ParseOptions()
            if malformed is not None:
                def skip(row) -> str:
                    malformed.append({"file": path, "row": row.text, "reason": (
                        f"malformed CSV line: expected {row.expected_columns} fields, "
                        f"got {row.actual_columns}")})
                    return "skip"

                parse = pacsv.ParseOptions(invalid_row_handler=skip)
            return pacsv.read_csv(source, parse_options=parse, convert_options=convert)
        return pq.read_table(source)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path}: cannot read the file ({e})") from e


def read_interaction_chunks(path: str, chunk_rows: int = 100_000):
    """Yields (path, pandas DataFrame) chunks of an interactions file, columns checked, then,
    if the file is a CSV with malformed lines, (path, [their dead letters]) (see read_table).
    """
    malformed: list[dict] = []
    table = read_table(path, malformed)
    check_columns(path, table.column_names, INTERACTION_COLUMNS)
    for batch in table.to_batches(max_chunksize=chunk_rows):
        yield path, batch.to_pandas()
    if malformed:
        yield path, malformed


def read_features(path: str | None, key: str):
    """A users (key "user_id") or items ("item_id") table of features for the served model:
    one .parquet/.csv file, local or s3://; ids as the interactions' (models.rows.clean_id: a
    float 7.0 is "7", as in the interactions), rows without a valid id dropped.

    Returns:
        A pandas DataFrame, or None without a path.

    Raises:
        SchemaError: the file is unreadable or has no `key` column.
    """
    if not path:
        return None
    table = read_table(path)
    check_columns(path, table.column_names, (key,))
    df = table.to_pandas()
    df[key] = [clean_id(value, key)[0] for value in df[key]]
    return df[df[key].notna()].reset_index(drop=True)
