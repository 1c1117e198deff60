"""Id vocabularies (id <-> dense index) and interaction weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.rows import DEFAULT_EVENT_WEIGHTS
from models.schema import natural_key

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Vocab:
    """Sorted ids (natural order: numeric ids numerically), so index order = id order:
    `ids[j]` is index j and `index[id] == j` (the models' user and item vocabularies, the
    baselines' train catalog)."""

    ids: np.ndarray  # [n] object (str)

    @classmethod
    def build(cls, ids: Iterable) -> Vocab:
        return cls(np.array(sorted({str(x) for x in ids}, key=natural_key), dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def index(self) -> dict[str, int]:
        idx = self.__dict__.get("_index")
        if idx is None:
            idx = {k: n for n, k in enumerate(self.ids)}
            object.__setattr__(self, "_index", idx)
        return idx

    def lookup(self, ids: Iterable) -> np.ndarray:
        """Returns [n] int64 indices, -1 for unknown ids."""
        idx = self.index
        return np.fromiter((idx.get(str(x), -1) for x in ids), dtype=np.int64)

    def known(self, ids: Iterable) -> np.ndarray:
        """Indices of the known ids among `ids`, in their order (unknown ones dropped)."""
        found = self.lookup(ids)
        return found[found >= 0]


def interaction_weights(interactions: pd.DataFrame,
                        event_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weight of each event: its `weight` if set, else its event type's weight, else 1.

    Returns:
        [num_events] float32.
    """
    event_weights = DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights
    n = len(interactions)
    w = np.ones(n, np.float32)
    if "event_type" in interactions:
        by_type = interactions["event_type"].map(event_weights)
        w = np.where(by_type.notna(), by_type.to_numpy(dtype=np.float64, na_value=1.0), w)
    if "weight" in interactions:
        explicit = interactions["weight"].to_numpy(dtype=np.float64, na_value=np.nan)
        w = np.where(np.isnan(explicit), w, explicit)
    return w.astype(np.float32)
