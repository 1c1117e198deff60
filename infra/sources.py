"""Reading input files (Parquet or CSV, local or s3://) through pyarrow, and which files an
input spec names: one layout for `recsys nightly --input` and `recsys evaluate --dataset`
(`resolve_input`; docs/SCHEMA.md)."""

from __future__ import annotations

import glob
import io
import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from infra.store import S3Store
from models.rows import INTERACTION_COLUMNS, clean_id
from models.schema import SchemaError, check_columns

log = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".csv")
# The tables of an input folder, each read by name (resolve_input; docs/SCHEMA.md).
LAYOUT_TABLES = ("interactions", "users", "items")
# Read as text, so that ids keep leading zeros and the validator (models/rows.py) parses the rest.
CSV_TEXT_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "weight")


@dataclass(frozen=True)
class InputLayout:
    """What an input spec names: the interactions files and the feature tables' files."""

    interactions: list[str]
    users: str | None = None  # the users table; None: none in the folder
    items: str | None = None


def resolve_input(spec: str) -> InputLayout:
    """The files of `--input` (`recsys nightly`) and of `--dataset csv:`/`parquet:`
    (`recsys evaluate`), by the one layout of docs/SCHEMA.md.

    A folder holding `interactions.csv` or `.parquet`, or a folder `interactions/` of part
    files, is a layout folder: those are the interactions, and `users.*`/`items.*` next to
    them the feature tables (other files are ignored, with a warning). A folder without any
    of these names is a folder of part files: all its .parquet and .csv files (an S3
    prefix: at any depth) are interactions. A file or a glob is interactions only. Local
    or s3://.

    Raises:
        SchemaError: nothing to read, a table found twice (users.csv and users.parquet), or a
            folder holding users.* or items.* but no interactions.* (one line saying how to
            name them).
    """
    if spec.startswith("s3://"):
        if spec.endswith(SUFFIXES):
            return InputLayout([spec])
        store = S3Store(spec)
        return _layout(spec, store.list(""), lambda name: f"{store.uri}/{name}")
    if os.path.isdir(spec):
        names = sorted(os.listdir(spec))
        parts = os.path.join(spec, "interactions")
        if os.path.isdir(parts):
            names += [f"interactions/{f}" for f in sorted(os.listdir(parts))]
        return _layout(spec, names, lambda name: os.path.join(spec, *name.split("/")))
    paths = sorted(glob.glob(spec))
    if not paths:
        raise _nothing_found(spec)
    return InputLayout(paths)


def expand_paths(spec: str) -> list[str]:
    """The interactions files of an input spec (`resolve_input`)."""
    return resolve_input(spec).interactions


def _nothing_found(spec: str) -> SchemaError:
    return SchemaError(f"{spec}: no input file found (expected a .parquet or .csv file, a "
                       "folder holding interactions.* and optional users.*, items.* or part "
                       "files, or a glob; see docs/SCHEMA.md)")


def _layout(folder: str, names: list[str], join) -> InputLayout:
    """The layout of a folder from its files' names relative to it ('interactions/p1.csv')."""
    tables = [n for n in names if n.endswith(SUFFIXES)]
    top = {stem: [n for n in tables if n in (stem + ".csv", stem + ".parquet")]
           for stem in LAYOUT_TABLES}
    parts = [n for n in tables if n.startswith("interactions/")]
    if parts:
        top["interactions"].append("interactions/")
    for stem, found in top.items():
        if len(found) > 1:
            raise SchemaError(f"{folder}: holds both {' and '.join(found)}; keep one "
                              f"{stem} table (docs/SCHEMA.md)")
    if not top["interactions"]:
        features = top["users"] + top["items"]
        if features:
            raise SchemaError(
                f"{folder}: holds {' and '.join(features)} but no interactions.csv, "
                "interactions.parquet or interactions/ folder of part files; name the "
                "interactions so (docs/SCHEMA.md), or pass their file or a glob")
        if not tables:
            raise _nothing_found(folder)
        return InputLayout([join(n) for n in tables])  # a folder of part files
    inter = parts or top["interactions"]
    ignored = sorted(set(tables) - set(inter) - {n for f in top.values() for n in f})
    if ignored:
        log.warning("%s: read as interactions.*, users.*, items.*; ignoring %s", folder,
                    ignored)
    users, items = (join(top[t][0]) if top[t] else None for t in ("users", "items"))
    return InputLayout([join(n) for n in inter], users, items)


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
