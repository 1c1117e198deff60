"""Model kinds: one interface from training to serving, the MF/served choice made once.

A kind is a model family's whole life, looked up by name (the nightly's `--model`, a bundle
manifest's `model`); every layer calls it and none decides by kind itself:

    kind = kinds.get("served")
    config = kind.config({"served_config": '{"n_tower": 50}'})  # from the job's flags
    fit = kind.fit(TrainingData(clean, users=users, items=items), config, window=0.1)
    fit.validation          # figures of its own last temporal window, or None (the gate's)
    write_bundle(kind, fit, writer, k=100, meta={"gate": ...})   # export, manifest last
    kind.batch_scorer(bundle).score(users, k)      # the nightly precompute (batch/)
    kind.on_demand(bundle).recommend(history_idx, user_id, features, exclude_idx, k)
                                                   # fresh users in the functions (functions/)

`writer` is anything with BundleWriter's methods (infra.bundle.BundleWriter), `bundle` anything
with BundleReader's (infra.bundle.Bundle): models/ knows no store. Kinds are imported by name
on first use, and a kind module imports at module level only what its on-demand scorer needs
(no TensorFlow, Beam, pandas or pyarrow for MF), so the functions load only the kind they
serve. A new model (GraphSAGE, a re-ranker) is a module here with a `KIND` and a line in KINDS.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

KINDS = {"mf": "models.kinds.mf", "served": "models.kinds.served",
         "graphsage": "models.kinds.graphsage",
         "served_dqn": "models.kinds.served_dqn"}  # name -> module with KIND
POPULAR = 1000  # items of a bundle's popular.json


@dataclass(frozen=True)
class TrainingData:
    """What a kind trains on: the run's clean rows and, for kinds that use them, the tables.

    Attributes:
        clean: valid interactions (models.schema.CLEAN_SCHEMA columns).
        event_weights: event type -> weight (None: the schema's defaults).
        users, items: feature tables (user_id / item_id + feature columns), or None.
    """

    clean: pd.DataFrame
    event_weights: Mapping[str, float] | None = None
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None


class BundleWriter(Protocol):
    """Where `export` writes (infra.bundle.BundleWriter): names are paths in the bundle."""

    def put(self, name: str, data: bytes) -> None: ...
    def put_json(self, name: str, obj: Any) -> None: ...
    def put_array(self, name: str, a: np.ndarray) -> None: ...
    def put_dir(self, name: str, local_dir: str) -> None: ...
    def commit(self, meta: dict) -> dict: ...


class BundleReader(Protocol):
    """A committed bundle, checksums verified (infra.bundle.Bundle)."""

    version: str
    manifest: dict
    item_ids: np.ndarray  # [num_items] object
    user_ids: np.ndarray  # [num_users] object (empty if read without users)

    def read(self, name: str) -> bytes: ...
    def array(self, name: str) -> np.ndarray: ...
    def extract(self, folder: str, dest: str, names: list[str] | None = None) -> str: ...


class Fit(Protocol):
    """A trained model with what its bundle needs from the data."""

    validation: dict | None  # {"window", "cases", "warm", "fresh", "ndcg@10",
    #                            "popularity_ndcg@10"} of its last window, or None


class BatchScorer(Protocol):
    """The precompute's scorer of a bundle's warm users (one per worker)."""

    def score(self, users: range | np.ndarray, k: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lists of the bundle's users `users` (a range or ascending int indices).

        Returns:
            (user ids [n], items [n, k] int64, -1 pads; scores [n, k] float32), best first,
            each user's own items excluded.
        """


class OnDemandScorer(Protocol):
    """The functions' scorer of a user the nightly did not list (thread- and fork-safe)."""

    def recommend(self, history_idx: np.ndarray, user_id: str, features: dict | None,
                  exclude_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """([<= k] item indices, [<= k] scores) for one user, best first.

        Args:
            history_idx: [n] item indices the user touched, oldest first (all excluded).
            user_id: the user (a kind may know their last event).
            features: the request's user features {column: value}, or None.
            exclude_idx: [m] further item indices to leave out.
        """


class ModelKind(Protocol):
    """fit -> export -> batch scorer -> on-demand scorer of one model family."""

    name: str  # the manifest's `model`
    uses_features: bool  # trains on the users and items tables (--users, --items)

    def config(self, flags: Mapping[str, Any]) -> Any:
        """The kind's configuration from the job's flags; bad values raise ValueError."""

    def validation_window(self, config: Any, gate_window: float) -> float:
        """The share of the time range `fit` validates on (`gate_window`: --gate_window)."""

    def fit(self, data: TrainingData, config: Any, window: float | None = None) -> Fit:
        """Trains on every row; `window` (validation_window) None skips the validation."""

    def export(self, fit: Fit, writer: BundleWriter, k: int) -> dict:
        """Writes the kind's files; returns the manifest fields ("config", "users",
        "items", "index", ...). Raises (NonFiniteError, parity checks) before writing all."""

    def batch_scorer(self, bundle: BundleReader) -> BatchScorer: ...

    def on_demand(self, bundle: BundleReader) -> OnDemandScorer | None:
        """None when the bundle has no on-demand path (the functions then skip to popular)."""


def popular_ids(clean: pd.DataFrame, item_ids: np.ndarray) -> list[str]:
    """`item_ids` with events in `clean`, most events first (ties: the order of `item_ids`):
    a bundle's popular.json (its first POPULAR)."""
    counts = clean["item_id"].astype(str).value_counts().reindex(item_ids).dropna()
    return [str(x) for x in counts.sort_values(ascending=False, kind="stable").index]


def one_list(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An OnDemandScorer's answer from a one-query top-k ([1, k] items, -1 pads; [1, k])."""
    keep = items[0] >= 0
    return items[0][keep], scores[0][keep]


def get(name: str | None) -> ModelKind:
    """The kind called `name`, imported on first use.

    Raises:
        ValueError: no such kind, naming the known ones.
    """
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}: known kinds are {sorted(KINDS)} "
                         "(a bundle's manifest names its kind in `model`; bundles are written "
                         "by models.kinds.write_bundle)")
    return importlib.import_module(KINDS[name]).KIND


def write_bundle(kind: ModelKind, fit: Fit, writer: BundleWriter, k: int,
                 meta: dict | None = None) -> dict:
    """Exports `fit` through `writer` and commits the manifest last (the one bundle writer of
    the job, the benchmarks and the tests).

    Args:
        kind: the fit's kind; its name becomes the manifest's `model`.
        fit: what `kind.fit` returned (or a benchmark's or a test's equivalent).
        writer: an uncommitted BundleWriter.
        k: list length the bundle serves.
        meta: further manifest fields (e.g. the gate's figures).

    Returns:
        The manifest.
    """
    fields = kind.export(fit, writer, k)
    validation = getattr(fit, "validation", None)
    return writer.commit({"model": kind.name, "k": k, **fields,
                          **({"validation": validation} if validation else {}),
                          **(meta or {})})
