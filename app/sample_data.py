"""`recsys sample-data DIR`: a small dataset in the input layout, to try the project on a fresh
clone before exporting your own data (docs/QUICKSTART.md), or to upload to a bucket
(docs/DEPLOY.md). The project's one synthetic-data command.

    recsys sample-data mydata                      # mydata/interactions.csv, users.csv, items.csv
    recsys sample-data mydata --format parquet     # mydata/interactions.parquet, ...

The tables are models/synthetic.py's, written the way an export of a shop or a catalogue
would look: epoch-second timestamps, one row per event, and items with readable categories,
several per item ("Comedy|Drama", `|`-separated), which the nightly job loads into Redis for
the `?category=` filters (docs/SCHEMA.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from models.schema import Dataset
from models.synthetic import generate

# The synthetic generator's clusters (cat0, cat1, ...) by name; its default is 12 clusters.
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Documentary",
          "Animation", "Thriller", "Western", "Musical", "Crime")
SECOND_GENRE_SHARE = 0.4  # items that get a second category besides their cluster's
TABLES = ("interactions", "users", "items")
FORMATS = ("csv", "parquet")


def named_categories(items: pd.DataFrame, seed: int) -> pd.Series:
    """The items' categories as genre names, `|`-separated: the cluster's genre first, then,
    for SECOND_GENRE_SHARE of the items, one other genre drawn with `seed`.

    Args:
        items: the synthetic items table; `category` holds `cat<N>`, N < len(GENRES).

    Returns:
        One string per item, e.g. "Comedy" or "Comedy|Drama".
    """
    rng = np.random.default_rng(seed)
    first = items["category"].str.removeprefix("cat").astype(int).to_numpy()
    # A draw in 1..len-1 added to the first genre never lands on it again.
    second = (first + rng.integers(1, len(GENRES), len(first))) % len(GENRES)
    extra = rng.random(len(first)) < SECOND_GENRE_SHARE
    return pd.Series([GENRES[a] + (f"|{GENRES[b]}" if more else "")
                      for a, b, more in zip(first, second, extra, strict=True)],
                     index=items.index)


def sample_dataset(n_users: int, n_items: int, seed: int) -> Dataset:
    """The synthetic dataset with named, possibly multiple, item categories."""
    data = generate(n_users, n_items, seed, n_categories=len(GENRES))
    items = data.items.assign(category=named_categories(data.items, seed))
    return Dataset(data.interactions.drop(columns="weight"), data.users, items, name=data.name)


def write_sample(out: str, n_users: int, n_items: int, seed: int, fmt: str = "csv") -> dict:
    """Writes interactions, users and items under `out`, one file each.

    Args:
        fmt: "csv" (interactions.csv, ...) or "parquet" (interactions.parquet, ...); the
            same rows either way.

    Returns:
        Table name -> {"path": the file written, "rows": its rows}.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    Path(out).mkdir(parents=True, exist_ok=True)
    dataset = sample_dataset(n_users, n_items, seed)
    written = {}
    for name in TABLES:
        frame = getattr(dataset, name)
        path = os.path.join(out, f"{name}.{fmt}")
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written[name] = {"path": path, "rows": len(frame)}
    return written
