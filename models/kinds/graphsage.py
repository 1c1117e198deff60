"""The `graphsage` kind: GraphSAGE over the user–item graph -> Faiss over its item vectors
(models/graphsage.py). `recsys nightly --model graphsage` (with --users/--items features).

Bundle files besides the common ones (item_ids.json, user_ids.json, item_vectors.npy,
popular.json): user_vectors.npy [num_users, dim] (each warm user's query over their items,
computed at export), seen_indptr.npy / seen_items.npy (each user's distinct items as CSR,
excluded from their list), items.faiss, graphsage_query.tflite (the user node's layers over
the item tables: a fresh user's query from their items on demand, models.graphsage_export)
and user_tokens.json (the user feature encoder the query's `user_tok` input needs).

The batch scorer is MF's (Faiss over precomputed user vectors). Module-level imports stay
light (NumPy only): the functions import this module to serve a GraphSAGE bundle.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.histories import history_matrix
from models.index import IndexConfig
from models.kinds import POPULAR, BundleReader, BundleWriter, TrainingData, one_list, popular_ids
from models.kinds.mf import MFBatchScorer, load_index
from models.topk import faiss_topk
from models.tower_data import TokenEncoder

if TYPE_CHECKING:
    from models.graphsage import GraphSAGEConfig, GraphSAGEModel


@dataclass
class GraphSAGEFit:
    """A trained GraphSAGE and what its bundle needs from the data.

    Attributes:
        model: the trained model.
        user_ids: [num_users] the warm users (sorted ids); user_vectors [num_users, dim].
        seen_indptr, seen_items: [num_users + 1], [nnz] int64: each user's distinct items.
        popular: item ids, most events first.
        validation: figures of the last window, or None.
    """

    model: GraphSAGEModel
    user_ids: np.ndarray
    user_vectors: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    popular: list[str]
    index: IndexConfig = IndexConfig()
    validation: dict | None = None


def validate(data: TrainingData, config: GraphSAGEConfig, window: float) -> dict:
    """GraphSAGE trained before the last `window` share of the time range, evaluated on it
    under the temporal-holdout protocol beside popularity (the gate's figures)."""
    from models.baselines import Popularity
    from models.evaluation import build_cases, evaluate_model, temporal_split
    from models.graphsage_fit import GraphSAGERecommender

    split = temporal_split(data.clean, quantile=1.0 - window)
    cases = build_cases(split)
    out = {"window": window, "cases": len(cases.warm) + len(cases.fresh),
           "warm": len(cases.warm), "fresh": len(cases.fresh), "ndcg@10": None,
           "popularity_ndcg@10": None}
    if out["cases"]:
        for key, model in (("ndcg@10", GraphSAGERecommender(config)),
                           ("popularity_ndcg@10", Popularity())):
            out[key] = evaluate_model(model, split, cases, users=data.users, items=data.items,
                                      n_resamples=100)["all"]["ndcg@10"]
    return out


class LiteQuery:
    """A fresh user's query from their item indices and feature tokens (LiteRT, no TF)."""

    def __init__(self, flat: bytes, history: int):
        from ai_edge_litert.interpreter import Interpreter

        self._lock = threading.Lock()  # an interpreter is not thread-safe
        self._run = Interpreter(model_content=flat, num_threads=1).get_signature_runner()
        self.history, self.pid = history, os.getpid()

    def __call__(self, item_idx: np.ndarray, user_tok: np.ndarray) -> np.ndarray:
        """[1, dim] query of [n] item indices (oldest first) and user_tok [1, U]."""
        with self._lock:
            return self._run(item_idx=history_matrix([item_idx], self.history),
                             user_tok=user_tok)["query"]


class GraphSAGEOnDemand:
    """Fresh users: the LiteRT query over their recent items and features -> Faiss."""

    def __init__(self, bundle: BundleReader):
        import json

        self.index = load_index(bundle)
        self.encoder = TokenEncoder(**json.loads(bundle.read("user_tokens.json")))
        self.history = int(bundle.manifest["config"]["history"])
        self._flat = bundle.read("graphsage_query.tflite")
        self._lock = threading.Lock()
        self.query = LiteQuery(self._flat, self.history)

    def _query(self) -> LiteQuery:
        """The interpreter, rebuilt once in a process forked after it was made."""
        if self.query.pid != os.getpid():
            with self._lock:
                if self.query.pid != os.getpid():
                    self.query = LiteQuery(self._flat, self.history)
        return self.query

    def recommend(self, history_idx, user_id, features, exclude_idx, k):
        if not len(history_idx):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        tok = self.encoder.encode_rows([features if isinstance(features, dict) else None])
        xq = self._query()(np.asarray(history_idx, np.int64), tok)
        return one_list(*faiss_topk(self.index, xq, k, [exclude_idx]))


def parse_graphsage_config(path: str | None) -> GraphSAGEConfig | None:
    """GraphSAGEConfig from a JSON file of overrides of its defaults (--graphsage_config).

    Args:
        path: a local file holding e.g. '{"dim": 32, "epochs": 8}'; None or "": no file.

    Returns:
        The config, or None without a file.

    Raises:
        ValueError: naming the flag and what to fix: the file cannot be read, is not JSON,
            not an object, names a field GraphSAGEConfig does not have, or a value it
            refuses.
    """
    from models.config_file import read_config_file
    from models.graphsage import GraphSAGEConfig

    if not path:
        return None
    where = "--graphsage_config"
    raw = read_config_file(path, where, "GraphSAGEConfig", '{"dim": 32}')
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {path!r} must hold a JSON object of GraphSAGEConfig "
                         "fields")
    known = {f.name for f in dataclasses.fields(GraphSAGEConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} in {path!r}; known: "
                         f"{sorted(known)}")
    try:
        return GraphSAGEConfig(**raw)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


class GraphSAGEKind:
    name = "graphsage"
    uses_features = True

    def config(self, flags: Mapping[str, Any]) -> GraphSAGEConfig:
        """GraphSAGEConfig's defaults (chosen on validation windows) with the overrides of
        the flag graphsage_config (a JSON file, see `parse_graphsage_config`); MF's
        --dim/--epochs do not apply, and index, flat_max are IndexConfig's as for MF."""
        from models.graphsage import GraphSAGEConfig

        return parse_graphsage_config(flags.get("graphsage_config")) or GraphSAGEConfig()

    def validation_window(self, config: GraphSAGEConfig, gate_window: float) -> float:
        return gate_window

    def fit(self, data: TrainingData, config: GraphSAGEConfig,
            window: float | None = None) -> GraphSAGEFit:
        from models.graphsage_fit import train_graphsage
        from models.histories import csr_rows, history_csr
        from models.vocab import Vocab

        validation = validate(data, config, window) if window else None
        model = train_graphsage(data.clean, data.users, data.items, config, data.event_weights)
        users = Vocab.build(data.clean["user_id"].astype(str))
        indptr, items = history_csr(data.clean, users, model.data.items)
        vectors = model.queries(list(users.ids), csr_rows(indptr, items, range(len(users))))
        rows = np.repeat(np.arange(len(users)), np.diff(indptr))
        return GraphSAGEFit(model, users.ids, vectors, indptr, items[np.lexsort((items, rows))],
                            popular_ids(data.clean, model.data.items.ids),
                            validation=validation)

    def export(self, fit: GraphSAGEFit, writer: BundleWriter, k: int) -> dict:
        import faiss

        from models.graphsage_export import export_litert
        from models.index import build_index

        model = fit.model
        flat = export_litert(model)  # checked against the NumPy model; raises first
        sample = fit.user_vectors[np.random.default_rng(0).choice(
            len(fit.user_vectors), min(1000, len(fit.user_vectors)), replace=False)]
        index, index_info = build_index(model.item_vectors, sample, k, fit.index)
        writer.put_json("item_ids.json", [str(x) for x in model.data.items.ids])
        writer.put_json("user_ids.json", [str(x) for x in fit.user_ids])
        writer.put_array("item_vectors.npy", model.item_vectors)
        writer.put_array("user_vectors.npy", np.asarray(fit.user_vectors, np.float32))
        writer.put_array("seen_indptr.npy", np.asarray(fit.seen_indptr, np.int64))
        writer.put_array("seen_items.npy", np.asarray(fit.seen_items, np.int64))
        writer.put("items.faiss", faiss.serialize_index(index).tobytes())
        writer.put_json("popular.json", [str(x) for x in fit.popular[:POPULAR]])
        writer.put_json("user_tokens.json", dataclasses.asdict(model.data.user_enc))
        writer.put("graphsage_query.tflite", flat)
        return {"config": dataclasses.asdict(model.config), "users": len(fit.user_ids),
                "items": len(model.data.items), "index": index_info, "epochs": model.epochs}

    def batch_scorer(self, bundle: BundleReader) -> MFBatchScorer:
        return MFBatchScorer(bundle)

    def on_demand(self, bundle: BundleReader) -> GraphSAGEOnDemand:
        return GraphSAGEOnDemand(bundle)


KIND = GraphSAGEKind()
