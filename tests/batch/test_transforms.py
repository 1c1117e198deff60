"""Beam transforms under TestPipeline, checked against brute-force references."""

import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from batch.transforms import ReadInteractions, Retrieve, ValidateInteractions, user_shards
from infra.bundle import BundleWriter
from infra.store import LocalStore
from models.kinds import mf, write_bundle
from models.topk import brute_force_topk


@pytest.fixture
def random_bundle(tmp_path):
    """A random MF bundle written by the MF kind's export (no tower), its item and user
    vectors ([q_i, b_i], [p_u, 1]) and each user's seen items."""
    rng = np.random.default_rng(7)
    seen = [np.sort(rng.choice(80, rng.integers(0, 12), replace=False)) for _ in range(30)]
    seen[3] = np.arange(60)  # a heavy user, far above the others
    fit = mf.fit_from_factors([f"u{n}" for n in range(30)], [f"i{n}" for n in range(80)],
                              rng.normal(size=(30, 5)), rng.normal(size=(80, 5)),
                              rng.normal(size=80), seen=seen)
    store = LocalStore(str(tmp_path / "store"))
    write_bundle(mf.KIND, fit, BundleWriter(store, "v1"), k=10)
    return store, fit.model.item_vectors(), fit.model.user_vectors(), seen


def test_retrieve_matches_brute_force(random_bundle):
    store, xb, xq, seen = random_bundle
    I, D = brute_force_topk(xq, xb, 10, seen)
    expected = [(f"u{n}", tuple(int(i) for i in I[n])) for n in range(30)]
    scores = {}

    def flatten(out):
        _, user_ids, items, sc = out
        for u, row, srow in zip(user_ids, items, sc, strict=True):
            scores[u] = srow
            yield u, tuple(int(i) for i in row)

    with TestPipeline() as p:
        got = (p | beam.Create(user_shards(30, 7)) | Retrieve(store.uri, "v1", 10)
               | beam.FlatMap(flatten))
        assert_that(got, equal_to(expected))


def test_retrieve_scores_match_brute_force(random_bundle):
    from batch.transforms import ScoreFn

    store, xb, xq, seen = random_bundle
    fn = ScoreFn(store.uri, "v1", 10)
    fn.setup()
    I_ref, D_ref = brute_force_topk(xq, xb, 10, seen)
    for shard in user_shards(30, 8):
        _, user_ids, items, scores = next(fn.process(shard))
        rows = [int(u[1:]) for u in user_ids]
        np.testing.assert_array_equal(items, I_ref[rows])
        np.testing.assert_allclose(scores, D_ref[rows], atol=1e-4)


def test_validate_routes_bad_rows_to_dead_letters_with_reasons():
    import pandas as pd

    from models.schema import drop_duplicates

    rows = [
        {"user_id": "1", "item_id": "a", "timestamp": "1700000000"},
        {"user_id": "", "item_id": "a", "timestamp": "1700000000"},
        {"user_id": "2", "item_id": "b", "timestamp": "not a time"},
        {"user_id": "3", "item_id": "c", "timestamp": "5", "weight": "-1"},
        {"user_id": "4", "item_id": "d", "timestamp": "2024-01-01T00:00:00Z",
         "event_type": "click", "weight": "2.5"},
        {"user_id": "5", "item_id": "e", "timestamp": "7", "event_type": "teleport"},
        {"user_id": "1", "item_id": "a", "timestamp": "1700000000"},
    ]
    chunks = [("f1.csv", pd.DataFrame(rows[:4])), ("f2.csv", pd.DataFrame(rows[4:]))]
    with TestPipeline() as p:
        out = p | beam.Create(chunks) | ValidateInteractions()
        valid = out.valid | beam.FlatMap(lambda t: t.to_pylist()) | beam.Map(
            lambda r: (r["user_id"], r["timestamp"], r["weight"]))
        assert_that(valid, equal_to([("1", 1700000000, None), ("4", 1704067200, 2.5),
                                     ("1", 1700000000, None)]), label="Valid")
        assert_that(out.dead | beam.Map(lambda d: (d["file"], json.loads(d["row"])["user_id"],
                                                   d["reason"])),
                    equal_to([("f1.csv", "", "missing user_id"),
                              ("f1.csv", "2", "unparseable timestamp"),
                              ("f1.csv", "3", "negative weight"),
                              ("f2.csv", "5", "unknown event_type")]),
                    label="Dead")
    clean, copies = drop_duplicates(pd.DataFrame(
        {"user_id": ["1", "4", "1"], "item_id": ["a", "d", "a"], "timestamp": [1, 2, 1]}))
    assert clean["user_id"].tolist() == ["1", "4"]
    assert [c["reason"] for c in copies] == ["exact duplicate"]



def test_hardening_14_a_malformed_csv_line_is_a_dead_letter_not_a_failed_run(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,event_type\n"
                    "007,a,1700000000,view\n"
                    "2,b\n"  # a field short
                    "3,c,1700000002,click\n"
                    "4,d,1700000003,view,extra\n")  # one too many
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | ReadInteractions([str(path)]) | ValidateInteractions()
        valid = out.valid | beam.FlatMap(lambda t: t.to_pylist()) | beam.Map(
            lambda r: (r["user_id"], r["item_id"], r["timestamp"], r["event_type"]))
        assert_that(valid, equal_to([("007", "a", 1700000000, "view"),
                                     ("3", "c", 1700000002, "click")]), label="Valid")
        assert_that(out.dead | beam.Map(lambda d: (d["file"], d["reason"], d["row"])),
                    equal_to([(str(path), "malformed CSV line: expected 4 fields, got 2", "2,b"),
                              (str(path), "malformed CSV line: expected 4 fields, got 5",
                               "4,d,1700000003,view,extra")]), label="Dead")


def test_hardening_04_the_beam_path_applies_the_row_rules(tmp_path):
    """ReadInteractions | ValidateInteractions over real files: list-typed ids and boolean
    timestamps from Parquet, out-of-range values from CSV are dead letters, as the per-row
    validator (models/rows.py) says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lists = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"user_id": [[1, 2], [3]], "item_id": ["i", "j"],
                             "timestamp": [1700000000, 1700000001]}), lists)
    bools = tmp_path / "bools.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [True]}), bools)
    text = tmp_path / "text.csv"
    text.write_text("user_id,item_id,timestamp,weight\n"
                    "u1,a,1700000000,2\n"
                    "u2,a,1e20,\n"
                    "u3,a,99999999999999999999,\n"
                    "u4,a,1700000000000,\n"
                    "u5,a,1700000000,1e39\n")
    out_of_range = ("timestamp out of range: expected epoch seconds from 1970-01-01 to before "
                    "2100-01-01 UTC (milliseconds?)")
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | ReadInteractions([str(lists), str(bools), str(text)]) | ValidateInteractions()
        valid = out.valid | beam.FlatMap(lambda t: t.to_pylist()) | beam.Map(
            lambda r: (r["user_id"], r["timestamp"], r["weight"]))
        assert_that(valid, equal_to([("u1", 1700000000, 2.0)]), label="Valid")
        assert_that(out.dead | beam.Map(lambda d: (d["file"].rsplit("/", 1)[-1], d["reason"])),
                    equal_to([("lists.parquet", "user_id must be a string or a finite number")] * 2
                             + [("bools.parquet", "unparseable timestamp")]
                             + [("text.csv", out_of_range)] * 3
                             + [("text.csv", "weight out of range [0, 1000]")]), label="Dead")
