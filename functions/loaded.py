"""One model version as the functions serve it: its bundle, item ids and on-demand scorer.

A `Loaded` is made once per version (functions/swap.py) and replaced whole when the pointer
moves, so a request that took the old one finishes on it; only its filters are replaced in
place when their revision moves. An experiment's arm that serves another published version
has a `Loaded` of its own beside the current one (functions/arms.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from functions.filters import Filters
from infra.bundle import Bundle, read_bundle
from infra.store import ArtifactStore
from models import kinds
from models.kinds import OnDemandScorer


class NoBundleError(RuntimeError):
    """No version has been published yet, or its bundle cannot be read."""


def _one_query_threads(n: int) -> None:
    """Faiss' OpenMP threads for the one-query searches of the on-demand path. One is fastest
    where gunicorn threads and Redis share the cores: a flat search over 20,000 items took
    well under a millisecond with 1 thread and several with 2 (benchmarks/serving.py)."""
    import faiss

    faiss.omp_set_num_threads(n)


@dataclass
class Loaded:
    """One version as served."""

    version: str
    bundle: Bundle
    item_index: dict  # item id -> index
    item_names: list  # index -> item id
    scorer: OnDemandScorer | None  # the kind's; None: no on-demand path (popular instead)
    filters: Filters = field(default_factory=lambda: Filters(rev=-1))

    @property
    def on_demand(self) -> bool:
        """Whether users the nightly did not list are ranked (else they get popular items)."""
        return self.scorer is not None

    def rank(self, history_idx: np.ndarray, exclude_idx: np.ndarray, k: int,
             user_id: str = "", features: dict | None = None) -> list[tuple[int, float]]:
        """[(item index, score)] of at most k, best first, for a user known by recent items
        and request features: the kind's on-demand scorer (MF: LiteRT tower -> Faiss; served:
        retrieval -> ranker), which answers [] when they tell it nothing; [] without one.

        Args:
            history_idx: [n] item indices the user touched, oldest first (excluded).
            exclude_idx: [m] further item indices to leave out.
        """
        if self.scorer is None:
            return []
        I, S = self.scorer.recommend(history_idx, user_id, features, exclude_idx, k)
        return list(zip(I.tolist(), S.tolist(), strict=True))


def load_version(store: ArtifactStore, version: str, faiss_threads: int) -> Loaded:
    """Reads `version`'s bundle (without its users) and builds its kind's on-demand scorer.

    Raises:
        OSError, ValueError, KeyError, RuntimeError: the bundle cannot be read or served.
    """
    bundle = read_bundle(store, version, with_users=False)
    _one_query_threads(faiss_threads)
    scorer = kinds.get(bundle.manifest.get("model")).on_demand(bundle)
    return Loaded(version, bundle, bundle.item_index, bundle.item_ids.tolist(), scorer)
