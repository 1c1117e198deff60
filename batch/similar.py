"""The nightly's similar-items stage: every item's neighbours into Redis under the version.

    stages.export_bundle -> similar_items (this) -> carry_over -> precompute -> publish

Runs in the driver after the export, catalogue-sized (one blocked pass over the items:
models.similar.similar_table): the co-occurrence of the run's clean rows over users, blended
with the bundle's item embeddings (item_vectors.npy: the served model's two-tower vectors,
which the item tower computes from features alone for items without events; MF's factors).
Writes NS:v:VER:i:ITEM in shards (infra/redis/similar.py); the flip then checks their count
with the users' in one Lua step, so a version's lists and neighbours publish together.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from infra.bundle import read_bundle
from infra.redis.similar import SimilarLists
from infra.store import ArtifactStore
from models.similar import SimilarConfig, item_embeddings, similar_table

log = logging.getLogger("batch.nightly")
SHARD_ITEMS = 5000  # items per write shard (one count each in NS:v:VER:similar)


def similar_items(store: ArtifactStore, similar: SimilarLists, version: str,
                  clean: pd.DataFrame, config: SimilarConfig = SimilarConfig()) -> int:
    """Computes and writes the neighbours of every item of `version`'s bundle.

    Args:
        clean: the run's valid interactions (user_id, item_id).

    Returns:
        Items written (what the flip checks: `expected_similar`).
    """
    bundle = read_bundle(store, version, with_users=False)
    item_ids = bundle.item_ids
    index = pd.Index(item_ids.astype(str))
    items = index.get_indexer(clean["item_id"].astype(str))
    known = items >= 0
    users = pd.factorize(clean["user_id"].astype(str).to_numpy()[known])[0]
    vectors = item_embeddings(bundle.item_vectors, bundle.manifest.get("model"))
    idx, score = similar_table(users, items[known].astype(np.int64), vectors, len(item_ids),
                               config)
    written = 0
    for n, lo in enumerate(range(0, len(item_ids), SHARD_ITEMS)):
        hi = min(lo + SHARD_ITEMS, len(item_ids))
        written += similar.write_shard(version, str(n), item_ids[lo:hi], idx[lo:hi],
                                       score[lo:hi])
    log.info("similar items: %d items' neighbours (%s)", written, config.source)
    return written
