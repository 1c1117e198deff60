"""The `served` kind: two-tower, item-kNN, session and recent candidates (EASE and GraphSAGE
too when its config turns them on: --served-config, --graphsage-config) -> ranker -> rules
(models/served.py; trained by models/served_fit.fit_served).

Bundle files besides the common ones (item_ids.json = the model's item vocabulary,
user_ids.json, item_vectors.npy = the two-tower item embeddings, popular.json): what the
precompute needs per warm user (history_indptr.npy / history_items.npy: distinct items in
order of first event; user_tokens.npy) and `served/`: models.served_export.export's folder
(served.npz/json, the SavedModels user_tower/, item_embeddings/ and ranker/, their LiteRT
conversions). The precompute runs the NumPy runtime, the functions the LiteRT files; both call
the same ServedModel.recommend_indices.

Module-level imports: what the on-demand scorer needs (models.served, served_bundle); training
inside `fit`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from models.histories import csr_rows, history_csr
from models.kinds import POPULAR, BundleReader, BundleWriter, TrainingData, one_list, popular_ids
from models.runtimes import LiteRTRuntime
from models.served import ServedConfig, ServedModel
from models.served_bundle import from_files

if TYPE_CHECKING:

    from models.vocab import Vocab

# Files of `served/` that models.served_bundle.load needs to rank with LiteRT (the first two
# alone with the NumPy runtime or the TensorFlow graph); the SavedModels beside them are for
# TF Serving.
RUNTIME_FILES = ("served.npz", "served.json", "user_tower.tflite", "ranker.tflite")


def parse_config(text: str | None) -> ServedConfig:
    """A ServedConfig from JSON overrides of its defaults (--served_config).

    Args:
        text: e.g. '{"tower": {"dim": 16, "epochs": 4}, "ranker": {"hidden": [32]},
            "n_tower": 50}'; "graphsage": {...} turns GraphSAGE on (GraphSAGEConfig
            overrides), null off; None or "" keeps every default.

    Raises:
        ValueError: not a JSON object, or a field ServedConfig (or its parts) does not have.
    """
    from models.graphsage import GraphSAGEConfig
    from models.ranker import RankerConfig
    from models.two_tower import TwoTowerConfig

    try:
        raw = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"--served_config is not JSON ({e}); pass an object such as "
                         '\'{"tower": {"dim": 16}}\'') from e
    if not isinstance(raw, dict):
        raise ValueError("--served_config must be a JSON object of ServedConfig fields")

    def build(cls, values: dict, where: str, base=None):
        """cls from `values` over `base`'s fields (served's own defaults of a part), or over
        cls's defaults when base is None."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--served_config: unknown field(s) {unknown} in {where}; "
                             f"known: {sorted(known)}")
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**given) if base is None else replace(base, **given)

    defaults = ServedConfig()  # its tower and ranker differ from their classes' defaults
    parts = {"tower": build(TwoTowerConfig, raw.get("tower") or {}, "tower", defaults.tower),
             "ranker": build(RankerConfig, raw.get("ranker") or {}, "ranker", defaults.ranker)}
    sage = raw.get("graphsage")
    if sage is not None and not isinstance(sage, dict):
        raise ValueError("--served_config: graphsage must be an object of GraphSAGEConfig "
                         "fields (GraphSAGE on) or null (off)")
    parts["graphsage"] = None if sage is None else build(GraphSAGEConfig, sage, "graphsage")
    rest = {k: v for k, v in raw.items() if k not in parts}
    return replace(build(ServedConfig, rest, "the top level"), **parts)


@dataclass
class ServedFit:
    """A trained ServedModel and what its bundle needs from the data.

    Attributes:
        model: the trained model (its `validation`, when fit_served measured one, is the
            gate's figure).
        users: the warm users, in the bundle's order.
        history_indptr, history_items: [num_users + 1], [nnz] int64: each user's distinct
            items in order of first event (the evaluation's warm history).
        popular: item ids, most events first.
    """

    model: ServedModel
    users: Vocab
    history_indptr: np.ndarray
    history_items: np.ndarray
    popular: list[str]

    @property
    def validation(self) -> dict | None:
        return self.model.validation


def load_model(bundle: BundleReader, runtime: str, litert: tuple | None = None) -> ServedModel:
    """models.served_bundle.from_files on the bundle's verified served.json and served.npz,
    read from memory (no temporary folder to write and read back)."""
    meta = json.loads(bundle.read("served/served.json"))
    with np.load(io.BytesIO(bundle.read("served/served.npz")), allow_pickle=False) as arrays:
        return from_files(meta, arrays, runtime, litert)


class ServedBatchScorer:
    """The warm users' lists: ServedModel.recommend_indices on the NumPy runtime, batched.
    A user's history is their distinct items in order of first event; all are excluded."""

    def __init__(self, bundle: BundleReader):
        self.model = load_model(bundle, "numpy")  # NumPy needs no .tflite
        self.user_ids = bundle.user_ids
        self.indptr = bundle.array("history_indptr.npy")
        self.items = bundle.array("history_items.npy")
        self.user_tok = bundle.array("user_tokens.npy")

    def score(self, users: range | np.ndarray, k: int):
        rows = np.arange(users.start, users.stop) if isinstance(users, range) else users
        histories = csr_rows(self.indptr, self.items, users)
        ids = self.user_ids[rows]
        items, scores = self.model.recommend_indices(
            histories, self.user_tok[rows], self.model.context(list(ids), fresh=False), k)
        return ids, items, scores


class ServedOnDemand:
    """The served recommender on its LiteRT runtime (no TF): the same
    ServedModel.recommend_indices as the nightly precompute, one call at a time."""

    def __init__(self, bundle: BundleReader):
        self._flat = (bundle.read("served/user_tower.tflite"),
                      bundle.read("served/ranker.tflite"))
        self.model = load_model(bundle, "litert", self._flat)
        if list(self.model.tower.data.items.ids) != bundle.item_ids.tolist():
            raise ValueError(f"bundle {bundle.version}: served/ and item_ids.json disagree on "
                             "the items; re-export the bundle")
        self._lock = threading.Lock()  # the interpreters are not thread-safe
        self.pid = os.getpid()
        self.recommend(np.zeros(0, np.int64), "", None, np.zeros(0, np.int64), 1)  # warm up

    def recommend(self, history_idx, user_id, features, exclude_idx, k):
        m = self.model
        history = np.fromiter(dict.fromkeys(history_idx.tolist()), np.int64)
        with self._lock:
            if self.pid != os.getpid():  # forked after the interpreters were made
                m.runtime, self.pid = LiteRTRuntime(*self._flat), os.getpid()
            I, S = m.recommend_indices([history], m.user_tokens([features or None]),
                                       m.context([user_id], fresh=user_id not in m.user_last),
                                       k, [exclude_idx])
        return one_list(I, S)


class ServedKind:
    name = "served"
    uses_features = True

    def config(self, flags: Mapping[str, Any]) -> ServedConfig:
        """From the flag served_config (JSON overrides, see `parse_config`); the flag
        graphsage_config (a JSON file, models.kinds.graphsage.parse_graphsage_config) turns
        GraphSAGE on inside served with its settings (replacing served_config's
        "graphsage")."""
        from models.kinds.graphsage import parse_graphsage_config

        config = parse_config(flags.get("served_config"))
        sage = parse_graphsage_config(flags.get("graphsage_config"))
        return config if sage is None else replace(config, graphsage=sage)

    def validation_window(self, config: ServedConfig, gate_window: float) -> float:
        """fit_served validates on its own last window, cut at the last of `config.windows`
        (--gate_window does not apply)."""
        return round(1.0 - max(config.windows), 9)

    def fit(self, data: TrainingData, config: ServedConfig,
            window: float | None = None) -> ServedFit:
        """fit_served on every row (it measures its validation whatever `window` says)."""
        from models.served_fit import fit_served
        from models.vocab import Vocab

        clean = data.clean
        model = fit_served(clean, data.users, data.items, config, data.event_weights)
        item_vocab, user_vocab = model.tower.data.items, Vocab.build(clean["user_id"])
        indptr, hist = history_csr(clean, user_vocab, item_vocab)
        return ServedFit(model, user_vocab, indptr, hist, popular_ids(clean, item_vocab.ids))

    def export(self, fit: ServedFit, writer: BundleWriter, k: int) -> dict:
        from models.served_export import export

        model, users = fit.model, fit.users
        item_vocab = model.tower.data.items
        writer.put_json("item_ids.json", [str(x) for x in item_vocab.ids])
        writer.put_json("user_ids.json", [str(x) for x in users.ids])
        writer.put_array("item_vectors.npy", model.tower.item_vectors.astype(np.float32))
        writer.put_array("history_indptr.npy", np.asarray(fit.history_indptr, np.int64))
        writer.put_array("history_items.npy", np.asarray(fit.history_items, np.int64))
        writer.put_array("user_tokens.npy", model.tower.data.user_matrix(list(users.ids)))
        writer.put_json("popular.json", [str(x) for x in fit.popular[:POPULAR]])
        with tempfile.TemporaryDirectory() as tmp:
            exported = export(model, os.path.join(tmp, "served"))
            writer.put_dir("served", exported["path"])
        return {"config": asdict(model.config), "users": len(users), "items": len(item_vocab),
                "index": {"type": "IndexFlatIP", "recall@k": 1.0, "k": model.config.n_tower},
                "litert_max_abs_diff": exported["litert_max_abs_diff"]}

    def batch_scorer(self, bundle: BundleReader) -> ServedBatchScorer:
        return ServedBatchScorer(bundle)

    def on_demand(self, bundle: BundleReader) -> ServedOnDemand:
        return ServedOnDemand(bundle)


KIND = ServedKind()
