"""What production serves: candidate sources -> ranker -> business rules, one code path for
warm users (the nightly batch) and fresh users (the on-demand function).

    ServedModel.recommend_indices(histories, user_tok, context, k, exclude), a step of users
    at a time:
        = candidates(user tower query, histories)    two-tower top-N (exact), item-kNN and
                                                     session co-occurrence top-N, recent top-N
        -> rank(hist, user_tok, candidates, context)  features (models.features) + MLP ensemble
        -> models.rules.apply_rules_batch             exclusions out, first k

The candidates' neighbour sums and the ranker's features are NumPy gathers on arrays built
once per model (models.features: one product per neighbour table and step of users gives
both the kNN/session candidates and the features read at them); the user tower and the
ranker's MLP run through a `runtime`: `NumpyRuntime` (models.runtimes: the exported weights
in NumPy; the nightly batch and evaluation), `LiteRTRuntime` (models.runtimes: the .tflite
conversions; the on-demand function) or `GraphRuntime` (models.served_graph: TensorFlow, the
module the SavedModels are written from; the reference the others are tested against). The
first two import no TensorFlow.

    models.served_fit      fit_served: trains it on the train side only (its windows, its
                           validation figure)
    models.served_bundle   save / load / from_files: served.npz and served.json
    models.served_export   export: the bundle folder, SavedModels and LiteRT files, checked

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --models served
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from models.features import (
    ItemArrays,
    NeighbourMatrix,
    descending,
    neighbour_csr,
    neighbour_padded,
    neighbour_sums,
    neighbour_top,
    one_blas_thread,
    pair_features,
    tower_top,
)
from models.histories import history_matrix
from models.ranker import (
    ITEM_STATS,
    FeatureTables,
    RankerConfig,
    RankerModel,
    RankingData,
    build_tables,
)
from models.rules import apply_rules_batch
from models.runtimes import GraphRuntime, LiteRTRuntime, NumpyRuntime
from models.schema import SECONDS_PER_DAY
from models.tower_data import TokenEncoder, TowerData
from models.two_tower import TwoTowerConfig, TwoTowerModel
from models.vocab import Vocab

if TYPE_CHECKING:
    import pandas as pd

    from models.evaluation import Cases

log = logging.getLogger(__name__)
# Users per step of recommend_indices: the neighbour sums hold 2 x 3 x (n + 1) floats per user.
STEP_CELLS = 1 << 23
# The neighbour tables (FeatureTables.<name>_idx / _sim), which served.npz stores as CSR rows
# (t:<name>_indptr / _indices / _data): padded to M = 1,000 columns they were 95% of a
# 20,000-item bundle, rows holding ~350 kNN and ~2 session neighbours.
NEIGHBOURS = ("knn", "sess")
_PADDED = tuple(f"{n}_{part}" for n in NEIGHBOURS for part in ("idx", "sim"))


@dataclass(frozen=True)
class ServedConfig:
    """Hyperparameters of the served pipeline.

    Attributes:
        tower: the two-tower model's.
        ranker: the ranker's.
        windows: cutoffs (quantiles of train events) of the ranker's training windows; the
            last one is the validation window of the fit's `validation` (the gate's figure).
        n_tower, n_knn, n_session, n_popular: candidates from each source.
        candidates: candidate slots per user (C), padded with -1.
        max_cases: cases drawn per window for the ranker (the latest ones are kept).
        longtail_slots: places at the end of each top 10 given to the long-tail items
            (outside the 20% most popular) that suit the user best, a discovery rule; 0 turns
            it off. Off by default: on three validation windows of the MovieLens 100K train
            side (`python -m benchmarks.validate_served`), one slot raised long-tail
            coverage@10 from 0.018 to 0.048 ("tower") or 0.033 ("ranker") and cost 0.018 or
            0.013 fresh NDCG@10, more than the served lists' lead over item-kNN can spare.
        longtail_affinity: what "suit best" means there: "tower" (the two-tower score,
            personal and diverse) or "ranker" (the ranker's score, closer to the truth).
        new_item_slots: places at the very end of each top 10 given to the candidates with
            no train events (items new to the catalog, embedded by the item tower from their
            features) of highest two-tower score, an exploration rule: without it the ranker,
            which trusts event counts and co-occurrence, never shows them. 0 turns it off.
            Off by default: see `python -m benchmarks.cold_items` in
            docs/EVALUATION_RESULTS.md for what one slot shows and costs.
        tower_epochs: epochs of the tower's first fit; None picks them on the first window
            (`tower.epochs` at most, early stopping with `tower.patience`). 4 on three
            validation windows of the MovieLens 100K train side: served NDCG@10 warm /
            fresh 0.195 / 0.486 (2: 0.191 / 0.480, 6: 0.197 / 0.486 and 27% slower), where
            picking them on the last window chose 1 epoch once and averaged 0.172 / 0.482.
    """

    tower: TwoTowerConfig = TwoTowerConfig()
    ranker: RankerConfig = RankerConfig()
    windows: tuple[float, ...] = (0.7, 0.8, 0.9)
    n_tower: int = 100
    n_knn: int = 100
    n_session: int = 50
    n_popular: int = 50
    candidates: int = 256
    max_cases: int = 5000
    longtail_slots: int = 0
    longtail_affinity: str = "tower"
    new_item_slots: int = 0
    tower_epochs: int | None = 4

    def __post_init__(self) -> None:
        slots = {"longtail_slots": self.longtail_slots, "new_item_slots": self.new_item_slots}
        if any(not isinstance(v, int) or v < 0 for v in slots.values()) or sum(slots.values()) > 10:
            raise ValueError(f"{slots}: each must be a whole number >= 0, together at most 10 "
                             "(the places of a top 10)")


@dataclass
class _Arrays:
    """What ServedModel scoring gathers from (see ServedModel.arrays)."""

    knn: NeighbourMatrix
    sess: NeighbourMatrix
    items: ItemArrays


@dataclass
class ServedModel:
    """The bundle's content: tower, feature tables, ranker and the warm users' last events.

    Both serving paths call `recommend_indices` with inputs built by `history_indices`
    (item ids -> indices), `user_tokens` (feature rows -> [B, U] token ids) and `context`.
    """

    tower: TwoTowerModel
    tables: FeatureTables
    ranker: RankerModel | None
    config: ServedConfig
    popular: np.ndarray  # [n_popular] item indices, most popular in the last 7 days first
    user_last: dict[str, float] = field(default_factory=dict)  # user id -> last event ts
    runtime: object = None  # models.runtimes: NumpyRuntime (built on first use) / LiteRT / Graph

    @classmethod
    def build(cls, train: pd.DataFrame, tower: TwoTowerModel, items: pd.DataFrame | None,
              config: ServedConfig, ranker: RankerModel | None = None) -> ServedModel:
        """The tables, the recent-popular source and the users' last events of `train`."""
        tables = build_tables(train, tower, items, config.ranker)
        pop7 = tables.item_stats[:-1, ITEM_STATS.index("pop_7d")] + tables.item_stats[:-1, 0] / 100
        popular = np.lexsort((np.arange(len(pop7)), -pop7))[:config.n_popular]
        last = train.groupby(train["user_id"].astype(str))["timestamp"].max()
        return cls(tower, tables, ranker, config, popular, last.astype(float).to_dict())

    def get_runtime(self):
        """The runtime of the user tower and the ranker (a NumpyRuntime unless one was set)."""
        if self.runtime is None:
            self.runtime = NumpyRuntime(self)
        return self.runtime

    def arrays(self) -> _Arrays:
        """What scoring gathers from, built on first use: the neighbour matrices and the
        per-item feature arrays."""
        if getattr(self, "_arrays", None) is None:
            self._arrays = _Arrays(
                NeighbourMatrix.from_csr(*self.neighbour_csr("knn")),
                NeighbourMatrix.from_csr(*self.neighbour_csr("sess")),
                ItemArrays.build(self.tables, self.tower.data.item_enc.size))
        return self._arrays

    def neighbour_csr(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The neighbour table `name` ("knn" or "sess") as (indptr, indices, data), as a
        sparse bundle holds it (a model loaded from one has no padded tables but for the TF
        graph)."""
        kept = getattr(self, "_csr", {}).get(name)
        if kept is not None:
            return kept
        return neighbour_csr(getattr(self.tables, f"{name}_idx"),
                             getattr(self.tables, f"{name}_sim"))

    def neighbour_sums(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(kNN, session) [B, 3, n + 1] sums over each history (models.features)."""
        a, c = self.arrays(), self.config.tower
        return (neighbour_sums(a.knn, histories, c.history, c.recent),
                neighbour_sums(a.sess, histories, c.history, c.recent))

    # -- inputs -------------------------------------------------------------------------
    def history_indices(self, histories: list[list[str]]) -> list[np.ndarray]:
        """Known item indices per history (oldest first); unknown ids are dropped."""
        idx = [self.tower.data.items.lookup(h) for h in histories]
        return [i[i >= 0] for i in idx]

    def context(self, user_ids: list[str], fresh: bool) -> np.ndarray:
        """[B, 2] float32: fresh flag, days since the user's last train event (0 if fresh)."""
        now = self.tables.now
        idle = [0.0 if fresh else (now - self.user_last.get(str(u), now)) / SECONDS_PER_DAY
                for u in user_ids]
        return np.stack([np.full(len(user_ids), float(fresh)), idle], 1).astype(np.float32)

    # -- the pipeline ---------------------------------------------------------------------
    def candidates(self, query: np.ndarray, histories: list[np.ndarray],
                   sums: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Candidate item indices from every source, history excluded.

        Args:
            query: [B, d] user tower output.
            histories: B arrays of item indices.
            sums: `neighbour_sums(histories)` when the caller has them.

        Returns:
            [B, C] int64, -1 pads; tower candidates first, then kNN, session and recent.
        """
        c = self.config
        knn, sess = sums if sums is not None else self.neighbour_sums(histories)
        parts = [tower_top(self.tower.item_vectors, query, histories, c.n_tower),
                 neighbour_top(knn[:, 2], histories, c.n_knn),
                 neighbour_top(sess[:, 2], histories, c.n_session),
                 np.tile(self.popular, (len(histories), 1))]
        merged = np.concatenate(parts, 1)
        return apply_rules_batch(merged, np.zeros(merged.shape, np.float32), c.candidates,
                                 histories)[0]

    def features(self, hist: np.ndarray, user_tok: np.ndarray, cand: np.ndarray,
                 context: np.ndarray, query: np.ndarray | None = None,
                 sums: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The ranker's features [B, C, F] of the candidates [B, C] (models.features).

        Args:
            hist: [B, H] int32 history matrix (`history_matrix`), -1 pads.
            user_tok, context: as in `recommend_indices`.
            cand: [B, C] candidate item indices, -1 pads.
            query: the user tower's output for (hist, user_tok), when the caller has it.
            sums: `neighbour_sums` of the histories hist was cut from, when the caller has
                them (else they are summed over hist, which holds the H the features read).
        """
        if query is None:
            query = self.get_runtime().user_embedding(hist, user_tok)
        if sums is None:
            sums = self.neighbour_sums([row[row >= 0] for row in hist])
        return pair_features(self.tables, self.arrays().items, query, hist, user_tok, cand,
                             context, *sums)

    def rank(self, hist: np.ndarray, user_tok: np.ndarray, cand: np.ndarray,
             context: np.ndarray, query: np.ndarray | None = None,
             sums: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Ranker scores [B, C] float32 (-inf on padding) of the candidates [B, C]; the
        arguments are `features`'."""
        runtime = self.get_runtime()
        if getattr(runtime, "ranks_requests", False):  # an older bundle's LiteRT ranker
            scores = runtime.rank(hist, user_tok, cand.astype(np.int32), context)
        else:
            scores = runtime.score(self.features(hist, user_tok, cand, context, query, sums))
        return np.where(cand >= 0, scores, -np.inf).astype(np.float32)

    def recommend_indices(self, histories: list[np.ndarray], user_tok: np.ndarray,
                          context: np.ndarray, k: int,
                          exclude: list[np.ndarray] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
        """The served lists: retrieval -> ranking -> rules (batch and online alike).

        Args:
            histories: B arrays of item indices, oldest first (all are excluded).
            user_tok: [B, U] int32 user tokens (`tower.data.user_matrix` or the request's).
            context: [B, 2] float32 (see `context`).
            k: list length.
            exclude: B arrays of further item indices to exclude (unavailable items).

        Returns:
            (items [B, k] int64, -1 pads; scores [B, k] float32), best first.
        """
        step = self.step()
        with one_blas_thread():
            parts = [self._recommend_step(
                histories[lo:lo + step], user_tok[lo:lo + step], context[lo:lo + step], k,
                None if exclude is None else exclude[lo:lo + step])
                for lo in range(0, len(histories), step)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))

    def _recommend_step(self, histories, user_tok, context, k, exclude):
        hist = history_matrix(histories, self.config.tower.history)
        query = self.get_runtime().user_embedding(hist, user_tok)
        sums = self.neighbour_sums(histories)
        cand = self.candidates(query, histories, sums)
        scores = self.rank(hist, user_tok, cand, context, query, sums)
        order = descending(scores, cand)  # ties: the smaller item index first
        cand, scores = np.take_along_axis(cand, order, 1), np.take_along_axis(scores, order, 1)
        tail, new = self.config.longtail_slots, self.config.new_item_slots
        # the candidates hold no history item and no repeat: only `exclude` is left to drop
        I, S = apply_rules_batch(cand, scores, cand.shape[1] if tail or new else k, exclude,
                                 unique=True)

        def tower(I: np.ndarray) -> np.ndarray:  # the two-tower score of each listed item
            return np.einsum("bd,bcd->bc", query, self.tables.item_vectors[I])

        if tail:
            affinity = S if self.config.longtail_affinity == "ranker" else tower(I)
            I, S = longtail_slots(I, S, tail, ~self.head_items(), affinity, top=10 - new)
        if new:
            I, S = longtail_slots(I, S, new, self.new_items(), tower(I))
        return I[:, :k], S[:, :k]

    def head_items(self) -> np.ndarray:
        """[n_items] bool: the floor(0.2 n) items with most train events (ties: smaller index),
        the head of EVALUATION.md's long-tail coverage."""
        counts = self.tables.item_stats[:-1, 0]
        n_head = int(0.2 * np.count_nonzero(counts))
        head = np.zeros(len(counts), bool)
        head[np.lexsort((np.arange(len(counts)), -counts))[:n_head]] = True
        return head

    def new_items(self) -> np.ndarray:
        """[n_items] bool: the items without a train event (embedded from features only)."""
        return self.tables.item_stats[:-1, 0] == 0

    def ranking_data(self, cases: Cases) -> RankingData:
        """Candidates, features and labels of evaluation-like cases (ranker training)."""
        step = self.step()
        with one_blas_thread():
            return RankingData.concat([
                self._ranking_part(group[lo:lo + step], fresh)
                for group, fresh in ((cases.warm, False), (cases.fresh, True))
                for lo in range(0, len(group), step)])

    def _ranking_part(self, chunk: list, fresh: bool) -> RankingData:
        ids = [c.user_id for c in chunk]
        histories = self.history_indices([list(c.history) for c in chunk])
        hist = history_matrix(histories, self.config.tower.history)
        utok = self.tower.data.user_matrix(ids)
        query = self.get_runtime().user_embedding(hist, utok)
        sums = self.neighbour_sums(histories)
        cand = self.candidates(query, histories, sums)
        X = self.features(hist, utok, cand, self.context(ids, fresh), query, sums)
        truth = [self.tower.data.items.lookup(c.truth) for c in chunk]
        y = np.stack([np.isin(row, t[t >= 0]) for row, t in zip(cand, truth, strict=True)])
        return RankingData(X, y & (cand >= 0), cand >= 0,
                           np.array([len(c.truth) for c in chunk]))

    def step(self) -> int:
        """Users per step of recommend_indices and ranking_data (see STEP_CELLS)."""
        return int(np.clip(STEP_CELLS // (6 * (len(self.tower.data.items) + 1)), 8, 256))

    # -- the bundle -----------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Writes served.npz (arrays) and served.json (configs, encoders) into `path`.

        Uncompressed (np.savez): at 20,000 items served.npz is 67 MB, and checking and loading
        it from memory took 0.06 s against 0.21 s for savez_compressed's 35 MB.
        """
        os.makedirs(path, exist_ok=True)
        d, t = self.tower.data, self.tables
        arrays = {"item_ids": np.asarray(d.items.ids, str), "has_events": d.has_events,
                  "item_tokens": d.item_tokens, "item_vectors": self.tower.item_vectors,
                  "popular": self.popular,
                  "user_last_ids": np.asarray(list(self.user_last), str),
                  "user_last_ts": np.asarray(list(self.user_last.values()), np.float64)}
        arrays.update({f"w:{k}": v for k, v in self.tower.arrays.items()})
        arrays.update({f"t:{k}": getattr(t, k) for k in FeatureTables.__dataclass_fields__
                       if k not in ("now", *_PADDED)})
        for name in NEIGHBOURS:
            arrays.update(zip((f"t:{name}_indptr", f"t:{name}_indices", f"t:{name}_data"),
                              self.neighbour_csr(name), strict=True))
        r = self.ranker
        arrays.update({f"r:{n}:{k}": v for n, m in enumerate(r.members) for k, v in enumerate(m)})
        arrays.update({"r:mean": r.mean, "r:std": r.std})
        np.savez(os.path.join(path, "served.npz"), **arrays)
        meta = {"config": asdict(self.config), "now": t.now, "tower_epochs": self.tower.epochs,
                "ranker_epochs": r.epochs, "members": len(r.members),
                "layers": len(r.members[0]), "item_enc": asdict(d.item_enc),
                "neighbour_width": self.neighbour_width(),
                "user_enc": asdict(d.user_enc)}
        with open(os.path.join(path, "served.json"), "w") as f:
            json.dump(meta, f, indent=1)

    def neighbour_width(self) -> int:
        """M, the columns of the padded neighbour tables (the TF graph's)."""
        if self.tables.knn_idx is not None:
            return int(self.tables.knn_idx.shape[1])
        return int(getattr(self, "_width", self.config.ranker.neighbours))

    @classmethod
    def load(cls, path: str, runtime: str = "litert") -> ServedModel:
        """Reads a bundle written by `export` (or `save`).

        Args:
            path: the bundle folder.
            runtime: "litert" runs user_tower.tflite and ranker.tflite (the on-demand
                function), "numpy" the weights in NumPy (the nightly batch; needs only
                served.npz and served.json), neither importing TensorFlow; "tf" builds the
                TensorFlow graph (a reference).
        """
        with open(os.path.join(path, "served.json")) as f:
            meta = json.load(f)
        with np.load(os.path.join(path, "served.npz"), allow_pickle=False) as arrays:
            return cls.from_files(meta, arrays, runtime,
                                  (os.path.join(path, "user_tower.tflite"),
                                   os.path.join(path, "ranker.tflite")))

    @classmethod
    def from_files(cls, meta: dict, a: Mapping[str, np.ndarray], runtime: str = "litert",
                   litert: tuple | None = None) -> ServedModel:
        """The model of a bundle's served.json (`meta`) and served.npz (`a`, e.g. np.load of
        its bytes: no folder needed), as `load` reads them.

        Args:
            meta, a: the parsed files.
            runtime: as in `load`.
            litert: (user_tower.tflite, ranker.tflite), bytes or paths (runtime "litert").

        A bundle written before the neighbour tables were stored sparse (padded t:knn_idx
        and the like) loads too.
        """
        if runtime not in ("litert", "numpy", "tf"):
            raise ValueError(f"runtime {runtime!r}: use 'litert', 'numpy' or 'tf'")
        c = meta["config"]
        config = ServedConfig(
            tower=TwoTowerConfig(**c["tower"]),
            ranker=RankerConfig(**{**c["ranker"], "hidden": tuple(c["ranker"]["hidden"])}),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()
               if k not in ("tower", "ranker")})
        none = np.zeros(0, np.int64)
        data = TowerData(Vocab(a["item_ids"].astype(object)), a["has_events"], a["item_tokens"],
                         TokenEncoder(**meta["item_enc"]), TokenEncoder(**meta["user_enc"]),
                         None, none, none, none, np.zeros((0, 1), np.int32), meta["now"])
        names = list(a.keys())
        weights = {k[2:]: a[k] for k in names if k.startswith("w:")}
        tower = TwoTowerModel(data, weights, config.tower, meta["tower_epochs"],
                              a["item_vectors"])
        sparse = "t:knn_indptr" in names
        csr = {n: tuple(a[f"t:{n}_{p}"] for p in ("indptr", "indices", "data"))
               for n in NEIGHBOURS} if sparse else {}
        width = meta.get("neighbour_width", config.ranker.neighbours)
        padded = {}
        if sparse and runtime == "tf":  # the graph gathers from the padded tables
            for n in NEIGHBOURS:
                padded[f"{n}_idx"], padded[f"{n}_sim"] = neighbour_padded(*csr[n], width)
        tables = FeatureTables(**{k: padded.get(k) if sparse and k in _PADDED else a[f"t:{k}"]
                                  for k in FeatureTables.__dataclass_fields__ if k != "now"},
                               now=meta["now"])
        members = [[a[f"r:{n}:{k}"] for k in range(meta["layers"])]
                   for n in range(meta["members"])]
        ranker = RankerModel(members, a["r:mean"], a["r:std"], meta["ranker_epochs"])
        user_last = dict(zip(a["user_last_ids"].tolist(), a["user_last_ts"].tolist(),
                             strict=True))
        model = cls(tower, tables, ranker, config, a["popular"], user_last)
        model._csr, model._width = csr, width
        if runtime == "litert":
            model.runtime = LiteRTRuntime(*litert)
        elif runtime == "tf":
            model.runtime = GraphRuntime(model)
        return model

    def user_tokens(self, rows: list[dict | None]) -> np.ndarray:
        """[B, U] int32 user tokens of request features {column: value} (None: none)."""
        return self.tower.data.user_enc.encode_rows(rows)


def longtail_slots(I: np.ndarray, S: np.ndarray, slots: int, eligible: np.ndarray,
                   affinity: np.ndarray, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Moves each row's eligible items of highest `affinity` from below its first
    `top - slots` places into the last `slots` places of its top `top` (a discovery rule:
    the items they displace move down).

    Args:
        I: [B, n] ranked item indices, -1 pads; S: [B, n] their scores.
        slots: places of the top reserved for eligible items.
        eligible: [n_items] bool, True for the items the slots are for (e.g. the long tail).
        affinity: [B, n] how well each item suits the user (e.g. the two-tower score).
        top: the length of the top whose last places are reserved.

    Returns:
        (I, S) reordered.
    """
    I, S = I.copy(), S.copy()
    keep = top - slots
    for r in range(len(I)):
        row = I[r]
        cand = np.flatnonzero((row >= 0) & eligible[np.maximum(row, 0)])
        cand = cand[cand >= keep]
        cand = cand[np.argsort(-affinity[r, cand], kind="stable")[:slots]]
        if len(cand) == 0:
            continue
        rest = np.setdiff1d(np.arange(keep, len(row)), cand)
        order = np.concatenate([np.arange(keep), cand, rest])
        I[r], S[r] = row[order], S[r][order]
    return I, S


def model_arrays(model: ServedModel) -> dict[str, np.ndarray]:
    """Every float array the served model scores with: tower weights and item vectors, the
    feature tables, the ranker's members and standardisation."""
    t, r = model.tables, model.ranker
    out = {f"tower {k}": v for k, v in model.tower.arrays.items()}
    out["tower item_vectors"] = model.tower.item_vectors
    out.update({f"tables {k}": getattr(t, k) for k in FeatureTables.__dataclass_fields__
                if k != "now" and getattr(t, k) is not None})
    out.update({f"tables {n} similarities": model.neighbour_csr(n)[2] for n in NEIGHBOURS
                if getattr(t, f"{n}_sim") is None})
    if r is not None:
        out.update({f"ranker member {n} weight {k}": v for n, m in enumerate(r.members)
                    for k, v in enumerate(m)})
        out.update({"ranker mean": r.mean, "ranker std": r.std})
    return out


_EXPORTS = ("SAVED_MODELS", "STRING_SIGNATURES", "serving_module", "export", "check_litert")


def __getattr__(name: str):
    """The bundle writer's names, from models.served_export (where they live) on first use."""
    if name in _EXPORTS:
        import models.served_export

        return getattr(models.served_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
