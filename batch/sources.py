"""Reading input files (Parquet or CSV, local or s3://) row by row through pyarrow."""

from __future__ import annotations

import glob
import io
import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from infra.store import S3Store
from models.schema import INTERACTION_COLUMNS, SchemaError, check_columns

SUFFIXES = (".parquet", ".csv")


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


def read_table(path: str) -> pa.Table:
    """Reads one file; SchemaError naming the file if it is missing or unreadable."""
    try:
        if path.startswith("s3://"):
            parent, _, name = path.rpartition("/")
            source = io.BytesIO(S3Store(parent).get_bytes(name))
        else:
            source = path
        if path.endswith(".csv"):
            # Ids stay strings; other columns are parsed by the validator, not guessed here.
            opts = pacsv.ConvertOptions(column_types={"user_id": pa.string(),
                                                      "item_id": pa.string(),
                                                      "timestamp": pa.string(),
                                                      "weight": pa.string()})
            return pacsv.read_csv(source, convert_options=opts)
        return pq.read_table(source)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path}: cannot read the file ({e})") from e


def read_interaction_chunks(path: str, chunk_rows: int = 100_000):
    """Yields (path, pandas DataFrame) chunks of an interactions file, columns checked."""
    table = read_table(path)
    check_columns(path, table.column_names, INTERACTION_COLUMNS)
    for batch in table.to_batches(max_chunksize=chunk_rows):
        yield path, batch.to_pandas()


def read_features(path: str | None, key: str):
    """A users (key "user_id") or items ("item_id") table of features for the served model:
    one .parquet/.csv file, local or s3://; ids as strings, rows without an id dropped.

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
    df = df[df[key].notna()].copy()
    df[key] = df[key].astype(str)
    return df.reset_index(drop=True)
