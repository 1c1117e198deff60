"""Reading input files: which files a spec names, and what a file reads as."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.sources import (
    InputLayout,
    expand_paths,
    read_features,
    read_interaction_chunks,
    read_table,
    resolve_input,
)
from models.schema import SchemaError


def test_a_folder_gives_its_parquet_and_csv_files_sorted_and_a_glob_its_matches(tmp_path):
    for name in ("b.csv", "a.parquet", "notes.txt", "c.parquet.tmp"):
        (tmp_path / name).write_text("")
    assert expand_paths(str(tmp_path)) == [str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")]
    assert expand_paths(str(tmp_path / "*.csv")) == [str(tmp_path / "b.csv")]
    assert expand_paths(str(tmp_path / "a.parquet")) == [str(tmp_path / "a.parquet")]


def test_no_input_file_says_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(SchemaError, match="no input file found .*interactions.*or a glob"):
        expand_paths(str(tmp_path))


def touch(folder, *names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("")


def test_a_layout_folder_reads_interactions_users_and_items_by_name(tmp_path):
    touch(tmp_path, "interactions.csv", "users.parquet", "items.csv", "notes.csv")
    assert resolve_input(str(tmp_path)) == InputLayout(
        [str(tmp_path / "interactions.csv")], str(tmp_path / "users.parquet"),
        str(tmp_path / "items.csv"))  # notes.csv: ignored, with a warning
    touch(tmp_path / "only", "interactions.parquet")
    assert resolve_input(str(tmp_path / "only")) == InputLayout(
        [str(tmp_path / "only" / "interactions.parquet")])


def test_a_layout_folder_may_hold_its_interactions_as_part_files(tmp_path):
    touch(tmp_path, "interactions/p2.csv", "interactions/p1.parquet", "interactions/_SUCCESS",
          "items.parquet")
    assert resolve_input(str(tmp_path)) == InputLayout(
        [str(tmp_path / "interactions" / "p1.parquet"), str(tmp_path / "interactions" / "p2.csv")],
        None, str(tmp_path / "items.parquet"))


@pytest.mark.parametrize(("names", "message"), [
    (("items.csv", "part-0.csv", "part-1.csv"),
     r"holds items\.csv but no interactions\.csv, interactions\.parquet or interactions/ "),
    (("users.csv", "items.parquet"), r"holds users\.csv and items\.parquet but no interactions"),
    (("interactions.csv", "interactions.parquet"),
     r"holds both interactions\.csv and interactions\.parquet; keep one interactions table"),
    (("interactions.csv", "interactions/p1.csv"),
     r"holds both interactions\.csv and interactions/; keep one"),
    (("interactions.csv", "items.csv", "items.parquet"), r"holds both items\.csv and items\.par"),
])
def test_an_ambiguous_folder_is_refused_in_one_line_saying_what_to_name(tmp_path, names,
                                                                       message):
    touch(tmp_path, *names)
    with pytest.raises(SchemaError, match=message) as err:
        resolve_input(str(tmp_path))
    assert "\n" not in str(err.value) and "docs/SCHEMA.md" in str(err.value)


def test_s3_prefix_lists_only_its_input_files(s3_endpoint, monkeypatch):
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1", "RECSYS_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="sources")
    for key in ("logs/d1.parquet", "logs/d2.csv", "logs/readme.md", "other/d3.csv"):
        s3.put_object(Bucket="sources", Key=key, Body=b"")
    assert sorted(expand_paths("s3://sources/logs")) == ["s3://sources/logs/d1.parquet",
                                                         "s3://sources/logs/d2.csv"]
    assert expand_paths("s3://sources/other/d3.csv") == ["s3://sources/other/d3.csv"]
    for key in ("layout/interactions/p1.csv", "layout/interactions/p2.csv", "layout/users.csv"):
        s3.put_object(Bucket="sources", Key=key, Body=b"")
    assert resolve_input("s3://sources/layout") == InputLayout(
        ["s3://sources/layout/interactions/p1.csv", "s3://sources/layout/interactions/p2.csv"],
        "s3://sources/layout/users.csv")


def test_csv_ids_stay_text_and_malformed_lines_become_dead_letters(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,timestamp\n007,0042,1700000000\n8,9\n")
    malformed = []
    table = read_table(str(path), malformed)
    assert table.column("user_id").to_pylist() == ["007"]
    assert table.column("item_id").to_pylist() == ["0042"]
    assert malformed == [{"file": str(path), "row": "8,9",
                          "reason": "malformed CSV line: expected 3 fields, got 2"}]
    with pytest.raises(SchemaError, match=r"e\.csv: cannot read the file"):
        read_table(str(path))  # without a list for them, a malformed line fails the read


def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match=r"broken\.parquet: cannot read the file"):
        read_table(str(path))
    with pytest.raises(SchemaError, match=r"missing\.csv: cannot read the file"):
        read_table(str(tmp_path / "missing.csv"))


def test_chunks_cover_every_row_then_the_malformed_lines(tmp_path):
    path = tmp_path / "e.csv"
    rows = "".join(f"u{n},i{n},{1700000000 + n}\n" for n in range(5))
    path.write_text("user_id,item_id,timestamp\n" + rows + "x,y\n")
    chunks = list(read_interaction_chunks(str(path), chunk_rows=2))
    frames = [frame for _, frame in chunks[:-1]]
    assert [len(f) for f in frames] == [2, 2, 1]
    assert pd.concat(frames)["user_id"].tolist() == [f"u{n}" for n in range(5)]
    assert chunks[-1] == (str(path), [{"file": str(path), "row": "x,y",
                                       "reason": "malformed CSV line: expected 3 fields, got 2"}])


def test_chunks_of_a_file_without_an_interaction_column_fail_naming_it(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "item": ["i"], "timestamp": [1]}), path)
    with pytest.raises(SchemaError, match=r"bad\.parquet.*missing column\(s\) \['item_id'\]"):
        list(read_interaction_chunks(str(path)))


def test_features_have_string_ids_and_no_row_without_one(tmp_path):
    path = tmp_path / "users.parquet"
    pq.write_table(pa.table({"user_id": [7, None, 9], "age": [30, 40, 50]}), path)
    users = read_features(str(path), "user_id")
    assert users["user_id"].tolist() == ["7", "9"]
    assert users["age"].tolist() == [30, 50]
    assert read_features(None, "user_id") is None
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['item_id'\]"):
        read_features(str(path), "item_id")
