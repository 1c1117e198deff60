"""The leave-one-out protocol with sampled negatives (LOO-S) of ../shared/EVALUATION.md, as pure
functions: each user's latest item is held out, ranked among 99 items the user never touched.

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --protocol loo-sampled \
        --models popularity,item_knn,ease,mf,two_tower,served

It leaks time (a user's train side holds other users' later events) and samples the
competition, so it sets our figures beside published ones (NCF, Gorse); the temporal holdout
(models/evaluation.py) stays the protocol we tune and gate on. Each model scores the 100 given
candidates through `ScoringRecommender.score`, not its own top-k: an item its retrieval would
never surface must still get a score.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from models.evaluation import (
    Case,
    Recommender,
    bootstrap_ci,
    coverage_at_k,
    event_order,
    head_items,
)
from models.schema import natural_key

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
N_NEGATIVES = 99
SEED = 0


@runtime_checkable
class ScoringRecommender(Recommender, Protocol):
    """A `Recommender` that also scores items it is given (the LOO-S entry point)."""

    def score(self, user_ids: list[str], histories: list[list[str]],
              candidates: list[list[str]], fresh: bool) -> np.ndarray:
        """Scores of given items, higher is better.

        Args:
            user_ids: B user ids.
            histories: B lists of item ids, oldest first.
            candidates: B lists of C item ids each, to be scored whatever the model's own
                retrieval would surface.
            fresh: as in `recommend`.

        Returns:
            [B, C] float; -inf for an item the model cannot score (unknown to it). NaN is an
            error.
        """


@dataclass(frozen=True)
class LOOSplit:
    """Train events (every event but each case's held-out pair) and one case per user, in
    natural user order; `candidates[n]` = [the held-out item, its negatives...]."""

    train: pd.DataFrame
    cases: list[Case]
    candidates: list[list[str]]


def loo_split(interactions: pd.DataFrame, n_negatives: int = N_NEGATIVES,
              seed: int = SEED) -> LOOSplit:
    """Holds out each user's latest item and draws the negatives (EVALUATION.md, LOO-S 1-2).

    A user with fewer than 2 distinct items gives no case (all their events stay in train).
    The held-out (user, item) pair leaves train entirely, repeats included. Negatives come
    uniformly, without replacement, from the train catalog minus every item the user touched,
    drawn user after user (natural id order) from one `np.random.default_rng(seed)`, so every
    model sees the same draw. Where a user leaves fewer than `n_negatives` such items (tiny
    data), every user gets that fewer (logged), so that all candidate lists have one length.
    """
    df = event_order(interactions)  # (timestamp, user, item): a user's last row is the latest
    distinct = df.groupby("user_id")["item_id"].nunique()
    last = df[df["user_id"].isin(distinct.index[distinct >= 2])].groupby(
        "user_id", sort=False).tail(1)
    held = dict(zip(last["user_id"], last["item_id"], strict=True))
    is_held = df["item_id"].to_numpy() == df["user_id"].map(held).to_numpy()
    train = df[~is_held].reset_index(drop=True)
    catalog = np.array(sorted(set(train["item_id"]), key=natural_key), dtype=object)
    position = {item: n for n, item in enumerate(catalog)}
    first = train.drop_duplicates(["user_id", "item_id"])
    histories = {u: tuple(g) for u, g in first.groupby("user_id", sort=False)["item_id"]}
    users = sorted(held, key=natural_key)
    allowed = {}
    for user in users:
        touched = [position[i] for i in (*histories[user], held[user]) if i in position]
        allowed[user] = np.delete(np.arange(len(catalog)), touched)
    n = min([n_negatives, *(len(a) for a in allowed.values())])
    if n < n_negatives:
        log.warning("LOO-S: %d negatives per user, not %d: a user touched all but %d of the "
                    "%d train items", n, n_negatives, n, len(catalog))
    rng = np.random.default_rng(seed)
    cases, candidates = [], []
    for user in users:
        drawn = rng.choice(allowed[user], size=n, replace=False)
        cases.append(Case(user, histories[user], frozenset({held[user]}), fresh=False))
        candidates.append([held[user], *catalog[drawn]])
    return LOOSplit(train, cases, candidates)


def rank_of_positive(scores: np.ndarray) -> np.ndarray:
    """Rank of column 0 among its row: 1 + others scored strictly higher + others scored equal
    (ties count against the positive).

    Args:
        scores: [B, C], column 0 the held-out item.

    Returns:
        [B] int64 ranks in 1..C.
    """
    pos, neg = scores[:, :1], scores[:, 1:]
    return 1 + (neg > pos).sum(axis=1) + (neg == pos).sum(axis=1)


def ndcg_of_rank(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """1 / log2(rank + 1) where rank <= k, else 0. Returns: [B] float64."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def score_cases(model: ScoringRecommender, split: LOOSplit, batch_size: int = 1024
                ) -> np.ndarray:
    """Calls `model.score` in batches and checks the contract (shape, no NaN).

    Returns:
        [num_cases, C] float64 scores.
    """
    width = len(split.candidates[0]) if split.candidates else 0
    out = np.empty((len(split.cases), width))
    for lo in range(0, len(split.cases), batch_size):
        chunk, cands = split.cases[lo:lo + batch_size], split.candidates[lo:lo + batch_size]
        got = np.asarray(model.score([c.user_id for c in chunk], [list(c.history) for c in chunk],
                                     cands, False), dtype=np.float64)
        if got.shape != (len(chunk), width):
            raise ValueError(f"{model.name}: scores of shape {got.shape} for {len(chunk)} "
                             f"users x {width} candidates")
        if np.isnan(got).any():
            raise ValueError(f"{model.name}: NaN among the scores of the candidates; a model "
                             "must score every item it is given (-inf for an unknown one)")
        out[lo:lo + len(chunk)] = got
    return out


def top_candidates(scores: np.ndarray, candidates: list[list[str]], k: int = 10
                   ) -> list[list[str]]:
    """Each case's k best candidates by score (ties: the smaller item id), for coverage."""
    out = []
    for row, cands in zip(scores, candidates, strict=True):
        keys = [natural_key(c) for c in cands]
        order = sorted(range(len(cands)), key=lambda n: (-row[n], keys[n]))
        out.append([cands[n] for n in order[:k] if row[n] > -np.inf])
    return out


def evaluate_loo(model: ScoringRecommender, split: LOOSplit, *, users=None, items=None,
                 n_resamples: int = 1000, seed: int = 0) -> dict:
    """Fits `model` on the LOO train events (timed), scores every case's candidates.

    Returns:
        {"all": {"hr@10", "ndcg@10", "hr@10_ci", "ndcg@10_ci", "mean_rank"}, "coverage@10",
        "longtail_coverage@10" (both over the cases' top 10 among their candidates),
        "train_seconds"}, and "pool" (`pool_effect`) for a model with candidate pools.
    """
    start = time.perf_counter()
    model.fit(split.train.copy(), users, items)
    train_seconds = time.perf_counter() - start
    scores = score_cases(model, split)
    ranks = rank_of_positive(scores)
    hits, ndcg = (ranks <= 10).astype(np.float64), ndcg_of_rank(ranks)
    tops = top_candidates(scores, split.candidates)
    catalog = set(split.train["item_id"])
    nan = math.nan
    pool = pool_effect(model, split, scores, ranks) if hasattr(model, "candidate_pools") else {}
    return {**pool,
        "all": {"hr@10": float(hits.mean()) if len(hits) else nan,
                "ndcg@10": float(ndcg.mean()) if len(ndcg) else nan,
                "hr@10_ci": bootstrap_ci(hits, n_resamples, seed),
                "ndcg@10_ci": bootstrap_ci(ndcg, n_resamples, seed),
                "mean_rank": float(ranks.mean()) if len(ranks) else nan},
        "coverage@10": coverage_at_k(tops, catalog),
        "longtail_coverage@10": coverage_at_k(tops, catalog - head_items(split.train)),
        "train_seconds": train_seconds,
    }


def pool_effect(model, split: LOOSplit, scores: np.ndarray, ranks: np.ndarray) -> dict:
    """How a model with a candidate pool (`candidate_pools`, `item_ids`; models/served_fit.py)
    scores what its pool would never surface.

    Returns:
        {"pool": {"positive_in_pool": share of users whose held-out item is in the pool,
        "hr@10_in_pool" / "hr@10_out_of_pool": HR@10 of those users / of the others,
        "negatives_out_of_pool": mean out-of-pool negatives per user,
        "out_of_pool_at_or_above": mean of those scored at or above the held-out item}}.
    """
    ids = np.asarray(model.item_ids).astype(str)
    pools = model.candidate_pools(split.cases)["pool"]
    inside = np.array([np.isin(np.asarray(c, dtype=str), ids[np.asarray(p, np.int64)])
                       for p, c in zip(pools, split.candidates, strict=True)])
    pos, hit = inside[:, 0], ranks <= 10
    above = (scores[:, 1:] >= scores[:, :1]) & ~inside[:, 1:]

    def mean(x):
        return float(x.mean()) if x.size else None

    return {"pool": {"positive_in_pool": mean(pos), "hr@10_in_pool": mean(hit[pos]),
                     "hr@10_out_of_pool": mean(hit[~pos]),
                     "negatives_out_of_pool": mean((~inside[:, 1:]).sum(axis=1)),
                     "out_of_pool_at_or_above": mean(above.sum(axis=1))}}


def build_loo_report(dataset_name: str, split: LOOSplit, models: dict[str, dict]) -> dict:
    """The whole LOO-S report; `models` maps a model name to `evaluate_loo` output."""
    return {
        "dataset": dataset_name,
        "protocol": "loo-sampled",
        "train_events": len(split.train),
        "cases": {"all": len(split.cases)},
        "negatives": max((len(c) - 1 for c in split.candidates), default=0),
        "train_catalog": int(split.train["item_id"].nunique()),
        "models": models,
    }
