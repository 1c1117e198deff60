"""Preprocessing fitted on the train side only: vocabularies, timestamp normalisation and
per-pair interaction weights (event-type weights summed per user-item pair, as the seed's
pivot table). Applying it to later data never changes the fitted statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.rows import DEFAULT_EVENT_WEIGHTS
from models.vocab import Vocab, interaction_weights


def parse_event_weights(text: str) -> dict[str, float]:
    """'view=1,click=2,purchase=5' -> {"view": 1.0, ...}; ValueError says what is wrong."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(f"event weights: expected NAME=NUMBER[,NAME=NUMBER...], got {part!r}")
    return out


@dataclass(frozen=True)
class Preprocessor:
    users: Vocab
    items: Vocab
    ts_mean: float
    ts_std: float
    event_weights: Mapping[str, float]

    @classmethod
    def fit(cls, train: pd.DataFrame,
            event_weights: Mapping[str, float] | None = None) -> Preprocessor:
        ts = train["timestamp"].to_numpy(np.float64)
        return cls(Vocab.build(train["user_id"]), Vocab.build(train["item_id"]),
                   float(ts.mean()), float(ts.std()) or 1.0,
                   dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights))

    def normalise_timestamps(self, timestamps) -> np.ndarray:
        """[n] timestamps -> [n] float32 standardised with the train side's mean and std."""
        return ((np.asarray(timestamps, np.float64) - self.ts_mean) / self.ts_std).astype(
            np.float32)

    def pairs(self, interactions: pd.DataFrame) -> pd.DataFrame:
        """Distinct known (user, item) index pairs with summed weights and last timestamp."""
        df = pd.DataFrame({"u": self.users.lookup(interactions["user_id"]),
                           "i": self.items.lookup(interactions["item_id"]),
                           "w": interaction_weights(interactions, self.event_weights),
                           "t": interactions["timestamp"].to_numpy()})
        df = df[(df.u >= 0) & (df.i >= 0)]
        return df.groupby(["u", "i"], as_index=False).agg(w=("w", "sum"), t=("t", "max"))
