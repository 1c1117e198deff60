"""The nightly's stages one at a time: real DirectRunner pipelines, a real Redis, a local store."""

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from batch import stages
from batch.carry_over import ListPlan
from batch.gate import QualityGateError
from batch.options import NightlyConfig
from infra.bundle import new_version
from infra.store import LocalStore
from models import kinds
from models.kinds import mf
from models.topk import brute_force_topk

RUNNER = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]


def config(tmp_path, redis_url="redis://127.0.0.1:1/0", **flags) -> NightlyConfig:
    return NightlyConfig(input=str(tmp_path / "in"), redis_url=redis_url,
                         store=str(tmp_path / "store"), **flags)


def test_validate_keeps_clean_rows_and_stores_each_dead_letter(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("user_id,item_id,timestamp\n"
                                           "u1,i1,1700000000\n"
                                           ",i2,1700000001\n"  # missing user_id
                                           "u2,i2,1700000002\n"
                                           "u1,i1,1700000000\n")  # an exact copy
    (tmp_path / "in" / "b.csv").write_text("user_id,item_id,timestamp,event_type\n"
                                           "u3,i3,1700000003,teleport\n"
                                           "u3,i1,1700000004,click\n")
    store = LocalStore(str(tmp_path / "store"))
    cfg = config(tmp_path)
    paths = [str(tmp_path / "in" / f) for f in ("a.csv", "b.csv")]
    rows = stages.validate(cfg, paths, {"view": 1.0, "click": 2.0}, PipelineOptions(RUNNER),
                           store, "v1")
    assert sorted(zip(rows.clean["user_id"], rows.clean["item_id"], strict=True)) == [
        ("u1", "i1"), ("u2", "i2"), ("u3", "i1")]
    assert rows.dead_letters == {"missing user_id": 1, "unknown event_type": 1,
                                 "exact duplicate": 1}
    dead = pq.read_table(io.BytesIO(store.get_bytes("runs/v1/dead_letters.parquet")))
    assert sorted(dead.column("reason").to_pylist()) == sorted(
        ["missing user_id", "unknown event_type", "exact duplicate"])


def test_validate_without_a_valid_row_names_the_input_and_the_reasons(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("user_id,item_id,timestamp\nu1,i1,never\n")
    with pytest.raises(ValueError, match=r"in: no valid interaction .*unparseable timestamp"):
        stages.validate(config(tmp_path), [str(tmp_path / "in" / "a.csv")], {"view": 1.0},
                        PipelineOptions(RUNNER), LocalStore(str(tmp_path / "store")), "v1")


def test_refusals_raise_unless_forced(tmp_path):
    served = {"version": "v0", "users_published": 100, "items_with_events": 50,
              "valid_events": 1000}
    sizes = {"users": 10, "items_with_events": 50, "valid_events": 1000}
    with pytest.raises(QualityGateError, match="run refused: .*users 10 vs 100"):
        stages.refuse_shrink(config(tmp_path), sizes, served)
    assert "users 10 vs 100" in stages.refuse_shrink(config(tmp_path, force_publish=True),
                                                     sizes, served)
    assert stages.refuse_shrink(config(tmp_path), {**sizes, "users": 90}, served) is None

    below = {"window": 0.1, "cases": 80, "ndcg@10": 0.10, "popularity_ndcg@10": 0.12}
    with pytest.raises(QualityGateError, match="quality gate failed: NDCG@10 0.1000 is below"):
        stages.judge(config(tmp_path), below, None, 0.1)
    gate = stages.judge(config(tmp_path, force_publish=True), below, None, 0.1)
    assert not gate.passed and gate.cases == 80
    assert stages.judge(config(tmp_path), {**below, "ndcg@10": 0.2}, None, 0.1).passed


@pytest.fixture
def bundle(tmp_path):
    """A random 12-user MF bundle (no tower) and the brute-force top-5 of every user."""
    from infra.bundle import BundleWriter
    from models.kinds import write_bundle

    rng = np.random.default_rng(3)
    seen = [np.sort(rng.choice(30, rng.integers(0, 6), replace=False)) for _ in range(12)]
    fit = mf.fit_from_factors([f"u{n}" for n in range(12)], [f"i{n}" for n in range(30)],
                              rng.normal(size=(12, 4)), rng.normal(size=(30, 4)),
                              rng.normal(size=30), seen=seen)
    store, version = LocalStore(str(tmp_path / "store")), new_version()
    write_bundle(mf.KIND, fit, BundleWriter(store, version), k=5)
    items, _ = brute_force_topk(fit.model.user_vectors(), fit.model.item_vectors(), 5, seen)
    return store, version, items


def plan(refresh, n_users=12) -> ListPlan:
    refresh = np.asarray(refresh, np.int64)
    return ListPlan(refresh, np.setdiff1d(np.arange(n_users), refresh),
                    np.zeros(n_users, np.uint32), np.zeros(n_users, np.uint64), 0, 0)


def test_precompute_writes_the_planned_users_lists_only(tmp_path, redis_url, redis_client,
                                                        bundle):
    from infra.redis.lists import ServedLists

    store, version, expected = bundle
    cfg = config(tmp_path, redis_url=redis_url, k=5, shard_size=2)
    stages.precompute(cfg, PipelineOptions(RUNNER), RUNNER, version, plan([1, 4, 5, 11]), 12)
    lists = ServedLists(redis_client)
    written = {n for n in range(12) if lists.get_list(version, f"u{n}") is not None}
    assert written == {1, 4, 5, 11}
    for n in written:
        np.testing.assert_array_equal(lists.get_list(version, f"u{n}")[0], expected[n])

    stages.precompute(cfg, PipelineOptions(RUNNER), RUNNER, version, plan(range(12)), 12)
    assert all(lists.get_list(version, f"u{n}") is not None for n in range(12))


def test_publish_flips_only_once_every_user_was_written(tmp_path, redis_url, redis_client,
                                                        bundle):
    from infra.redis.lists import ServedLists

    store, version, _ = bundle
    cfg = config(tmp_path, redis_url=redis_url, k=5, shard_size=5)
    targets = stages.open_targets(cfg)
    stages.precompute(cfg, PipelineOptions(RUNNER), RUNNER, version, plan(range(6)), 12)
    with pytest.raises(RuntimeError, match="shards wrote 6 users, expected 12"):
        stages.publish(cfg, targets, version, plan(range(12)), 12, {"version": version})
    assert ServedLists(redis_client).current() is None

    # a rerun of the stage computes every planned user again, in the same shards
    stages.precompute(cfg, PipelineOptions(RUNNER), RUNNER, version, plan(range(12)), 12)
    summary = stages.publish(cfg, targets, version, plan(range(12)), 12, {"version": version})
    assert ServedLists(redis_client).current() == version
    assert summary["expired_versions"] == []
    assert json.loads(store.get_bytes(f"runs/{version}/summary.json")) == summary
    assert targets.builds.summary(version)["version"] == version


def test_inputs_are_the_input_files_and_without_draining_nothing_else(tmp_path):
    (tmp_path / "in").mkdir()
    pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [1]}).to_parquet(
        tmp_path / "in" / "a.parquet")
    inputs = stages.gather_inputs(config(tmp_path, no_drain_events=True), targets=None)
    assert inputs == stages.Inputs([str(tmp_path / "in" / "a.parquet")], None)


def test_inputs_of_a_layout_folder_are_its_interactions_and_its_tables_are_features(tmp_path):
    """The folder of docs/SCHEMA.md: interactions.csv is read as interactions, users.csv and
    items.csv as the served model's features (they used to be read as interactions and stop
    the run: `items.csv: missing column(s) ['user_id', 'timestamp']`)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp,event_type\n"
                                             "u1,i1,1700000000,view\nu2,i2,1700000001,click\n")
    (folder / "users.csv").write_text("user_id,country\nu1,FR\nu2,JP\n")
    (folder / "items.csv").write_text("item_id,category\ni1,Comedy\ni2,Drama\n")
    cfg = config(tmp_path, no_drain_events=True)
    inputs = stages.gather_inputs(cfg, targets=None)
    rows = stages.validate(cfg, inputs.paths, {"view": 1.0, "click": 2.0},
                           PipelineOptions(RUNNER), LocalStore(str(tmp_path / "store")), "v1")
    assert sorted(rows.clean["user_id"]) == ["u1", "u2"] and rows.dead_letters == {}
    assert inputs == stages.Inputs([str(folder / "interactions.csv")], None,
                                   str(folder / "users.csv"), str(folder / "items.csv"))
    data = stages.training_data(kinds.get("served"), inputs, rows.clean, {})
    assert data.users["country"].tolist() == ["FR", "JP"]
    assert data.items.set_index("item_id")["category"].to_dict() == {"i1": "Comedy",
                                                                     "i2": "Drama"}
    assert stages.training_data(kinds.get("mf"), inputs, rows.clean, {}).items is None


def test_inputs_users_and_items_flags_win_over_the_folder_s_tables(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("interactions.parquet", "users.csv", "items.csv"):
        (folder / name).write_text("")
    inputs = stages.gather_inputs(config(tmp_path, no_drain_events=True, items="other.csv"),
                                  targets=None)
    assert (inputs.users, inputs.items) == (str(folder / "users.csv"), "other.csv")
