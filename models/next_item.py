"""The held-out next-item task of /similar: given an item a user took, is their next item among
its top 10 neighbours?

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --task next-item

The events are split by time as the recommenders' evaluation splits them
(models.evaluation.temporal_split, the 80% quantile). Neighbours come from the train side only
(models.similar.similar_table). The cases are every user's consecutive distinct items (in
event order: time, then item id for equal times) whose second item lies after the cutoff,
the first one known to the neighbour table: (previous item, next item). HR@10 is the share of
cases whose next item is in the previous item's top 10, MRR@10 the mean reciprocal rank
there. `prev_without_events` restricts to cases whose previous item had no train event (the
new items /similar answers from their feature embedding).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from models.evaluation import event_order, temporal_split
from models.similar import SimilarConfig, similar_table

log = logging.getLogger(__name__)
K = 10
# What the report compares: the raw co-occurrence baseline, then the served choices.
VARIANTS = {"cooccurrence": SimilarConfig(source="cooc"),
            "knn": SimilarConfig(source="knn"),
            "embedding": SimilarConfig(source="embedding"),
            "blend": SimilarConfig()}


def next_item_cases(events: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """(user_id, prev, next, prev_ts) rows: each user's consecutive distinct items in event
    order whose next item's first event is at or after `cutoff`."""
    first = event_order(events).drop_duplicates(["user_id", "item_id"])
    prev = first.groupby("user_id", sort=False)["item_id"].shift(1)
    ok = prev.notna() & (first["timestamp"].to_numpy() >= cutoff)
    return pd.DataFrame({"user_id": first["user_id"][ok].to_numpy(),
                         "prev": prev[ok].to_numpy(), "next": first["item_id"][ok].to_numpy()})


def score_cases(cases: pd.DataFrame, item_ids: list[str], idx: np.ndarray,
                k: int = K) -> dict:
    """HR@k and MRR@k of a neighbour table on the cases whose previous item it knows.

    Args:
        item_ids: the table's item vocabulary (row i = item_ids[i]).
        idx: [n, >= k] neighbour indices, -1 pads.
    """
    index = {str(x): i for i, x in enumerate(item_ids)}
    p = cases["prev"].map(index)
    nx = cases["next"].map(index).fillna(-2).astype(np.int64).to_numpy()  # -2: never listed
    known = p.notna().to_numpy()
    top = idx[p[known].astype(np.int64).to_numpy(), :k]
    hit = top == nx[known, None]
    rank = np.where(hit.any(1), hit.argmax(1) + 1, 0)
    n = int(known.sum())
    return {"cases": n, f"hr@{k}": float((rank > 0).mean()) if n else None,
            f"mrr@{k}": float(np.where(rank > 0, 1.0 / np.maximum(rank, 1), 0.0).mean())
            if n else None}


def tower_vectors(train: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None,
                  epochs: int = 4) -> tuple[list[str], np.ndarray]:
    """The served model's item embeddings trained on `train` (its two-tower model, epochs as
    ServedConfig.tower_epochs), over its item vocabulary (train items plus the items table's).
    """
    from models.tower_fit import train_two_tower
    from models.two_tower import TwoTowerConfig

    model = train_two_tower(train, users, items, replace(TwoTowerConfig(), epochs=epochs,
                                                         validation=0.0))
    return [str(x) for x in model.data.items.ids], np.asarray(model.item_vectors, np.float32)


def next_item_report(interactions: pd.DataFrame, users: pd.DataFrame | None = None,
                     items: pd.DataFrame | None = None, name: str = "",
                     variants: dict[str, SimilarConfig] | None = None,
                     quantile: float = 0.8) -> dict:
    """The next-item task for each variant, on one temporal split.

    Returns:
        {"dataset", "cutoff", "cases", "variants": {name: {"cases", "hr@10", "mrr@10",
        "prev_without_events": {...}, "seconds"}}}.
    """
    variants = VARIANTS if variants is None else variants
    split = temporal_split(interactions, quantile)
    cases = next_item_cases(pd.concat([split.train, split.test]), split.cutoff)
    t = time.perf_counter()
    item_ids, vectors = tower_vectors(split.train, users, items)
    tower_seconds = time.perf_counter() - t
    index = {x: i for i, x in enumerate(item_ids)}
    train_items = split.train["item_id"].astype(str).map(index)
    known = train_items.notna().to_numpy()
    user_codes = pd.factorize(split.train["user_id"].astype(str))[0]
    u, i = user_codes[known], train_items[known].astype(np.int64).to_numpy()
    with_events = set(split.train["item_id"].astype(str))
    cold = cases[~cases["prev"].isin(with_events)]
    out = {}
    for label, config in variants.items():
        t = time.perf_counter()
        idx, _ = similar_table(u, i, vectors, len(item_ids), replace(config, k=K))
        row = {**score_cases(cases, item_ids, idx), "seconds": round(time.perf_counter() - t, 2),
               "prev_without_events": score_cases(cold, item_ids, idx)}
        log.info("next-item %s: %s", label, row)
        out[label] = row
    return {"dataset": name, "task": "next-item", "k": K, "cutoff": split.cutoff,
            "cases": len(cases), "tower_seconds": round(tower_seconds, 1), "variants": out}
