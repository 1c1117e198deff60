"""The `mf` kind: MF with biases -> Faiss over [q_i, b_i] -> rules (models/mf.py).

Bundle files besides the common ones (item_ids.json, user_ids.json, item_vectors.npy,
popular.json): user_vectors.npy [num_users, dim + 1], seen_indptr.npy / seen_items.npy (each
user's distinct items as CSR, excluded from their list), items.faiss (the item index), and,
unless the fit says `tower=False`, user_tower.tflite (the LiteRT fold-in the functions run for
fresh users) and saved_model/ (models/export.py: the canonical artifact).

Module-level imports stay light (NumPy only): the functions import this module to serve an MF
bundle; training imports pandas and TensorFlow inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.histories import HISTORY, csr_rows, history_csr, history_matrix, to_csr
from models.index import IndexConfig
from models.kinds import POPULAR, BundleReader, BundleWriter, TrainingData, one_list, popular_ids
from models.topk import faiss_topk

if TYPE_CHECKING:
    import pandas as pd

    from models.mf import MFConfig, MFModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MFSettings:
    """The kind's configuration: the model's hyperparameters and its item index."""

    mf: MFConfig
    index: IndexConfig = IndexConfig()


@dataclass
class MFFit:
    """A trained MF and what its bundle needs from the data.

    Attributes:
        model: the trained model.
        popular: item ids, most events first (popular.json; at most POPULAR are written).
        seen_indptr, seen_items: [num_users + 1], [nnz] int64: each user's distinct items.
        index: how to build the item index.
        tower: also export the LiteRT user tower and the SavedModel (TensorFlow); False
            leaves the bundle without an on-demand path (fresh users get popular items).
        validation: figures of the last window (see `validate`), or None.
    """

    model: MFModel
    popular: list[str]
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    index: IndexConfig = IndexConfig()
    tower: bool = True
    validation: dict | None = None


def fit_from_factors(user_ids, item_ids, user_factors: np.ndarray, item_factors: np.ndarray,
                     item_bias: np.ndarray, popular: list[str] | None = None,
                     seen: list[np.ndarray] | None = None, tower: bool = False,
                     seed: int = 0) -> MFFit:
    """An MFFit of given factors, for a bundle with known vectors written through the one
    writer (benchmarks and tests): item vectors [q_i, b_i], user vectors [p_u, 1].

    Args:
        user_ids, item_ids: ids in the bundle's order (kept as given).
        user_factors: [num_users, dim]; item_factors: [num_items, dim]; item_bias: [num_items].
        popular: item ids, most popular first (None: by item_bias, highest first).
        seen: per user, item indices excluded from their list (None: none).
        tower: also export the LiteRT user tower (needs TensorFlow).
        seed: MFConfig's seed, recorded in the manifest.
    """
    from models.mf import MFConfig, MFModel
    from models.vocab import Vocab

    users, items = (Vocab(np.array([str(x) for x in ids], dtype=object))
                    for ids in (user_ids, item_ids))
    item_bias = np.asarray(item_bias, np.float32)
    model = MFModel(users, items, np.asarray(user_factors, np.float32),
                    np.asarray(item_factors, np.float32), np.zeros(len(users), np.float32),
                    item_bias, 0.0, 2.0, -2.0,
                    MFConfig(dim=int(np.shape(item_factors)[1]), seed=seed))
    if popular is None:
        popular = [str(x) for x in items.ids[np.argsort(-item_bias, kind="stable")]]
    indptr, flat = to_csr(seen if seen is not None else [np.zeros(0, np.int64)] * len(users))
    return MFFit(model, list(popular), indptr, flat, tower=tower)


def validate(clean: pd.DataFrame, config: MFConfig, event_weights, window: float) -> dict:
    """MF trained before the last `window` share of the time range, evaluated on it under the
    temporal-holdout protocol beside popularity (one extra MF fit on the earlier rows).

    Returns:
        {"window", "cases", "warm", "fresh", "ndcg@10", "popularity_ndcg@10"}; the NDCGs are
        None without a case.
    """
    from models.baselines import Popularity
    from models.evaluation import build_cases, evaluate_model, temporal_split
    from models.retrieval import MFRecommender

    split = temporal_split(clean, quantile=1.0 - window)
    cases = build_cases(split)
    out = {"window": window, "cases": len(cases.warm) + len(cases.fresh),
           "warm": len(cases.warm), "fresh": len(cases.fresh), "ndcg@10": None,
           "popularity_ndcg@10": None}
    if out["cases"]:
        # The guard off: the kind publishes MF's own lists (it does not apply the popularity
        # guard's fallback), so the gate must judge those, not popularity standing in for them.
        unguarded = dataclasses.replace(config, guard_window=0.0)
        for key, model in (("ndcg@10", MFRecommender(unguarded, event_weights)),
                           ("popularity_ndcg@10", Popularity())):
            out[key] = evaluate_model(model, split, cases, n_resamples=100)["all"]["ndcg@10"]
    return out


def load_index(bundle: BundleReader):
    """The bundle's Faiss item index (items.faiss)."""
    import faiss

    return faiss.deserialize_index(np.frombuffer(bundle.read("items.faiss"), dtype=np.uint8))


class MFBatchScorer:
    """Faiss search of the warm users' vectors, their seen items excluded by the rules."""

    def __init__(self, bundle: BundleReader):
        self.index = load_index(bundle)
        self.user_ids = bundle.user_ids
        self.user_vectors = bundle.array("user_vectors.npy")
        self.indptr = bundle.array("seen_indptr.npy")
        self.seen = bundle.array("seen_items.npy")

    def score(self, users: range | np.ndarray, k: int):
        rows = slice(users.start, users.stop) if isinstance(users, range) else users
        seen = csr_rows(self.indptr, self.seen, users)
        items, scores = faiss_topk(self.index, self.user_vectors[rows], k, seen)
        return self.user_ids[rows], items, scores


class LiteTower:
    """User embedding of a fresh user from the item indices they touched (LiteRT, no TF)."""

    def __init__(self, model: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self._lock = threading.Lock()  # an interpreter is not thread-safe
        self._run = Interpreter(model_content=model, num_threads=1).get_signature_runner()
        self.pid = os.getpid()

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        """Returns [1, dim + 1] query vector for [n] item indices."""
        with self._lock:
            return self._run(item_idx=history_matrix([item_idx], HISTORY))["query"]


class MFOnDemand:
    """Fresh users: LiteRT fold-in of their recent items -> Faiss -> rules."""

    def __init__(self, bundle: BundleReader):
        self.index = load_index(bundle)  # deserialised now, not inside a request later
        self._flat = bundle.read("user_tower.tflite")
        self._lock = threading.Lock()
        self.tower = LiteTower(self._flat)

    def _tower(self) -> LiteTower:
        """The tower, rebuilt once in a process forked after it was made."""
        if self.tower.pid != os.getpid():
            with self._lock:
                if self.tower.pid != os.getpid():
                    self.tower = LiteTower(self._flat)
        return self.tower

    def recommend(self, history_idx, user_id, features, exclude_idx, k):
        if not len(history_idx):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return one_list(*faiss_topk(self.index, self._tower()(history_idx), k, [exclude_idx]))


class MFKind:
    name = "mf"
    uses_features = False

    def config(self, flags: Mapping[str, Any]) -> MFSettings:
        """From the flags dim, epochs, l2 (MFConfig's) and index, flat_max (IndexConfig's);
        a missing or None flag keeps the default."""
        from models.mf import MFConfig

        def given(names):
            return {n: flags[n] for n in names if flags.get(n) is not None}

        return MFSettings(MFConfig(**given(("dim", "epochs", "l2"))),
                          IndexConfig(**{("kind" if n == "index" else n): v
                                         for n, v in given(("index", "flat_max")).items()}))

    def validation_window(self, config: MFSettings, gate_window: float) -> float:
        return gate_window

    def fit(self, data: TrainingData, config: MFSettings, window: float | None = None) -> MFFit:
        from models.mf import train_mf

        validation = (validate(data.clean, config.mf, data.event_weights, window)
                      if window else None)
        model = train_mf(data.clean, config.mf, data.event_weights)
        indptr, items = history_csr(data.clean, model.users, model.items)
        rows = np.repeat(np.arange(len(model.users)), np.diff(indptr))
        items = items[np.lexsort((items, rows))]  # sorted per user: the rules skip a sort
        return MFFit(model, popular_ids(data.clean, model.items.ids), indptr, items,
                     config.index, validation=validation)

    def export(self, fit: MFFit, writer: BundleWriter, k: int) -> dict:
        import faiss

        from models.export import check_tower, export_mf
        from models.index import build_index

        model = fit.model
        item_vectors, user_vectors = model.item_vectors(), model.user_vectors()
        sample = user_vectors[np.random.default_rng(0).choice(
            len(user_vectors), min(1000, len(user_vectors)), replace=False)]
        index, index_info = build_index(item_vectors, sample, k, fit.index)
        writer.put_json("item_ids.json", [str(x) for x in model.items.ids])
        writer.put_json("user_ids.json", [str(x) for x in model.users.ids])
        writer.put_array("item_vectors.npy", item_vectors)
        writer.put_array("user_vectors.npy", user_vectors)
        writer.put_array("seen_indptr.npy", np.asarray(fit.seen_indptr, np.int64))
        writer.put_array("seen_items.npy", np.asarray(fit.seen_items, np.int64))
        writer.put("items.faiss", faiss.serialize_index(index).tobytes())
        writer.put_json("popular.json", [str(x) for x in fit.popular[:POPULAR]])
        fields = {"config": asdict(model.config), "users": len(model.users),
                  "items": len(model.items), "index": index_info}
        if fit.tower:
            with tempfile.TemporaryDirectory() as tmp:
                tower = export_mf(model, os.path.join(tmp, "saved_model"), k=k)
                fields["tower_max_abs_error"] = check_tower(tower, model)
                writer.put("user_tower.tflite", tower)
                writer.put_dir("saved_model", os.path.join(tmp, "saved_model"))
        return fields

    def batch_scorer(self, bundle: BundleReader) -> MFBatchScorer:
        return MFBatchScorer(bundle)

    def on_demand(self, bundle: BundleReader) -> MFOnDemand | None:
        return MFOnDemand(bundle) if "user_tower.tflite" in bundle.manifest["files"] else None


KIND = MFKind()
