"""The `served_dqn` kind: the `served` kind, then the DQN re-ranking stage (models.dqn) over
served's top 100. Off by default: the nightly runs it only with `--model served_dqn`
(docs/RL.md says when to).

Its bundle is served's (models/kinds/served.py: same files, same manifest fields) plus
`dqn/` (models.dqn_export: dqn.npz/json for the batch's NumPy policy, the SavedModel
q_network/ and dqn.tflite for the functions) and the manifest field `dqn` (strategies, the
LiteRT check, the training figures). The policy is trained on a simulator of served's own
beliefs (models.dqn_served.fit_on_beliefs).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.dqn import STRATEGIES, QPolicy, rerank_lists
from models.dqn_config import DQNConfig, parse_dqn_config
from models.dqn_export import LiteRTPolicy, from_files
from models.dqn_served import POOL, item_embeddings, served_pools
from models.histories import csr_rows
from models.kinds import BundleReader, BundleWriter, TrainingData, one_list
from models.kinds.served import KIND as SERVED
from models.kinds.served import ServedBatchScorer, ServedFit, ServedOnDemand
from models.runtimes import NumpyRuntime


@dataclass(frozen=True)
class ServedDQNConfig:
    """served's configuration and the DQN's (models.dqn_config.DQNConfig)."""

    served: Any
    dqn: DQNConfig = DQNConfig()


@dataclass
class ServedDQNFit:
    """served's fit and the policy trained on its beliefs."""

    served: ServedFit
    policy: QPolicy
    info: dict

    @property
    def validation(self) -> dict | None:
        return self.served.validation


def load_policy(bundle: BundleReader) -> QPolicy:
    meta = json.loads(bundle.read("dqn/dqn.json"))
    with np.load(io.BytesIO(bundle.read("dqn/dqn.npz")), allow_pickle=False) as arrays:
        return from_files(meta, arrays)


class ServedDQNBatchScorer:
    """served's batch lists of POOL items, re-ranked by the NumPy policy to k."""

    def __init__(self, bundle: BundleReader):
        self.served = ServedBatchScorer(bundle)
        self.policy = load_policy(bundle)
        self.emb = item_embeddings(self.served.model)

    def score(self, users: range | np.ndarray, k: int):
        s = self.served
        rows = np.arange(users.start, users.stop) if isinstance(users, range) else users
        ids = list(s.user_ids[rows])
        pools = served_pools(s.model, ids, csr_rows(s.indptr, s.items, users),
                             user_tok=s.user_tok[rows])
        items, _ = rerank_lists(self.policy, pools.query, pools.recent, pools.items, self.emb, k,
                                fresh=False)  # the bundle's users: warm
        return np.asarray(ids, dtype=object), items, _rank_scores(items)


class ServedDQNOnDemand:
    """served's on-demand list of POOL items re-ranked by the LiteRT policy (no TF)."""

    def __init__(self, bundle: BundleReader):
        self.served = ServedOnDemand(bundle)
        numpy_policy = load_policy(bundle)
        self.policy = LiteRTPolicy(bundle.read("dqn/dqn.tflite"), numpy_policy.margin,
                                   numpy_policy.margins)
        self.emb = item_embeddings(self.served.model)
        self.numpy = NumpyRuntime(self.served.model)  # the user embedding, beside LiteRT's
        self._lock = threading.Lock()

    def recommend(self, history_idx, user_id, features, exclude_idx, k):
        m = self.served.model
        history = np.fromiter(dict.fromkeys(history_idx.tolist()), np.int64)
        fresh = user_id not in m.user_last
        pools = served_pools(m, [user_id], [history], fresh=fresh,
                             user_tok=m.user_tokens([features or None]),
                             exclude=[exclude_idx], runtime=self.numpy)
        with self._lock:
            items, _ = rerank_lists(self.policy, pools.query, pools.recent, pools.items,
                                    self.emb, k, fresh)
        return one_list(items, _rank_scores(items))


def _rank_scores(items: np.ndarray) -> np.ndarray:
    """[B, k] float32 scores that keep the stage's order (1, 1/2, 1/3, ...; 0 on padding)."""
    return np.where(items >= 0, 1.0 / np.arange(1, items.shape[1] + 1), 0.0).astype(np.float32)


class ServedDQNKind:
    name = "served_dqn"
    uses_features = True

    def config(self, flags: Mapping[str, Any]) -> ServedDQNConfig:
        """served's configuration (the flags served_config, graphsage_config) and the DQN's
        (the flag dqn_config: a JSON file of DQNConfig overrides, e.g. {"rounds": 20};
        models.dqn_config.parse_dqn_config).

        Raises:
            ValueError: naming the flag, for a bad file or more guard windows than served
                has (before any work).
        """
        from models.dqn_guard import guard_origins

        served, dqn = SERVED.config(flags), parse_dqn_config(flags.get("dqn_config"))
        if dqn.guard_budget is not None:
            try:
                guard_origins(served.windows, dqn.guard_windows)
            except ValueError as e:
                raise ValueError(f"--dqn_config: {e}") from None
        return ServedDQNConfig(served, dqn)

    def validation_window(self, config: ServedDQNConfig, gate_window: float) -> float:
        return SERVED.validation_window(config.served, gate_window)

    def fit(self, data: TrainingData, config, window: float | None = None) -> ServedDQNFit:
        """served's fit, then the DQN on its beliefs about its warm users, with the
        deployment guard's per-segment margins (models.dqn_guard) chosen on the train side."""
        from models.dqn_guard import guarded_policy
        from models.dqn_served import fit_on_beliefs

        served = SERVED.fit(data, config.served, window)
        m = served.model
        users = list(served.users.ids)
        hists = csr_rows(served.history_indptr, served.history_items, range(len(users)))
        dqn = config.dqn
        policy, info = fit_on_beliefs(m, users, hists, config=dqn)
        policy, info = guarded_policy(policy, info, data.clean, data.users, data.items,
                                      config.served, dqn, event_weights=data.event_weights)
        return ServedDQNFit(served, policy, info)

    def export(self, fit: ServedDQNFit, writer: BundleWriter, k: int) -> dict:
        from models.dqn_export import export

        fields = SERVED.export(fit.served, writer, k)
        with tempfile.TemporaryDirectory() as tmp:
            out = export(fit.policy, os.path.join(tmp, "dqn"))
            writer.put_dir("dqn", out["path"])
        fields["dqn"] = {"strategies": list(STRATEGIES), "pool": POOL,
                         "litert_max_abs_diff": out["litert_max_abs_diff"],
                         "train_seconds": fit.info.get("train_seconds"),
                         "guard": fit.info.get("guard")}
        return fields

    def batch_scorer(self, bundle: BundleReader) -> ServedDQNBatchScorer:
        return ServedDQNBatchScorer(bundle)

    def on_demand(self, bundle: BundleReader) -> ServedDQNOnDemand:
        return ServedDQNOnDemand(bundle)


KIND = ServedDQNKind()
