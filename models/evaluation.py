"""The temporal-holdout (TH) protocol of ../shared/EVALUATION.md as pure functions.

Split by time at the 0.8-quantile of event timestamps, build warm cases (users seen before the
cutoff) and fresh cases (first seen after it, fed their first 5 distinct items), rank the top 20
per case with a `Recommender`, and score NDCG@10, Recall@20, HR@10, coverage and long-tail
coverage, with 95% bootstrap intervals. Nothing from the test side reaches `Recommender.fit`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from models.schema import natural_key

if TYPE_CHECKING:
    import pandas as pd

N_FRESH_HISTORY = 5
TOP_N = 20


@runtime_checkable
class Recommender(Protocol):
    """A model under evaluation; `fit` sees the train side only."""

    name: str

    def fit(self, train: pd.DataFrame, users: pd.DataFrame | None,
            items: pd.DataFrame | None) -> Recommender: ...

    def recommend(self, user_ids: list[str], histories: list[list[str]], k: int,
                  fresh: bool) -> list[list[str]]:
        """Top-k item ids per user, history excluded, ties by the smaller item id.

        `fresh=True`: users unseen in training (on-demand path); False: warm users.
        """


@dataclass(frozen=True)
class Split:
    """Train (timestamp < cutoff) and test (timestamp >= cutoff), each in event order."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: float


@dataclass(frozen=True)
class Case:
    """One evaluation case: what the system knows (history) and what it must find (truth)."""

    user_id: str
    history: tuple[str, ...]
    truth: frozenset[str]
    fresh: bool


@dataclass(frozen=True)
class Cases:
    warm: list[Case]
    fresh: list[Case]


def natural_ranks(ids: pd.Series) -> np.ndarray:
    """Ranks of ids under `natural_key` (numeric ids numerically). Returns: [len(ids)] int."""
    import pandas as pd

    uniques = sorted(pd.unique(ids), key=natural_key)
    return ids.map({v: r for r, v in enumerate(uniques)}).to_numpy(dtype=np.int64)


def event_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """Interactions sorted by (timestamp, user id, item id), ids as str, index reset."""
    df = interactions.astype({"user_id": str, "item_id": str, "timestamp": "int64"})
    order = np.lexsort((natural_ranks(df["item_id"]), natural_ranks(df["user_id"]),
                        df["timestamp"].to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def temporal_split(interactions: pd.DataFrame, quantile: float = 0.8) -> Split:
    """Splits at T = the `quantile` of all timestamps (linear interpolation)."""
    df = event_order(interactions)
    cutoff = float(np.quantile(df["timestamp"].to_numpy(dtype=np.float64), quantile))
    is_train = df["timestamp"].to_numpy() < cutoff
    return Split(df[is_train].reset_index(drop=True), df[~is_train].reset_index(drop=True),
                 cutoff)


def _distinct_items(events: pd.DataFrame) -> dict[str, list[str]]:
    """Per user, distinct items in order of first event (events already in event order)."""
    first = events.drop_duplicates(["user_id", "item_id"])
    return {u: list(g) for u, g in first.groupby("user_id", sort=False)["item_id"]}


def build_cases(split: Split, n_fresh_history: int = N_FRESH_HISTORY) -> Cases:
    """Warm and fresh cases, each sorted by natural user id (EVALUATION.md steps 4-5)."""
    train_items, test_items = _distinct_items(split.train), _distinct_items(split.test)
    warm, fresh = [], []
    for user in sorted(test_items, key=natural_key):
        items = test_items[user]
        if user in train_items:
            history = tuple(train_items[user])
            truth = frozenset(items) - frozenset(history)
            if truth:
                warm.append(Case(user, history, truth, fresh=False))
        elif len(items) > n_fresh_history:
            history = tuple(items[:n_fresh_history])
            fresh.append(Case(user, history, frozenset(items[n_fresh_history:]), fresh=True))
    return Cases(warm, fresh)


def ndcg_at_k(ranked: Sequence[str], truth: frozenset[str], k: int = 10) -> float:
    """Binary NDCG: sum rel_r / log2(r + 1) over r <= k, over the ideal with min(k, |truth|)."""
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(ranked[:k]) if item in truth)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(truth))))
    return dcg / idcg


def recall_at_k(ranked: Sequence[str], truth: frozenset[str], k: int = 20) -> float:
    """Recall of a ranked list: |top-k ∩ truth| / min(k, |truth|)."""
    return len(set(ranked[:k]) & truth) / min(k, len(truth))


def hit_at_k(ranked: Sequence[str], truth: frozenset[str], k: int = 10) -> float:
    """1.0 if any of the top k is in the truth, else 0.0."""
    return float(any(item in truth for item in ranked[:k]))


def coverage_at_k(ranked_lists: Iterable[Sequence[str]], pool: set[str], k: int = 10) -> float:
    """Distinct items of `pool` in any top k, over |pool| (0.0 for an empty pool)."""
    if not pool:
        return 0.0
    shown = {item for ranked in ranked_lists for item in ranked[:k]}
    return len(shown & pool) / len(pool)


def head_mask(counts: np.ndarray, share: float = 0.2) -> np.ndarray:
    """The head of the long-tail coverage: the floor(share * n) items with most events, n the
    items with any; ties go to the smaller index (in a Vocab, the smaller item id).

    Args:
        counts: [num_items] events per item (or any increasing function of them), 0 for none.

    Returns:
        [num_items] bool, True for the head items.
    """
    counts = np.asarray(counts)
    head = np.zeros(len(counts), bool)
    n_head = math.floor(share * np.count_nonzero(counts))
    head[np.lexsort((np.arange(len(counts)), -counts))[:n_head]] = True
    return head


def head_items(train: pd.DataFrame, share: float = 0.2) -> set[str]:
    """The item ids of `head_mask` over the train events."""
    counts = train["item_id"].value_counts()
    ids = np.array(sorted(counts.index, key=natural_key), dtype=object)
    return set(ids[head_mask(counts.reindex(ids).to_numpy(), share)])


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean. Args: values: [n_cases]. Returns [lo, hi]."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return [float("nan"), float("nan")]
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def _segment(rows: list[tuple[float, float, float]]) -> dict[str, float | None]:
    names = ("ndcg@10", "recall@20", "hr@10")
    if not rows:
        return dict.fromkeys(names)
    return {name: float(np.mean([r[i] for r in rows])) for i, name in enumerate(names)}


def score_lists(cases: Cases, warm_lists: list[list[str]], fresh_lists: list[list[str]],
                train: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Metrics of ranked lists (one per case, in case order) against the cases' truth."""
    rows = {}
    for segment, seg_cases, lists in (("warm", cases.warm, warm_lists),
                                      ("fresh", cases.fresh, fresh_lists)):
        rows[segment] = [(ndcg_at_k(r, c.truth), recall_at_k(r, c.truth), hit_at_k(r, c.truth))
                         for c, r in zip(seg_cases, lists, strict=True)]
    both = rows["warm"] + rows["fresh"]
    catalog = set(train["item_id"])
    all_lists = warm_lists + fresh_lists
    return {
        "warm": _segment(rows["warm"]),
        "fresh": _segment(rows["fresh"]),
        "all": {**_segment(both),
                "ndcg@10_ci": bootstrap_ci([r[0] for r in both], n_resamples, seed),
                "recall@20_ci": bootstrap_ci([r[1] for r in both], n_resamples, seed)},
        "coverage@10": coverage_at_k(all_lists, catalog),
        "longtail_coverage@10": coverage_at_k(all_lists, catalog - head_items(train)),
    }


def recommend_cases(model: Recommender, cases: list[Case], k: int = TOP_N,
                    batch_size: int = 1024) -> list[list[str]]:
    """Calls `model.recommend` in batches and checks the contract (<= k, no history, unique)."""
    lists: list[list[str]] = []
    for start in range(0, len(cases), batch_size):
        chunk = cases[start:start + batch_size]
        fresh = {c.fresh for c in chunk}
        if len(fresh) != 1:
            raise ValueError("a batch mixes warm and fresh cases")
        out = model.recommend([c.user_id for c in chunk], [list(c.history) for c in chunk],
                              k, fresh.pop())
        if len(out) != len(chunk):
            raise ValueError(f"{model.name}: {len(out)} lists for {len(chunk)} users")
        for case, ranked in zip(chunk, out, strict=True):
            ranked = [str(i) for i in ranked]
            if len(ranked) > k or len(set(ranked)) != len(ranked) or set(ranked) & set(
                    case.history):
                raise ValueError(f"{model.name}: list for user {case.user_id} breaks the "
                                 "contract (more than k items, repeats or history items)")
            lists.append(ranked)
    return lists


def evaluate_model(model: Recommender, split: Split, cases: Cases, *,
                   users: pd.DataFrame | None = None, items: pd.DataFrame | None = None,
                   n_resamples: int = 1000, seed: int = 0) -> dict:
    """Fits `model` on the train side only (timed), ranks every case and scores it.

    Returns:
        {"warm": {...}, "fresh": {...}, "all": {..., "ndcg@10_ci", "recall@20_ci"},
         "coverage@10", "longtail_coverage@10", "train_seconds"}.
    """
    start = time.perf_counter()
    model.fit(split.train.copy(), users, items)
    train_seconds = time.perf_counter() - start
    result = score_lists(cases, recommend_cases(model, cases.warm),
                         recommend_cases(model, cases.fresh), split.train, n_resamples, seed)
    return {**result, "train_seconds": train_seconds}


def pool_recall(model, cases: Cases) -> dict[str, dict[str, float | None]]:
    """Share of the truth items that reach each candidate source's pool, per segment: what
    ranking can find at best (issue 22). For models with `candidate_pools(cases)` (a list of
    one segment's cases -> source name -> per-case arrays of item indices, "pool" their union)
    and `item_ids` (the ids of those indices).

    Returns:
        {"warm" | "fresh" | "all": {source: sum |truth ∩ pool| / sum |truth|}}; None for a
        segment without cases. A truth item the model does not know counts as missed.
    """
    ids = np.asarray(model.item_ids)
    hits: dict[str, dict[str, int]] = {}  # source -> segment -> truth items in its pools
    totals = {"warm": 0, "fresh": 0}
    for segment, seg_cases in (("warm", cases.warm), ("fresh", cases.fresh)):
        if not seg_cases:
            continue
        totals[segment] = sum(len(c.truth) for c in seg_cases)
        for source, pools in model.candidate_pools(seg_cases).items():
            if len(pools) != len(seg_cases):
                raise ValueError(f"{model.name}: {len(pools)} {source} pools for "
                                 f"{len(seg_cases)} cases")
            hits.setdefault(source, {"warm": 0, "fresh": 0})[segment] = sum(
                len(c.truth & set(ids[np.asarray(pool, np.int64)].astype(str)))
                for c, pool in zip(seg_cases, pools, strict=True))
    totals["all"] = totals["warm"] + totals["fresh"]
    for h in hits.values():
        h["all"] = h["warm"] + h["fresh"]
    return {segment: {source: h[segment] / totals[segment] if totals[segment] else None
                      for source, h in hits.items()}
            for segment in ("warm", "fresh", "all")}


def iso_utc(epoch_seconds: float) -> str:
    """ISO-8601 UTC ('Z'), with milliseconds only when the instant is fractional."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    spec = "seconds" if float(epoch_seconds).is_integer() else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def build_report(dataset_name: str, split: Split, cases: Cases, models: dict[str, dict]) -> dict:
    """The whole evaluation report; `models` maps a model name to `evaluate_model` output."""
    return {
        "dataset": dataset_name,
        "protocol": "temporal-holdout",
        "cutoff": iso_utc(split.cutoff),
        "train_events": len(split.train),
        "test_events": len(split.test),
        "cases": {"warm": len(cases.warm), "fresh": len(cases.fresh)},
        "models": models,
    }
