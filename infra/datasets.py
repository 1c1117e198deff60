"""Dataset loaders returning `models.schema.Dataset`, all reading through pyarrow.

    load_dataset("movielens:../shared/datasets/ml-100k")   # 100K, 1M or latest(-small)
    load_dataset("csv:data/")   # interactions.* + optional users.*, items.* (docs/SCHEMA.md)
    load_dataset("parquet:data/interactions.parquet")
    load_dataset("synthetic:users=1000,items=500,seed=0")
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from infra.sources import resolve_input
from models.rows import INTERACTION_COLUMNS, clean_id
from models.schema import Dataset, SchemaError, check_columns, drop_duplicates, validate_batch

logger = logging.getLogger(__name__)

SCHEMES = ("movielens", "parquet", "csv", "synthetic")
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
MOVIELENS_LAYOUTS = {"u.data": "100k", "ratings.dat": "1m", "ratings.csv": "latest"}


def load_dataset(spec: str) -> Dataset:
    """Loads `SCHEME:PATH` (or `synthetic:key=value,...`); see the module docstring."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"dataset spec {spec!r}: expected one of {[s + ':' for s in SCHEMES]}"
                         " followed by a path, e.g. movielens:../shared/datasets/ml-100k")
    if scheme == "movielens":
        return load_movielens(rest)
    if scheme == "synthetic":
        from models.synthetic import generate  # lazy: only this scheme needs it

        return generate(**parse_kwargs(rest))
    return load_tables(rest, scheme)


def parse_kwargs(text: str) -> dict:
    """'users=10,items=5,seed=1,alpha=0.5' -> {'n_users': 10, 'n_items': 5, 'seed': 1, ...}."""
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"synthetic option {part!r}: expected key=value")
        key = {"users": "n_users", "items": "n_items"}.get(key.strip(), key.strip())
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError as err:
                raise ValueError(f"synthetic option {part!r}: value must be a number") from err
    return out


def load_tables(path: str, fmt: str = "csv") -> Dataset:
    """The input layout of `recsys nightly --input` (infra.sources.resolve_input): a folder
    with interactions.{parquet,csv} or interactions/ part files and optional users.*,
    items.*; a folder of part files; one file or a glob."""
    layout = resolve_input(path)
    if os.path.isdir(path):
        name = os.path.basename(os.path.normpath(path))
    else:
        name = os.path.splitext(os.path.basename(path))[0]
    dead: list[dict] = []
    parts = [to_interactions(read_table(p, INTERACTION_COLUMNS, fmt), p, dead)
             for p in layout.interactions]
    interactions = parts[0]
    if len(parts) > 1:
        interactions, copies = drop_duplicates(pd.concat(parts, ignore_index=True))
        dead += copies
    users, items = layout.users, layout.items
    return Dataset(
        interactions=interactions,
        users=_ids_as_str(read_table(users, ("user_id",), fmt), "user_id") if users else None,
        items=_ids_as_str(read_table(items, ("item_id",), fmt), "item_id") if items else None,
        name=name,
        extras={"dead_letters": dead},
    )


def read_table(path: str, required: tuple[str, ...], fmt: str = "csv") -> pd.DataFrame:
    """Reads a Parquet or CSV file with pyarrow; ids stay strings; checks `required` columns.

    Raises:
        SchemaError: the file is missing or unreadable, or lacks a required column.
    """
    is_parquet = path.endswith(".parquet") or (fmt == "parquet" and not path.endswith(".csv"))
    try:
        if is_parquet:
            table = pq.read_table(path)
        else:
            id_types = {c: pa.string() for c in ("user_id", "item_id", "event_type")}
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types=id_types, strings_can_be_null=True))
    except (OSError, pa.ArrowException) as err:
        raise SchemaError(f"{path}: cannot read as {'Parquet' if is_parquet else 'CSV'} "
                          f"(expected columns {list(required)}): {err}") from err
    check_columns(path, table.column_names, required)
    return table.to_pandas()


def _ids_as_str(df: pd.DataFrame, column: str) -> pd.DataFrame:
    df = df.copy()
    df[column] = _id_series(df[column])
    return df


def _id_series(ids: pd.Series) -> pd.Series:
    """Ids by the interactions' rule (models.rows.clean_id: stripped text, 1.0 -> '1'), None
    where it refuses one (missing, "" or blank, too long, ...); fast for integer columns."""
    if pd.api.types.is_integer_dtype(ids) and not ids.isna().any():
        return ids.astype(str)
    return ids.map(lambda value: clean_id(value)[0])


def to_interactions(df: pd.DataFrame, path: str = "<frame>",
                    dead_letters: list | None = None) -> pd.DataFrame:
    """Canonical interactions (models.schema.validate_batch, then drop_duplicates: the nightly
    job's rules); invalid rows and exact duplicates are appended to `dead_letters` with their
    reason, never silently dropped.

    Raises:
        SchemaError: naming the file, when a required column is missing.
    """
    clean, dead = validate_batch(df, path)
    clean, copies = drop_duplicates(clean, path)
    dead += copies
    if dead:
        logger.warning("%s: %d invalid row(s) set aside as dead letters", path, len(dead))
        if dead_letters is not None:
            dead_letters.extend(dead)
    return clean


def read_delimited(path: str, names: list[str], delimiter: str) -> pd.DataFrame:
    """A header-less Latin-1 file with a one- or multi-character delimiter, via pyarrow."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
    except OSError as err:
        raise SchemaError(f"{path}: cannot read (expected columns {names}): {err}") from err
    if len(delimiter) > 1:
        text = text.replace(delimiter, "\t")
        delimiter = "\t"
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
    except pa.ArrowException as err:
        raise SchemaError(f"{path}: expected {len(names)} columns {names} separated by "
                          f"{delimiter!r}: {err}") from err
    return table.to_pandas()


def load_movielens(folder: str) -> Dataset:
    """MovieLens 100K (u.data), 1M (ratings.dat) or latest/latest-small (ratings.csv).

    Returns:
        Interactions with event_type "rating" and weight = rating; items with `title`,
        `genres` ('|'-joined), `year` and, for latest, `tags` ('|'-joined, raw tags with
        timestamps in `extras["tags"]`); users with age, gender, occupation, zip_prefix.
    """
    layout = next((v for k, v in MOVIELENS_LAYOUTS.items()
                   if os.path.exists(os.path.join(folder, k))), None)
    if layout is None:
        raise SchemaError(f"{folder}: not a MovieLens folder; expected one of "
                          f"{list(MOVIELENS_LAYOUTS)} in it")
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    name = os.path.basename(os.path.normpath(folder))
    extras: dict = {}
    if layout == "100k":
        ratings = read_delimited(path("u.data"), ["user_id", "item_id", "rating", "timestamp"],
                                 "\t")
        users = read_delimited(path("u.user"), ["user_id", "age", "gender", "occupation", "zip"],
                               "|") if os.path.exists(path("u.user")) else None
        items = _items_100k(path("u.item"), path("u.genre"))
    elif layout == "1m":
        ratings = read_delimited(path("ratings.dat"),
                                 ["user_id", "item_id", "rating", "timestamp"], "::")
        users = None
        if os.path.exists(path("users.dat")):
            users = read_delimited(path("users.dat"),
                                   ["user_id", "gender", "age", "occupation", "zip"], "::")
        items = None
        if os.path.exists(path("movies.dat")):
            items = read_delimited(path("movies.dat"), ["item_id", "title", "genres"], "::")
    else:
        ratings = _rename(read_table(path("ratings.csv"), ("userId", "movieId", "rating",
                                                           "timestamp")))
        users = None
        items = None
        if os.path.exists(path("movies.csv")):
            items = _rename(read_table(path("movies.csv"), ("movieId", "title", "genres")))
        if os.path.exists(path("tags.csv")):
            tags = _rename(read_table(path("tags.csv"), ("userId", "movieId", "tag",
                                                         "timestamp")))
            extras["tags"] = tags.astype({"timestamp": "int64"})
    interactions = to_interactions(
        ratings.assign(event_type="rating", weight=pd.to_numeric(ratings["rating"])),
        path(next(k for k, v in MOVIELENS_LAYOUTS.items() if v == layout)),
        extras.setdefault("dead_letters", []))
    if items is not None:
        items = _item_features(items, extras.get("tags"))
    if users is not None:
        users = _user_features(users)
    return Dataset(interactions, users, items, name=name, extras=extras)


def _rename(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns={"userId": "user_id", "movieId": "item_id"})
    for column in ("user_id", "item_id"):
        if column in df:
            df = _ids_as_str(df, column)
    return df


def _items_100k(item_path: str, genre_path: str) -> pd.DataFrame | None:
    if not os.path.exists(item_path):
        return None
    genres = list(GENRES_100K)
    if os.path.exists(genre_path):
        genres = list(read_delimited(genre_path, ["genre", "code"], "|")["genre"])
    raw = read_delimited(item_path, ["item_id", "title", "release_date", "video_release_date",
                                     "url", *genres], "|")
    flags = raw[genres].astype(int).to_numpy().astype(bool)
    return pd.DataFrame({
        "item_id": raw["item_id"],
        "title": raw["title"],
        "genres": ["|".join(g for g, on in zip(genres, row, strict=True) if on) for row in flags],
        "year": pd.to_numeric(raw["release_date"].str[-4:], errors="coerce").astype("Int64"),
    })


def _item_features(items: pd.DataFrame, tags: pd.DataFrame | None) -> pd.DataFrame:
    if "year" not in items:  # 1M and latest: the year closes the title, e.g. "Heat (1995)"
        year = items["title"].str.extract(r"\((\d{4})\)\s*$")[0]
        items = items.assign(year=pd.to_numeric(year, errors="coerce").astype("Int64"))
    items = items.assign(genres=items["genres"].fillna("").replace("(no genres listed)", ""))
    if tags is not None:
        items = items.assign(tags=item_tags(tags).reindex(items["item_id"]).fillna("").values)
    return items.reset_index(drop=True)


def item_tags(tags: pd.DataFrame, before: float | None = None) -> pd.Series:
    """Distinct lower-cased tags per item_id, '|'-joined, from tags with timestamp < before."""
    if before is not None:
        tags = tags[tags["timestamp"] < before]
    clean = tags.assign(tag=tags["tag"].astype(str).str.strip().str.lower().str.replace(
        "|", " ")).drop_duplicates(["item_id", "tag"])
    return clean.groupby("item_id", sort=False)["tag"].agg("|".join)


def _user_features(users: pd.DataFrame) -> pd.DataFrame:
    zips = users["zip"].fillna("").astype(str).str.strip()
    # US zip codes keep their first digit (region); others (Canada) their first 3 characters.
    prefix = np.where(zips.str[:1].str.isdigit(), zips.str[:1], zips.str[:3].str.upper())
    return pd.DataFrame({
        "user_id": users["user_id"],
        "age": pd.to_numeric(users["age"], errors="coerce").astype("Int64"),
        "gender": users["gender"],
        "occupation": users["occupation"],
        "zip_prefix": prefix,
    })
