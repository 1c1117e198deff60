"""The whole nightly job against a real Redis and a local artifact store."""

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.nightly import run
from infra.bundle import list_bundles, read_bundle
from infra.redis_store import ListStore
from infra.store import LocalStore
from models.schema import SchemaError


def test_nightly_publishes_every_user_without_seen_items(published):
    store_uri, redis_url, summary = published
    lists = ListStore.from_url(redis_url.rsplit("/", 1)[0] + "/1", "pub")
    assert lists.current() == summary["version"]
    store = LocalStore(store_uri)
    assert list_bundles(store) == [summary["version"]]
    bundle = read_bundle(store, summary["version"])
    assert summary["users_published"] == len(bundle.user_ids) > 0
    assert set(summary["seconds"]) == {"validate", "train_export", "precompute_publish"}
    data = pd.read_parquet(store.root.parent / "interactions.parquet")
    seen = data.groupby("user_id")["item_id"].apply(set)
    for user in bundle.user_ids[:25]:
        items, scores = lists.get_list(summary["version"], user)
        ids = {bundle.item_ids[i] for i in items}
        assert len(items) == min(20, len(bundle.item_ids) - len(seen[user]))
        assert not ids & seen[user]
        assert np.all(np.diff(scores) <= 1e-2)  # float16 rounding only


def test_nightly_dead_letters_lose_only_the_bad_rows(tmp_path, redis_client, tiny_dataset):
    df = tiny_dataset.interactions.astype({"timestamp": str, "weight": str}).copy()
    df.loc[df.index[:3], "timestamp"] = "yesterday-ish"
    df.loc[df.index[3:5], "user_id"] = ""
    df.loc[df.index[5], "weight"] = "-3"
    path = tmp_path / "interactions.csv"
    df.to_csv(path, index=False)
    url = redis_client.connection_pool.connection_kwargs
    summary = run([f"--input={path}", f"--store={tmp_path / 'store'}",
                   f"--redis_url=redis://{url['host']}:{url['port']}/0", "--epochs=1",
                   "--dim=4", "--k=5"])
    assert summary["dead_letters"] == {"unparseable timestamp": 3, "missing user_id": 2,
                                       "negative weight": 1}
    assert summary["valid_events"] == len(df) - 6
    dead = pq.read_table(io.BytesIO(LocalStore(str(tmp_path / "store")).get_bytes(
        f"runs/{summary['version']}/dead_letters.parquet"))).to_pylist()
    assert sorted(json.loads(d["row"])["timestamp"] for d in dead[:3] if
                  d["reason"] == "unparseable timestamp") == ["yesterday-ish"] * 3


def test_nightly_missing_column_names_file_and_columns(tmp_path, redis_client):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": ["1"], "item": ["2"], "timestamp": [3]}).to_csv(path, index=False)
    url = redis_client.connection_pool.connection_kwargs
    with pytest.raises(SchemaError, match=r"bad\.csv.*missing column\(s\) \['item_id'\]"):
        run([f"--input={path}", f"--store={tmp_path / 'store'}",
             f"--redis_url=redis://{url['host']}:{url['port']}/0"])
    assert redis_client.get("recsys:current") is None
