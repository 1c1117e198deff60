"""The /similar part of benchmarks/serving.py: the items' neighbours published as the nightly
publishes them (batch/similar.py over the bundle's item vectors; the benchmark's MF has no
events, so only the embedding part ranks), and the wrk rounds' targets.

    python -m benchmarks.serving --json serving.json   # JSON kinds.<kind>.similar

`similar` is /similar?k=10 over random items of the catalogue (source `cache`: one Redis GET,
the filters and the JSON), measured in the same alternating rounds as `bare` and `cached`;
`checks.similar_ok` asks issue 24's >= 0.8 x bare requests/s and p99 <= 1.5 x bare.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

log = logging.getLogger("benchmarks.serving")
RPS_RATIO, P99_RATIO = 0.8, 1.5  # issue 24's acceptance


def publish_similar(url: str, folder: str, version: str, namespace: str) -> list[str]:
    """Writes every item's neighbours of `version` (as the nightly's similar stage); returns
    the item ids."""
    from batch.similar import similar_items
    from infra.bundle import read_bundle
    from infra.redis.similar import SimilarLists
    from infra.store import open_store

    store = open_store(folder)
    no_events = pd.DataFrame({"user_id": pd.Series([], dtype=str),
                              "item_id": pd.Series([], dtype=str)})
    n = similar_items(store, SimilarLists.from_url(url, namespace), version, no_events)
    log.info("similar: %d items' neighbours published", n)
    return read_bundle(store, version, with_users=False).item_ids.tolist()


def checks(r: dict) -> dict:
    """/similar's figures against bare's."""
    s, b = r["similar"], r["bare"]
    return {"similar_rps_over_bare": round(s["rps"] / b["rps"], 3),
            "similar_p99_over_bare": round(s["p99_ms"] / b["p99_ms"], 3),
            "similar_ok": (s["rps"] >= RPS_RATIO * b["rps"]
                           and s["p99_ms"] <= P99_RATIO * b["p99_ms"])}


def target(cached_url: str, work: str, kind: str, items: list[str]) -> tuple[str, str]:
    """(URL prefix, ids file) of the /similar rounds."""
    from benchmarks.serving_load import write_ids

    return (f"{cached_url}/similar?k=10&item_id=",
            write_ids(os.path.join(work, f"items-{kind}.txt"), items))
