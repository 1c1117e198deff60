"""What production serves: candidate sources -> ranker -> business rules, one code path for
warm users (the nightly batch) and fresh users (the on-demand function).

    ServedModel.recommend_indices(histories, user_tok, context, k, exclude), a step of users
    at a time:
        = candidates(user tower query, histories)    two-tower top-N (exact), item-kNN and
                                                     session co-occurrence top-N, recent
                                                     top-N; EASE and GraphSAGE top-N when
                                                     ServedConfig turns them on
        -> rank(hist, user_tok, candidates, context)  features (models.features) + MLP ensemble
        -> models.rules.apply_rules_batch             exclusions out, first k
        -> models.rules.rerank                        exposure (ServedConfig.rerank_*)

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

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from models.evaluation import head_mask
from models.features import (
    ItemArrays,
    NeighbourMatrix,
    descending,
    neighbour_csr,
    neighbour_sums,
    neighbour_top,
    one_blas_thread,
    pair_features,
    tower_top,
)
from models.graphsage import GraphSAGEConfig
from models.histories import history_matrix
from models.ranker import (
    FEATURES,
    ITEM_STATS,
    FeatureTables,
    RankerConfig,
    RankerModel,
    build_tables,
)
from models.rules import apply_rules_batch, fuse, longtail_slots, rerank
from models.runtimes import NumpyRuntime
from models.schema import SECONDS_PER_DAY
from models.served_guard import fallen_rows, guarded, source_scores
from models.served_sage import sage_arrays
from models.two_tower import TwoTowerConfig, TwoTowerModel

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

log = logging.getLogger(__name__)
# Users per step of recommend_indices: the neighbour sums hold 2 x 3 x (n + 1) floats per user.
STEP_CELLS = 1 << 23
# The neighbour tables (FeatureTables.<name>_idx / _sim), which served.npz stores as CSR rows
# (t:<name>_indptr / _indices / _data): padded to M = 1,000 columns they were 95% of a
# 20,000-item bundle, rows holding ~350 kNN and ~2 session neighbours. "ease" is optional
# (ServedConfig.ease_l2; bundles written before it have none).
NEIGHBOURS = ("knn", "sess", "ease")
PADDED = tuple(f"{n}_{part}" for n in NEIGHBOURS for part in ("idx", "sim"))
# The fusion sources (ServedConfig.fusion_source) read from a neighbour table, by its name.
NEIGHBOURS_OF = {"knn": "knn", "session": "sess", "ease": "ease"}


@dataclass(frozen=True)
class ServedConfig:
    """Hyperparameters of the served pipeline.

    Attributes:
        tower: the two-tower model's: TwoTowerConfig's defaults but in-batch negatives only
            (`uniform_negatives=0`). The standalone two_tower's 256 uniform negatives
            (docs/EVALUATION_RESULTS.md, "Two-tower training") changed served on the train
            side's three validation windows by no more than noise (NDCG@10 warm / fresh /
            all +0.0015 / +0.0008 / +0.0012 with ranker seed 0, -0.0004 / +0.0010 / +0.0002
            with seeds 1, tower-source recall +0.02 / +0.01), and a served default moves
            only on a validation gain. (The test split, looked at once before this rule was
            written down, had shown warm -0.015 with them: 0.2467 against 0.2618.)
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
        rerank_beta: the exposure re-rank's popularity debiasing (models.rules.rerank: each
            ranker score minus rerank_beta x log1p train events of the item, the list
            re-sorted by it); 0 turns it off.
        rerank_slots: most places of each top 10 the exposure re-rank gives to long-tail
            items from below it, each only while the tail item's score is at least the head
            item's it displaces minus `rerank_margin`; 0 turns it off.
        rerank_margin: that margin, in the ranker's score units.
        rerank_affinity: which close-enough tail item takes a place: "ranker" (the highest
            ranker score) or "tower" (the highest two-tower score, more personal).
        rerank_diversity: the exposure re-rank's MMR weight (each top 10 picked greedily from
            the first 50 by ranker score minus rerank_diversity x the largest two-tower
            cosine to the items picked before); 0 turns it off.

            The default (1 slot, margin 1.0, "tower"; no debiasing, no MMR) is the setting
            with the most long-tail coverage@10 whose NDCG@10 fell by at most the windows'
            noise (0.005) in every segment, on three validation windows of the MovieLens 100K
            train side, with score fusion for fresh users and served's tower as it is
            (in-batch negatives; `python -m benchmarks.validate_served --set
            tower.uniform_negatives=0 --set ranker.seed=S --sweep ...`, seeds 0 and 1): no
            re-rank 0.2106 / 0.4945 / 0.3376, 0.025 and 0.2131 / 0.4938 / 0.3387, 0.024;
            1 slot margin 1.0 "tower" 0.2068 / 0.4942 / 0.3354, 0.043 and 0.2092 / 0.4951 /
            0.3371, 0.042; margin 0.8 "ranker" 0.036 and 0.034; margin 1.5 "tower" warm
            -0.0052 and -0.0060 (0.053, 0.051); 2 slots margin 1.0 "tower" warm -0.0093 and
            -0.0079 (docs/EVALUATION_RESULTS.md, "The exposure re-rank re-chosen"). With the
            tower's 256 uniform negatives, which served does not use, the same rule had
            chosen 1 slot at margin 0.8, "ranker" (ranker seed 0, score fusion on; means of
            NDCG@10 warm / fresh / all, long-tail coverage@10):
            without re-rank 0.2142 / 0.4967 / 0.3406, 0.021; 1 slot margin 0.8 "ranker"
            0.2095 / 0.4971 / 0.3382, 0.032 (seed 1: -0.0009 / +0.0001 / -0.0005 against no
            re-rank, 0.032); margin 0.6 "ranker" 0.2098 / 0.4968 / 0.3382, 0.031; margin 1.0
            "ranker" 0.2090 / 0.4961 / 0.3374, 0.034 (warm -0.0052); 1 slot margin 1.0
            "tower" 0.2083 / 0.4960 / 0.3370, 0.041 (warm -0.0058; seed
            1: -0.0024, 0.040); margin 1.5 "tower" 0.2077 / 0.4937 / 0.3356, 0.047; 2 slots
            margin 1.0 "tower" 0.2052 / 0.4962 / 0.3354, 0.051; 3 slots margin 0.6 "tower"
            0.2085 / 0.4950 / 0.3367, 0.040; margin 1.0 0.2043 / 0.4933 / 0.3336, 0.058;
            margin 1.5 0.1990 / 0.4856 / 0.3272, 0.072. Every setting of more than one slot
            or a "tower" choice cost warm more than 0.005 there. Preferring rarer tail
            items among the close-enough ones (affinity minus 0.1-3 x log1p events, a one-off
            patch) lowered NDCG in all segments in 48 of 56 setting-seed pairs and raised
            coverage by at most 0.005; the two-tower's cosine picks as its score does (its
            vectors are unit length). On the test split, looked at once after, that choice and
            1 slot at 1.0 "tower" gave equal NDCG@10 (warm / fresh / all 0.2469 / 0.4852 /
            0.3989 against 0.2467 / 0.4855 / 0.3990, both with those negatives) and long-tail
            coverage@10 0.041 against 0.049. Before fusion (the "positive" loss) 1 slot at
            margin 1.0 "tower" had been the choice too (0.2068 / 0.4878 / 0.3325, 0.045
            against 0.2106 / 0.4912 / 0.3361, 0.025), and under the listwise loss 3 slots
            at margin 0.6. Debiasing alone gained less for its cost (beta 0.1: fresh -0.010
            for 0.031; beta 0.5: fresh -0.15 for 0.059), and MMR (0.1-1.0) none
            (0.027-0.028, NDCG within 0.002). No setting within the noise came near 0.10
            (docs/EVALUATION_RESULTS.md, "The exposure re-rank re-chosen").
        tower_epochs: epochs of the tower's first fit; None picks them on the first window
            (`tower.epochs` at most, early stopping with `tower.patience`). 4 on three
            validation windows of the MovieLens 100K train side: served NDCG@10 warm /
            fresh 0.195 / 0.486 (2: 0.191 / 0.480, 6: 0.197 / 0.486 and 27% slower), where
            picking them on the last window chose 1 epoch once and averaged 0.172 / 0.482.
        ease_l2: EASE's lambda (models.served_ease: Steck's closed form over the train
            side's user-item pairs, a candidate source and the "ease" feature); None turns
            EASE off. Off by default: on three validation windows of the MovieLens 100K train
            side (`python -m benchmarks.validate_served --try ...`, means of NDCG@10 warm /
            fresh / all) served without EASE 0.2074 / 0.4852 / 0.3316, with EASE at lambda
            200 0.2026 / 0.4802 / 0.3267, 500 0.2029 / 0.4824 / 0.3278, 1000 0.2018 / 0.4806
            / 0.3265; 500 with 320 candidates (room for every source) 0.2031 / 0.4818 /
            0.3277, with 20 EASE candidates 0.2095 / 0.4822 / 0.3314 (EASE alone 0.1236 /
            0.4204 / 0.2564, item-kNN 0.1087 / 0.4584 / 0.2651): the kNN source and feature
            already carry what EASE knows there.
        n_ease: EASE candidates (top-N of the history's summed EASE weights).
        ease_neighbours: EASE weights kept per history item (the largest in absolute value).
        ease_max_items: most items the closed form covers (a dense [n, n] matrix: 1.6 GB of
            float32 at 20,000); a larger catalogue's least-used items get no EASE.
        graphsage: GraphSAGE's hyperparameters when GraphSAGE (models.graphsage) is a
            candidate source and the "graphsage" feature (`--served-config
            '{"graphsage": {}}'` or `recsys nightly --graphsage-config FILE`); None leaves it
            out. Off by default: on the three validation windows GraphSAGEConfig() with 4
            epochs gave 0.2079 / 0.4957 / 0.3366 against 0.2074 / 0.4852 / 0.3316 without
            (fresh higher on every window, warm lower on two of three: -0.0006, -0.0047)
            for 5.6x the fit time (233 s against 41 s per window on a loaded machine), and
            on the test split of `recsys evaluate` warm fell 0.0086 (issue 21's rule keeps
            it out: docs/EVALUATION_RESULTS.md, "GraphSAGE inside served").
        fusion_warm, fusion_fresh: the weight (0-100) of score fusion for warm and for fresh users
            (models.rules.fuse: the ranker's scores of the pool plus that weight times the
            fusion source's standardised scores, or reciprocal-rank fusion of the two orders;
            before the guard and the exposure re-rank); 0 turns it off for that segment.

            The default (fresh 0.5, warm 0, "knn", "z") was chosen on three validation
            windows of the MovieLens 100K train side (`python -m benchmarks.validate_served
            --set ranker.seed=S --sweep fusion_fresh=W ... --try fusion_fresh=0.5`, seeds 0
            and 1, one fit re-scored per weight; means of NDCG@10 warm / fresh / all): fusion
            off 0.2068 / 0.4878 / 0.3325 and 0.2092 / 0.4875 / 0.3337; kNN "z" 0.25 0.4927
            / 0.4944 fresh, **0.5 0.4942 / 0.4951** (all 0.3354 / 0.3371, warm unchanged;
            fresh higher on all 6 origin-seed pairs, +0.0004 to +0.0155; the same when the
            fit's guard and validation judge the fused order, `--try`), 1.0 0.4922 / 0.4911,
            2.0 0.4904 / 0.4912; "rrf" 0.5 0.4953 / 0.4945, 1.0 0.4938 / 0.4902, 2.0
            0.4925 / 0.4910; other sources at 0.5 lost fresh NDCG@10 (popular 0.4790 /
            0.4770, tower 0.4834 / 0.4839, session 0.4800 / 0.4774); warm fusion 0.25 with
            fresh 0.5 gained warm 0.0008 / 0.0012 for long-tail coverage@10 0.043 -> 0.036 /
            0.042 -> 0.034 (docs/EVALUATION_RESULTS.md, "Score fusion for fresh users").
        fusion_source: the candidate source whose scores are fused, as the ranker's feature
            of it reads them (`fusion_column`): "knn", "session", "ease" (with EASE) their
            similarity sums over the last H history items, "tower" and "graphsage" (with
            GraphSAGE) their inner products, "popular" its order (7-day events + all / 100).
        fusion_kind: "z" (the source's z-score scaled by the ranker's spread) or "rrf"
            (reciprocal-rank fusion; the ranker's scores handed out in the fused order).
        n_graphsage: GraphSAGE candidates (top-N by its query · item vectors).
        graphsage_epochs: epochs of each window's GraphSAGE fit: 4; 2 gave 0.2034 / 0.4884 /
            0.3309 on the validation windows.
    """

    tower: TwoTowerConfig = TwoTowerConfig(uniform_negatives=0)
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
    rerank_beta: float = 0.0
    rerank_slots: int = 1
    rerank_margin: float = 1.0
    rerank_affinity: str = "tower"
    rerank_diversity: float = 0.0
    tower_epochs: int | None = 4
    ease_l2: float | None = None
    n_ease: int = 100
    ease_neighbours: int = 1000
    ease_max_items: int = 20_000
    graphsage: GraphSAGEConfig | None = None
    n_graphsage: int = 50
    graphsage_epochs: int = 4
    fusion_warm: float = 0.0
    fusion_fresh: float = 0.5
    fusion_source: str = "knn"
    fusion_kind: str = "z"

    @property
    def fusing(self) -> bool:
        """True when score fusion acts on some segment (fusion_warm, fusion_fresh)."""
        return bool(self.fusion_warm or self.fusion_fresh)

    def __post_init__(self) -> None:
        slots = {"longtail_slots": self.longtail_slots, "new_item_slots": self.new_item_slots}
        if any(not isinstance(v, int) or v < 0 for v in slots.values()) or sum(slots.values()) > 10:
            raise ValueError(f"{slots}: each must be a whole number >= 0, together at most 10 "
                             "(the places of a top 10)")
        rerank = (self.rerank_beta, self.rerank_margin, self.rerank_diversity)
        if (not all(isinstance(v, int | float) and 0 <= v < np.inf for v in rerank)
                or not isinstance(self.rerank_slots, int) or not 0 <= self.rerank_slots <= 10):
            raise ValueError(f"rerank_beta {self.rerank_beta!r}, rerank_margin "
                             f"{self.rerank_margin!r}, rerank_diversity "
                             f"{self.rerank_diversity!r}: numbers >= 0; rerank_slots "
                             f"{self.rerank_slots!r}: a whole number 0-10")
        if self.rerank_affinity not in ("ranker", "tower"):
            raise ValueError(f"rerank_affinity {self.rerank_affinity!r}: \"ranker\" or "
                             "\"tower\"")
        if self.ease_l2 is not None and not (isinstance(self.ease_l2, int | float)
                                             and self.ease_l2 > 0):
            raise ValueError(f"ease_l2 {self.ease_l2!r}: a number > 0, or null to turn EASE off")
        fusion = (self.fusion_warm, self.fusion_fresh)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100
                   for v in fusion):  # 1 gives the source the ranker's own spread; a huge
            # weight overflows the fused scores to +-inf, which the lists drop as padding
            raise ValueError(f"fusion_warm {self.fusion_warm!r}, fusion_fresh "
                             f"{self.fusion_fresh!r}: numbers in [0, 100] (0 turns fusion "
                             "off)")
        sources = {"knn", "tower", "session", "popular"} | (
            {"ease"} if self.ease_l2 is not None else set()) | (
            {"graphsage"} if self.graphsage is not None else set())
        if self.fusion_source not in sources or self.fusion_kind not in ("z", "rrf"):
            raise ValueError(f"fusion_source {self.fusion_source!r}: one of {sorted(sources)}; "
                             f"fusion_kind {self.fusion_kind!r}: \"z\" or \"rrf\"")
        counts = {k: getattr(self, k) for k in ("n_ease", "ease_neighbours", "ease_max_items",
                                                "n_graphsage", "graphsage_epochs")}
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in counts.values()):
            raise ValueError(f"{counts}: each must be a whole number >= 1")


def fusion_column(X: np.ndarray, config: ServedConfig) -> np.ndarray:
    """[N, C] the fusion source's scores (ServedConfig.fusion_source) read from the ranker's
    features X [N, C, F] (columns: ServedModel.feature_names() of a model of `config`), as
    ServedModel.fused reads them at serving time: what models.served_fit.validate fuses."""
    names = (*FEATURES, *(("ease",) if config.ease_l2 is not None else ()),
             *(("graphsage",) if config.graphsage is not None else ()))
    if config.fusion_source == "popular":
        return X[..., names.index("pop_7d")] + X[..., names.index("pop_all")] / 100
    return X[..., names.index(config.fusion_source)]


def _ease(train: pd.DataFrame, tower: TwoTowerModel, config: ServedConfig
          ) -> tuple[np.ndarray, np.ndarray]:
    """The EASE table (models.served_ease) of train's user-item pairs over the tower's items."""
    import pandas as pd

    from models.served_ease import ease_table

    i = tower.data.items.lookup(train["item_id"])
    u = pd.factorize(train["user_id"].astype(str))[0]
    keep = i >= 0
    return ease_table(u[keep], i[keep], len(tower.data.items), float(config.ease_l2),
                      config.ease_neighbours, config.ease_max_items)


@dataclass
class _Arrays:
    """What ServedModel scoring gathers from (see ServedModel.arrays)."""

    neighbours: dict[str, NeighbourMatrix]
    items: ItemArrays


@dataclass
class ServedModel:
    """The bundle's content: tower, feature tables, ranker and the warm users' last events.

    Both serving paths call `recommend_indices` with inputs built by `history_indices`
    (item ids -> indices), `user_tokens` (feature rows -> [B, U] token ids) and `context`.

    Attributes:
        popular: [n_popular] item indices, most popular in the last 7 days first.
        user_last: user id -> timestamp of the user's last train event.
        runtime: NumpyRuntime (built on first use), LiteRTRuntime or GraphRuntime.
        validation: the fit's figure of its last window (models.served_fit), or None.
        neighbours: name -> the neighbour table as CSR rows (indptr, indices, data) when a
            bundle gave them so (its padded `tables.<name>_idx/_sim` are then None).
        width: M, the columns of the padded neighbour tables, when a bundle gave it.
        sage: the GraphSAGE candidate source and feature (models.graphsage.GraphSAGEModel,
            or a bundle's models.served_sage.SageArrays: `user_vectors(hist, user_tok)` and
            `item_vectors` over this model's items), or None.
        fallback: segment ("warm", "fresh") -> the candidate source whose own order that
            segment's lists take instead of the ranker's (models.served_guard: the fit's
            guard found the source better on its validation window); empty: the ranker's.
    """

    tower: TwoTowerModel
    tables: FeatureTables
    ranker: RankerModel | None
    config: ServedConfig
    popular: np.ndarray
    user_last: dict[str, float] = field(default_factory=dict)
    runtime: object = None
    validation: dict | None = None
    neighbours: dict[str, tuple] = field(default_factory=dict, repr=False)
    width: int | None = None
    sage: object = field(default=None, repr=False)
    fallback: dict[str, str] = field(default_factory=dict)
    _arrays: _Arrays | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, train: pd.DataFrame, tower: TwoTowerModel, items: pd.DataFrame | None,
              config: ServedConfig, ranker: RankerModel | None = None,
              event_weights: Mapping[str, float] | None = None) -> ServedModel:
        """The tables, the recent-popular source and the users' last events of `train`
        (`event_weights`: event type -> weight, None the schema's defaults)."""
        tables = build_tables(train, tower, items, config.ranker, event_weights)
        if config.ease_l2 is not None:
            tables.ease_idx, tables.ease_sim = _ease(train, tower, config)
        pop7 = tables.item_stats[:-1, ITEM_STATS.index("pop_7d")] + tables.item_stats[:-1, 0] / 100
        popular = np.lexsort((np.arange(len(pop7)), -pop7))[:config.n_popular]
        last = train.groupby(train["user_id"].astype(str))["timestamp"].max()
        return cls(tower, tables, ranker, config, popular, last.astype(float).to_dict())

    def with_sage(self, sage) -> ServedModel:
        """This model with GraphSAGE (see `sage`) as a source and feature; returns self."""
        self.sage, self._arrays = sage, None
        return self

    def get_runtime(self):
        """The runtime of the user tower and the ranker (a NumpyRuntime unless one was set)."""
        if self.runtime is None:
            self.runtime = NumpyRuntime(self)
        return self.runtime

    def arrays(self) -> _Arrays:
        """What scoring gathers from, built on first use: the neighbour matrices and the
        per-item feature arrays."""
        if self._arrays is None:
            self._arrays = _Arrays(
                {n: NeighbourMatrix.from_csr(*self.neighbour_csr(n))
                 for n in self.neighbour_names()},
                ItemArrays.build(self.tables, self.tower.data.item_enc.size))
        return self._arrays

    def neighbour_names(self) -> tuple[str, ...]:
        """The neighbour tables this model has: "knn", "sess" and, with EASE, "ease"."""
        return tuple(n for n in NEIGHBOURS if n in self.neighbours
                     or getattr(self.tables, f"{n}_idx") is not None)

    def feature_names(self) -> tuple[str, ...]:
        """The ranker's feature columns: models.ranker.FEATURES, then "ease" with EASE and
        "graphsage" with GraphSAGE (their columns of `features`)."""
        return (*FEATURES, *(("ease",) if "ease" in self.neighbour_names() else ()),
                *(("graphsage",) if self.sage is not None else ()))

    def neighbour_csr(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The neighbour table `name` ("knn", "sess", "ease") as (indptr, indices, data), as a
        sparse bundle holds it (a model loaded from one has no padded tables but for the TF
        graph)."""
        if name in self.neighbours:
            return self.neighbours[name]
        return neighbour_csr(getattr(self.tables, f"{name}_idx"),
                             getattr(self.tables, f"{name}_sim"))

    def neighbour_sums(self, histories: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """[B, 3, n + 1] sums over each history (models.features) of each table of
        `neighbour_names()`: (kNN, session[, EASE])."""
        a, c = self.arrays(), self.config.tower
        return tuple(neighbour_sums(a.neighbours[n], histories, c.history, c.recent)
                     for n in self.neighbour_names())

    def sage_query(self, hist: np.ndarray, user_tok: np.ndarray) -> np.ndarray | None:
        """GraphSAGE's query vectors [B, d] of the history matrix hist [B, H] (the tower's H)
        and user tokens, or None without GraphSAGE (NumPy in every runtime)."""
        return None if self.sage is None else self.sage.user_vectors(hist, user_tok)

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
    def candidate_sources(self, query: np.ndarray, histories: list[np.ndarray],
                          sums: tuple[np.ndarray, ...] | None = None,
                          sage_q: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each candidate source's top-N, history excluded, in the order `candidates` merges
        them: "tower", "graphsage" (with GraphSAGE), "knn", "ease" (with EASE), "session",
        "popular".

        Args:
            query: [B, d] user tower output.
            histories: B arrays of item indices.
            sums: `neighbour_sums(histories)` when the caller has them.
            sage_q: `sage_query` of the histories (needed with GraphSAGE).

        Returns:
            source -> [B, N_source] int64 item indices, best first, -1 pads.
        """
        c = self.config
        sums = dict(zip(self.neighbour_names(),
                        sums if sums is not None else self.neighbour_sums(histories),
                        strict=True))
        out = {"tower": tower_top(self.tower.item_vectors, query, histories, c.n_tower)}
        if self.sage is not None:
            if sage_q is None:
                raise ValueError("served with GraphSAGE: pass sage_q (ServedModel.sage_query)")
            out["graphsage"] = tower_top(self.sage.item_vectors, sage_q, histories,
                                         c.n_graphsage)
        out["knn"] = neighbour_top(sums["knn"][:, 2], histories, c.n_knn)
        if "ease" in sums:
            out["ease"] = neighbour_top(sums["ease"][:, 2], histories, c.n_ease)
        out["session"] = neighbour_top(sums["sess"][:, 2], histories, c.n_session)
        popular = np.tile(self.popular, (len(histories), 1))
        out["popular"] = apply_rules_batch(popular, np.zeros(popular.shape, np.float32),
                                           popular.shape[1], histories)[0]
        return out

    def candidates(self, query: np.ndarray, histories: list[np.ndarray],
                   sums: tuple[np.ndarray, ...] | None = None,
                   sage_q: np.ndarray | None = None) -> np.ndarray:
        """Candidate item indices from every source, history excluded.

        Args:
            query, histories, sums, sage_q: as in `candidate_sources`.

        Returns:
            [B, C] int64, -1 pads: the sources of `candidate_sources` in its order, repeats
            dropped, the first C kept.
        """
        merged = np.concatenate(list(self.candidate_sources(query, histories, sums,
                                                            sage_q).values()), 1)
        return apply_rules_batch(merged, np.zeros(merged.shape, np.float32),
                                 self.config.candidates, histories)[0]

    def features(self, hist: np.ndarray, user_tok: np.ndarray, cand: np.ndarray,
                 context: np.ndarray, query: np.ndarray | None = None,
                 sums: tuple[np.ndarray, ...] | None = None,
                 sage_q: np.ndarray | None = None) -> np.ndarray:
        """The ranker's features [B, C, F] of the candidates [B, C] (models.features; the
        columns are `feature_names()`).

        Args:
            hist: [B, H] int32 history matrix (`history_matrix`), -1 pads.
            user_tok, context: as in `recommend_indices`.
            cand: [B, C] candidate item indices, -1 pads.
            query: the user tower's output for (hist, user_tok), when the caller has it.
            sums: `neighbour_sums` of the histories hist was cut from, when the caller has
                them (else they are summed over hist, which holds the H the features read).
            sage_q: `sage_query(hist, user_tok)`, when the caller has it.
        """
        if query is None:
            query = self.get_runtime().user_embedding(hist, user_tok)
        if sums is None:
            sums = self.neighbour_sums([row[row >= 0] for row in hist])
        c = np.where(cand < 0, len(self.tower.data.items), cand).astype(np.int64)
        rows = np.arange(len(cand))[:, None]
        extra = [s[rows, 1, c] for s in sums[2:]]  # EASE over the last H, as kNN
        if self.sage is not None:
            if sage_q is None:
                sage_q = self.sage_query(hist, user_tok)
            vectors = np.vstack([self.sage.item_vectors,
                                 np.zeros_like(self.sage.item_vectors[:1])])
            extra.append(np.einsum("bcd,bd->bc", vectors[c], sage_q))
        return pair_features(self.tables, self.arrays().items, query, hist, user_tok, cand,
                             context, *sums[:2], extra=tuple(extra))

    def rank(self, hist: np.ndarray, user_tok: np.ndarray, cand: np.ndarray,
             context: np.ndarray, query: np.ndarray | None = None,
             sums: tuple[np.ndarray, ...] | None = None,
             sage_q: np.ndarray | None = None) -> np.ndarray:
        """Ranker scores [B, C] float32 (-inf on padding) of the candidates [B, C]; the
        arguments are `features`'."""
        runtime = self.get_runtime()
        if getattr(runtime, "ranks_requests", False):  # an older bundle's LiteRT ranker
            scores = runtime.rank(hist, user_tok, cand.astype(np.int32), context)
        else:
            scores = runtime.score(self.features(hist, user_tok, cand, context, query, sums,
                                                 sage_q))
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
        sage_q = self.sage_query(hist, user_tok)
        cand = self.candidates(query, histories, sums, sage_q)
        scores = self.rank(hist, user_tok, cand, context, query, sums, sage_q)
        scores = self.fused(cand, scores, context, query, sums, sage_q)
        if self.fallback:  # the guard of models.served_fit: a segment served by a source
            cand, scores = guarded(self, cand, scores, context, query, histories, sums, sage_q)
        order = descending(scores, cand)  # ties: the smaller item index first
        cand, scores = np.take_along_axis(cand, order, 1), np.take_along_axis(scores, order, 1)
        c = self.config
        tail, new = c.longtail_slots, c.new_item_slots
        reranks = c.rerank_beta or c.rerank_slots or c.rerank_diversity
        more = tail or new or reranks
        # the candidates hold no history item and no repeat: only `exclude` is left to drop
        I, S = apply_rules_batch(cand, scores, cand.shape[1] if more else k, exclude,
                                 unique=True)
        # A segment the guard sends to a source is served that source's list as it is: the
        # re-ranks below read the ranker's scores (margins in its units), which its rows lack.
        fell = fallen_rows(self, context) if self.fallback and more else None
        kept = (I.copy(), S.copy()) if fell is not None and fell.any() else None

        def tower(I: np.ndarray) -> np.ndarray:  # the two-tower score of each listed item
            return np.einsum("bd,bcd->bc", query, self.tables.item_vectors[I])

        if reranks:
            I, S = rerank(I, S, self.tables.item_stats[:-1, 0], ~self.head_items(),
                          c.rerank_beta, c.rerank_slots, c.rerank_margin,
                          affinity=tower(I) if c.rerank_affinity == "tower" else None,
                          diversity=c.rerank_diversity, vectors=self.tables.item_vectors)

        if tail:
            affinity = S if self.config.longtail_affinity == "ranker" else tower(I)
            I, S = longtail_slots(I, S, tail, ~self.head_items(), affinity, top=10 - new)
        if new:
            I, S = longtail_slots(I, S, new, self.new_items(), tower(I))
        if kept is not None:
            I[fell], S[fell] = kept[0][fell], kept[1][fell]
        return I[:, :k], S[:, :k]

    def fused(self, cand: np.ndarray, scores: np.ndarray, context: np.ndarray,
              query: np.ndarray, sums: tuple[np.ndarray, ...], sage_q: np.ndarray | None,
              pool: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The ranker's scores [B, C] of the candidates [B, C] fused with the fusion source's
        (ServedConfig.fusion_*; models.rules.fuse), per row by its segment's weight; the
        scores themselves when both weights are 0. The other arguments are `rank`'s, and
        `pool` (the candidate pool [B, P] and the ranker's scores of it), when `cand` are
        other items than the pool the lists are fused over: each item then gets the fused
        score it would have in the lists (ServedRecommender.score)."""
        c = self.config
        if not c.fusing:
            return scores
        weight = np.where(context[:, 0] > 0.5, c.fusion_fresh, c.fusion_warm)
        ref = None if pool is None else (
            pool[1], self._fusion_source(pool[0], query, sums, sage_q))
        return fuse(scores, self._fusion_source(cand, query, sums, sage_q), weight,
                    c.fusion_kind, ref=ref)

    def _fusion_source(self, cand: np.ndarray, query: np.ndarray, sums: tuple[np.ndarray, ...],
                       sage_q: np.ndarray | None) -> np.ndarray:
        """[B, C] the fusion source's scores of the candidates, as its ranking feature reads
        them (`fusion_column`)."""
        c = self.config
        if c.fusion_source in NEIGHBOURS_OF:  # the ranker's feature: the sums over the last H
            tables = dict(zip(self.neighbour_names(), sums, strict=True))
            rows = np.arange(len(cand))[:, None]
            c_ = np.where(cand < 0, len(self.tower.data.items), cand).astype(np.int64)
            return tables[NEIGHBOURS_OF[c.fusion_source]][rows, 1, c_]
        return source_scores(self, c.fusion_source, query, sums, sage_q, cand)

    def head_items(self) -> np.ndarray:
        """[n_items] bool: the head of the evaluation's long-tail coverage
        (models.evaluation.head_mask of the train events per item)."""
        return head_mask(self.tables.item_stats[:-1, 0])

    def new_items(self) -> np.ndarray:
        """[n_items] bool: the items without a train event (embedded from features only)."""
        return self.tables.item_stats[:-1, 0] == 0

    def float_arrays(self) -> dict[str, np.ndarray]:
        """Every float array the model scores with, by name (tower weights and item vectors,
        feature tables, ranker members and standardisation): what must be finite."""
        t, r = self.tables, self.ranker
        out = {f"tower {k}": v for k, v in self.tower.arrays.items()}
        out["tower item_vectors"] = self.tower.item_vectors
        out.update({f"tables {k}": getattr(t, k) for k in FeatureTables.__dataclass_fields__
                    if k != "now" and getattr(t, k) is not None})
        out.update({f"tables {n} similarities": self.neighbour_csr(n)[2]
                    for n in self.neighbour_names() if getattr(t, f"{n}_sim") is None})
        if self.sage is not None:
            out.update({f"graphsage {k}": v for k, v in sage_arrays(self.sage).items()})
        if r is not None:
            out.update({f"ranker member {n} weight {k}": v for n, m in enumerate(r.members)
                        for k, v in enumerate(m)})
            out.update({"ranker mean": r.mean, "ranker std": r.std})
        return out

    def step(self) -> int:
        """Users per step of recommend_indices (and models.served_fit.ranking_data; see
        STEP_CELLS)."""
        return int(np.clip(STEP_CELLS // (6 * (len(self.tower.data.items) + 1)), 8, 256))

    def user_tokens(self, rows: list[dict | None]) -> np.ndarray:
        """[B, U] int32 user tokens of request features {column: value} (None: none)."""
        return self.tower.data.user_enc.encode_rows(rows)
