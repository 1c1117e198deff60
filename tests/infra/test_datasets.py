"""Loaders on tiny files written here in each format (never real MovieLens rows)."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import models.synthetic
from infra.datasets import item_tags, load_dataset, parse_kwargs
from models.schema import Dataset, SchemaError

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def flags(*on):
    return "|".join("1" if g in on else "0" for g in GENRES)


def test_movielens_100k_layout(tmp_path):
    write(tmp_path / "u.data", "7\t30\t4\t100\n8\t31\t2\t90\n")
    write(tmp_path / "u.user", "7|25|F|writer|02139\n8|40|M|other|K1A0B\n")
    write(tmp_path / "u.item",
          f"30|Café Test (1990)|01-Jan-1990||http://x|{flags('Action', 'Drama')}\n"
          f"31|Other Film (1991)|||http://y|{flags('unknown')}\n", encoding="latin-1")
    ds = load_dataset(f"movielens:{tmp_path}")
    inter = ds.interactions
    assert list(inter["user_id"]) == ["7", "8"] and list(inter["item_id"]) == ["30", "31"]
    assert list(inter["timestamp"]) == [100, 90] and inter["timestamp"].dtype == "int64"
    assert list(inter["weight"]) == [4.0, 2.0] and set(inter["event_type"]) == {"rating"}
    items = ds.items.set_index("item_id")
    assert items.loc["30", "title"] == "Café Test (1990)"
    assert items.loc["30", "genres"] == "Action|Drama" and items.loc["31", "genres"] == "unknown"
    assert items.loc["30", "year"] == 1990 and pd.isna(items.loc["31", "year"])
    users = ds.users.set_index("user_id")
    assert users.loc["7", "zip_prefix"] == "0" and users.loc["8", "zip_prefix"] == "K1A"
    assert users.loc["7", "age"] == 25 and users.loc["8", "occupation"] == "other"
    assert ds.name == tmp_path.name


def test_movielens_1m_layout(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072-1234\n")
    write(tmp_path / "movies.dat", "1193::Amélie: Part 2 (2001)::Comedy|Romance\n"
          "661::Plain (1996)::Drama\n", encoding="latin-1")
    ds = load_dataset(f"movielens:{tmp_path}")
    assert list(ds.interactions["weight"]) == [5.0, 3.0]
    items = ds.items.set_index("item_id")
    assert items.loc["1193", "title"] == "Amélie: Part 2 (2001)"
    assert items.loc["1193", "genres"] == "Comedy|Romance" and items.loc["1193", "year"] == 2001
    assert list(ds.users["zip_prefix"]) == ["4", "7"] and list(ds.users["gender"]) == ["F", "M"]


def test_movielens_latest_layout_with_tags(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,50\n2,20,1.0,60\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n'
          "20,Untitled,(no genres listed)\n")
    write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n1,10,Noir,5\n2,10,noir ,70\n"
          "2,10,Pacino,80\n")
    ds = load_dataset(f"movielens:{tmp_path}")
    assert list(ds.interactions["weight"]) == [4.5, 1.0]
    items = ds.items.set_index("item_id")
    assert items.loc["10", "year"] == 1995 and items.loc["20", "genres"] == ""
    assert items.loc["10", "tags"] == "noir|pacino" and items.loc["20", "tags"] == ""
    assert item_tags(ds.extras["tags"], before=75).to_dict() == {"10": "noir"}
    assert ds.users is None


def test_not_a_movielens_folder(tmp_path):
    with pytest.raises(SchemaError, match="u.data"):
        load_dataset(f"movielens:{tmp_path}")


def test_csv_folder_with_users_and_items(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id,timestamp,event_type,weight\n"
          "u1,007,2024-01-01T00:00:10Z,click,\nu2,8,1704067200,,2.5\n")
    write(tmp_path / "users.csv", "user_id,country\nu1,FR\n")
    write(tmp_path / "items.csv", "item_id,price\n007,3.5\n")
    ds = load_dataset(f"csv:{tmp_path}")
    inter = ds.interactions
    assert list(inter["item_id"]) == ["007", "8"]  # ids stay strings, leading zeros kept
    assert list(inter["timestamp"]) == [1704067210, 1704067200]
    assert list(inter["event_type"]) == ["click", None]
    assert inter["weight"].isna().tolist() == [True, False] and inter["weight"][1] == 2.5
    assert list(ds.users["user_id"]) == ["u1"] and list(ds.items["item_id"]) == ["007"]


def test_the_nightly_s_layout_folder_reads_alike_with_part_files_and_refuses_ambiguity(tmp_path):
    """`recsys evaluate --dataset csv:DIR` reads DIR as `recsys nightly --input DIR` does
    (infra.sources.resolve_input): interactions/ part files, users.* and items.* by name."""
    write(tmp_path / "interactions" / "part-0.csv", "user_id,item_id,timestamp\nu1,i1,5\n")
    write(tmp_path / "interactions" / "part-1.csv", "user_id,item_id,timestamp\n"
          "u2,i2,6\nu1,i1,5\n")  # the copy of part-0's row: an exact duplicate
    write(tmp_path / "items.csv", "item_id,category\ni1,Comedy\n")
    ds = load_dataset(f"csv:{tmp_path}")
    assert list(zip(ds.interactions["user_id"], ds.interactions["item_id"], strict=True)) == [
        ("u1", "i1"), ("u2", "i2")]
    assert [d["reason"] for d in ds.extras["dead_letters"]] == ["exact duplicate"]
    assert ds.users is None and ds.items["category"].tolist() == ["Comedy"]
    write(tmp_path / "interactions.csv", "user_id,item_id,timestamp\nu1,i1,5\n")
    with pytest.raises(SchemaError, match="holds both interactions.csv and interactions/"):
        load_dataset(f"csv:{tmp_path}")


def test_parquet_folder_and_single_file(tmp_path):
    table = pa.table({"user_id": [1, 2], "item_id": [10, 20], "timestamp": [5, 6]})
    pq.write_table(table, tmp_path / "interactions.parquet")
    for spec in (f"parquet:{tmp_path}", f"parquet:{tmp_path / 'interactions.parquet'}"):
        inter = load_dataset(spec).interactions
        assert list(inter["user_id"]) == ["1", "2"] and list(inter["item_id"]) == ["10", "20"]
        assert inter["weight"].isna().all() and list(inter["event_type"]) == [None, None]


def test_missing_column_names_the_column_and_the_file(tmp_path):
    path = tmp_path / "interactions.csv"
    write(path, "user_id,timestamp\nu1,5\n")
    with pytest.raises(SchemaError) as err:
        load_dataset(f"csv:{path}")
    assert "item_id" in str(err.value) and str(path) in str(err.value)


def test_missing_and_unreadable_files_raise_schema_error(tmp_path):
    with pytest.raises(SchemaError, match="interactions"):
        load_dataset(f"csv:{tmp_path}")
    bad = tmp_path / "interactions.parquet"
    write(bad, "not parquet")
    with pytest.raises(SchemaError, match="interactions.parquet"):
        load_dataset(f"parquet:{bad}")


def test_unparseable_timestamp_is_a_dead_letter_naming_the_file(tmp_path):
    path = tmp_path / "events.csv"
    write(path, "user_id,item_id,timestamp\nu1,i1,yesterday\nu2,i2,1700000000\n")
    ds = load_dataset(f"csv:{path}")
    assert list(ds.interactions["user_id"]) == ["u2"]
    [dead] = ds.extras["dead_letters"]
    assert dead["file"] == str(path) and dead["reason"] == "unparseable timestamp"
    assert "yesterday" in dead["row"]


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ValueError, match="movielens"):
        load_dataset("excel:foo.xlsx")


def test_synthetic_spec_passes_numbers_through(monkeypatch):
    seen = {}

    def fake_generate(**kwargs):
        seen.update(kwargs)
        return Dataset(pd.DataFrame(columns=["user_id", "item_id", "timestamp"]))

    monkeypatch.setattr(models.synthetic, "generate", fake_generate)
    assert isinstance(load_dataset("synthetic:users=20,items=10,seed=3,days=1.5"), Dataset)
    assert seen == {"n_users": 20, "n_items": 10, "seed": 3, "days": 1.5}
    with pytest.raises(ValueError, match="key=value"):
        parse_kwargs("users")


def test_one_percent_corrupted_csv_loses_exactly_those_rows(tmp_path):
    from models.synthetic import generate
    from tests.batch.test_nightly import corrupt_one_percent

    clean = generate(n_users=150, n_items=60, seed=5, events_per_user=15).interactions
    df, expected = corrupt_one_percent(clean)
    df.to_csv(tmp_path / "interactions.csv", index=False)
    dataset = load_dataset(f"csv:{tmp_path}")
    reasons = {}
    for d in dataset.extras["dead_letters"]:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    assert reasons == expected
    assert len(dataset.interactions) == len(clean) - sum(expected.values()) + 5


def test_blank_ids_are_missing_in_the_interactions_and_the_feature_tables_alike(tmp_path):
    """One id rule (models.rows.clean_id) for both readers: "" and blank ids are missing,
    others are stripped; an interaction with one is a dead letter, a feature row keeps a
    missing id (it joins no interaction)."""
    pq.write_table(pa.table({"user_id": ["u1", "", "u3"], "item_id": [" 7 ", "7", "  "],
                             "timestamp": [1, 2, 3]}), tmp_path / "interactions.parquet")
    pq.write_table(pa.table({"item_id": [" 7 ", "", "  "], "genre": ["a", "b", "c"]}),
                   tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": ["", "u1"], "age": [30, 40]}),
                   tmp_path / "users.parquet")
    ds = load_dataset(f"parquet:{tmp_path}")
    assert ds.interactions[["user_id", "item_id"]].values.tolist() == [["u1", "7"]]
    assert sorted(d["reason"] for d in ds.extras["dead_letters"]) == ["missing item_id",
                                                                     "missing user_id"]
    assert ds.items["item_id"].iloc[0] == "7"
    assert ds.items["item_id"].isna().tolist() == [False, True, True]
    assert ds.users["user_id"].isna().tolist() == [True, False]


def test_exact_duplicates_are_dead_letters_naming_the_file(tmp_path):
    path = tmp_path / "interactions.csv"
    write(path, "user_id,item_id,timestamp\n1,2,10\n1,2,10\n1,2,11\n")
    ds = load_dataset(f"csv:{path}")
    assert ds.interactions["timestamp"].tolist() == [10, 11]
    [dead] = ds.extras["dead_letters"]
    assert dead["file"] == str(path) and dead["reason"] == "exact duplicate"
