"""The whole nightly job against a real Redis and a local artifact store."""

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.nightly import run
from infra.bundle import list_bundles, read_bundle
from infra.events_log import read_impressions_log
from infra.redis.event_stream import EventStream
from infra.redis.impressions import ImpressionStream
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models.schema import SchemaError


def test_nightly_publishes_every_user_without_seen_items(published):
    store_uri, redis_url, summary = published
    lists = ServedLists.from_url(redis_url.rsplit("/", 1)[0] + "/1", "pub")
    assert lists.current() == summary["version"]
    store = LocalStore(store_uri)
    assert list_bundles(store) == [summary["version"]]
    bundle = read_bundle(store, summary["version"])
    assert summary["users_published"] == len(bundle.user_ids) > 0
    assert set(summary["seconds"]) == {"drain_events", "validate", "train", "export",
                                       "similar", "carry_over", "precompute_publish"}
    assert summary["similar_items"] == len(bundle.item_ids)  # checked by the same flip
    assert summary["users_refreshed"] == summary["users_new"] == summary["users_published"]
    data = pd.read_parquet(store.root.parent / "interactions.parquet")
    seen = data.groupby("user_id")["item_id"].apply(set)
    for user in bundle.user_ids[:25]:
        items, scores = lists.get_list(summary["version"], user)
        ids = {bundle.item_ids[i] for i in items}
        assert len(items) == min(20, len(bundle.item_ids) - len(seen[user]))
        assert not ids & seen[user]
        assert np.all(np.diff(scores) <= 1e-2)  # float16 rounding only


def corrupt_one_percent(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Corrupts 1% of the rows (five kinds) and adds exact copies; returns the expectation."""
    df = df.astype({"timestamp": str, "weight": str}).reset_index(drop=True)
    rows = np.random.default_rng(seed).choice(len(df), len(df) // 100, replace=False)
    kinds = np.array_split(rows, 5)
    df.loc[kinds[0], "timestamp"] = "yesterday-ish"
    df.loc[kinds[1], "user_id"] = ""
    df.loc[kinds[2], "weight"] = "-3"
    df.loc[kinds[3], "weight"] = "lots"
    df.loc[kinds[4], "event_type"] = "teleport"
    copies = df.drop(index=rows).sample(5, random_state=seed)
    expected = {"unparseable timestamp": len(kinds[0]), "missing user_id": len(kinds[1]),
                "negative weight": len(kinds[2]), "non-numeric weight": len(kinds[3]),
                "unknown event_type": len(kinds[4]), "exact duplicate": 5}
    return pd.concat([df, copies], ignore_index=True), expected


# Slow: a nightly run. Fast loop: tests/batch/test_stages.py
# test_validate_keeps_clean_rows_and_stores_each_dead_letter (each reason counted, the rows
# stored in runs/<version>/dead_letters.parquet) and tests/batch/test_transforms.py.
@pytest.mark.slow
def test_nightly_dead_letters_lose_only_the_bad_rows(tmp_path, redis_client, tiny_dataset):
    df, expected = corrupt_one_percent(tiny_dataset.interactions)
    path = tmp_path / "interactions.csv"
    df.to_csv(path, index=False)
    url = redis_client.connection_pool.connection_kwargs
    summary = run([f"--input={path}", f"--store={tmp_path / 'store'}",
                   f"--redis_url=redis://{url['host']}:{url['port']}/0", "--model=mf", "--epochs=1",
                   "--dim=4", "--k=5", "--skip_gate"])
    assert summary["dead_letters"] == expected
    assert summary["valid_events"] == len(tiny_dataset.interactions) - sum(expected.values()) + 5
    dead = pq.read_table(io.BytesIO(LocalStore(str(tmp_path / "store")).get_bytes(
        f"runs/{summary['version']}/dead_letters.parquet"))).to_pylist()
    assert len(dead) == sum(expected.values())
    assert {json.loads(d["row"])["timestamp"] for d in dead
            if d["reason"] == "unparseable timestamp"} == {"yesterday-ish"}


def test_nightly_missing_column_names_file_and_columns(tmp_path, redis_client):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": ["1"], "item": ["2"], "timestamp": [3]}).to_csv(path, index=False)
    url = redis_client.connection_pool.connection_kwargs
    with pytest.raises(SchemaError, match=r"bad\.csv.*missing column\(s\) \['item_id'\]"):
        run([f"--input={path}", f"--store={tmp_path / 'store'}",
             f"--redis_url=redis://{url['host']}:{url['port']}/0"])
    assert redis_client.get("recsys:current") is None


def test_nightly_reads_and_writes_s3(tmp_path, redis_client, tiny_dataset, s3_endpoint,
                                     monkeypatch):
    import boto3

    from infra.store import S3Store

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1", "RECSYS_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="nightly")
    df = tiny_dataset.interactions.astype({"timestamp": str}).copy()
    df.loc[df.index[0], "timestamp"] = "garbage"
    buf = io.BytesIO()
    df.to_parquet(buf)
    s3.put_object(Bucket="nightly", Key="logs/day1.parquet", Body=buf.getvalue())
    url = redis_client.connection_pool.connection_kwargs
    summary = run(["--input=s3://nightly/logs/", "--store=s3://nightly/recsys",
                   f"--redis_url=redis://{url['host']}:{url['port']}/0", "--model=mf", "--epochs=1",
                   "--dim=4", "--k=5", "--skip_gate", "--direct_running_mode=in_memory"])
    store = S3Store("s3://nightly/recsys")
    assert list_bundles(store) == [summary["version"]]
    assert store.exists(f"runs/{summary['version']}/summary.json")
    assert store.exists(f"runs/{summary['version']}/dead_letters.parquet")
    assert summary["dead_letters"] == {"unparseable timestamp": 1}
    assert ServedLists(redis_client).current() == summary["version"]


def test_events_posted_since_the_last_run_are_drained_and_trained_on(tmp_path, redis_client,
                                                                       tiny_dataset):
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    url = redis_client.connection_pool.connection_kwargs
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0",
            "--model=mf", "--epochs=1", "--dim=4",
            "--k=5", "--skip_gate", "--direct_running_mode=in_memory"]
    lists = ServedLists(redis_client)
    items = tiny_dataset.interactions["item_id"].unique()[:3]
    now = int(tiny_dataset.interactions["timestamp"].max()) + 60
    EventStream(redis_client).append([{"user_id": "arrived-today", "item_id": i,
                                       "event_type": "click", "timestamp": now + n,
                                       "event_id": f"e{n}"} for n, i in enumerate(items)])
    ImpressionStream(redis_client).add([{  # an answer served: drained for the reports too
        "recommendation_id": "0" * 32, "user_id": "arrived-today", "experiment": "",
        "arm": "", "version": "v", "items": [str(items[0])], "source": "popular",
        "status": 200, "latency_ms": 3.0, "ts_ms": now * 1000}])
    summary = run(argv)
    assert summary["events_drained"]["events"] == 3
    assert redis_client.xlen("recsys:impressions") == 0
    assert len(read_impressions_log(LocalStore(str(tmp_path / "store")))) == 1
    assert summary["valid_events"] == len(tiny_dataset.interactions) + 3
    got = lists.get_list(summary["version"], "arrived-today")
    assert got is not None and len(got[0]) == 5
    assert redis_client.xlen("recsys:events") == 0  # acknowledged only after the file
    again = run(argv)  # the log is kept: the next run trains on it too, without duplicates
    assert again["events_drained"]["events"] == 0
    assert again["valid_events"] == summary["valid_events"]


# Slow: two nightly runs. Fast loop: tests/models/test_mf.py and test_non_finite.py (a weight
# past float32 range or a NaN bundle is refused) and tests/batch/test_stages.py (a run that
# stops before its publish publishes nothing).
@pytest.mark.slow
def test_hardening_03_a_weight_past_float32_range_never_publishes_a_nan_model(
        tmp_path, redis_client, tiny_dataset):
    data = tiny_dataset.interactions
    path = tmp_path / "interactions.parquet"
    url = redis_client.connection_pool.connection_kwargs
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0",
            "--model=mf", "--epochs=1", "--dim=4",
            "--k=5", "--skip_gate", "--direct_running_mode=in_memory", "--no_drain_events"]
    data.to_parquet(path)
    first = run(argv)["version"]
    poisoned = data.astype({"weight": float})
    poisoned.loc[poisoned.index[0], "weight"] = 1e39  # finite in float64, inf in float32
    poisoned.to_parquet(path)
    lists, store = ServedLists(redis_client), LocalStore(str(tmp_path / "store"))
    users = sorted(data["user_id"].unique())
    try:
        summary = run(argv)
    except ValueError as e:  # training refused the row: nothing published
        assert "non-finite" in str(e)
        assert lists.current() == first and lists.versions() == [first]
        assert list_bundles(store) == [first]  # no manifest: the bundle was not committed
    else:  # validation dead-lettered the row: a valid version replaces the old one
        bundle = read_bundle(store, summary["version"])
        assert np.isfinite(bundle.item_vectors).all()
        assert np.isfinite(bundle.array("user_vectors.npy")).all()
        assert sum(summary["dead_letters"].values()) == 1
        assert summary["valid_events"] == len(data) - 1
    current = lists.current()
    assert all(len(lists.get_list(current, u)[0]) == 5 for u in users)  # no empty list


@pytest.mark.slow
def test_a_nightly_without_runner_flag_runs_fnapi_never_prism(tmp_path, redis_client,
                                                              tiny_dataset, monkeypatch):
    # Beam's DirectRunner first tries Prism (downloaded when online) and falls back to the
    # FnApiRunner only when that fails: the job names its local runner so that it runs the same
    # with or without internet.
    from apache_beam.runners.portability import prism_runner

    tried = []

    def refuse(self, *args, **kwargs):
        tried.append(type(self).__name__)
        raise RuntimeError("Prism is not what the nightly runs")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    url = redis_client.connection_pool.connection_kwargs
    summary = run([f"--input={path}", f"--store={tmp_path / 'store'}",
                   f"--redis_url=redis://{url['host']}:{url['port']}/0", "--model=mf",
                   "--epochs=1", "--dim=4", "--k=5", "--skip_gate",
                   "--direct_running_mode=in_memory"])
    assert summary["users_published"] > 0 and tried == []
