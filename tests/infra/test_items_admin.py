"""`recsys items` (app/cli.py) and infra/items_admin.py against a real Redis: an items table's
categories (several per item, `|`-separated) and availability are written in one transaction;
bad ids and values refuse the whole change. That the functions filter by what it writes:
tests/functions/test_items_table.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from infra.redis.item_filters import ItemFilters


def items(redis_url: str, namespace: str, *args: str, env: dict | None = None):
    """Runs `recsys items` in-process; returns click's Result."""
    return CliRunner().invoke(main, ["items", "--namespace", namespace, *args],
                              env={"REDIS_URL": redis_url, **(env or {})})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_hardening_13_recsys_items_applies_an_items_table(tmp_path, redis_url, redis_client,
                                                          suffix):
    filters = ItemFilters.from_url(redis_url, "t13")
    filters.update(unavailable=["b", "keep-off"])
    table = pd.DataFrame({"item_id": ["1", "b", "c", "*[^:shards", "d"],
                          "category": ["x", None, "z", "glob", None],
                          "available": [False, True, None, False, None]})
    path = tmp_path / f"items{suffix}"
    table.to_parquet(path) if suffix == ".parquet" else table.to_csv(path, index=False)

    result = items(redis_url, "t13", "--items", str(path), "--category", "d=books")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"rev": 2, "unavailable": 2, "available": 1,
                                         "categories": 4}
    rev, unavailable, categories = filters.read()
    assert rev == 2 and unavailable == {"1", "*[^:shards", "keep-off"}
    assert categories == {"1": "x", "c": "z", "*[^:shards": "glob", "d": "books"}


def test_recsys_items_loads_several_genres_per_item(tmp_path, redis_url, redis_client):
    """MovieLens-style genres: `|` in a CSV cell, a list column in Parquet, or a flag; an item's
    genres replace the ones it had."""
    filters = ItemFilters.from_url(redis_url, "t13")
    filters.update(categories={"1": "Western", "9": "Horror"})
    (tmp_path / "items.csv").write_text("item_id,title,category\n"
                                        "1,Toy Story,Animation|Children's|Comedy\n"
                                        "2,GoldenEye, Action | Adventure |Thriller|\n"
                                        "3,Four Rooms,Thriller\n")
    pd.DataFrame({"item_id": ["4", "5"], "category": [["Drama", "War"], ["Crime"]]}).to_parquet(
        tmp_path / "more.parquet")

    csv = items(redis_url, "t13", "--items", str(tmp_path / "items.csv"))
    more = items(redis_url, "t13", "--items", str(tmp_path / "more.parquet"),
                 "--category", "6=Sci-Fi|Musical")

    assert csv.exit_code == more.exit_code == 0, csv.output + more.output
    assert json.loads(csv.output)["categories"] == 3
    assert filters.read()[2] == {"1": "Animation|Children's|Comedy",
                                 "2": "Action|Adventure|Thriller", "3": "Thriller",
                                 "4": "Drama|War", "5": "Crime", "6": "Sci-Fi|Musical",
                                 "9": "Horror"}


@pytest.mark.parametrize("args, reason", [
    (["--unavailable", "bad\x01id"], "item_id holds a control character"),
    (["--unavailable", "x" * 257], "item_id is longer than 256 characters"),
    (["--available", "  "], "missing item_id"),
    (["--category", "7="], "missing category"),
    (["--category", "7"], "expected ITEM_ID=CATEGORY"),
    (["--category", "7=\ud800"], "category holds a control character or a lone surrogate"),
    (["--unavailable", "7", "--available", "7"], "item '7' is also marked unavailable"),
    (["--category", "7=a", "--category", "7=b"], "item '7' gets category 'b'"),
    (["--category", "7=a|b", "--category", "7=b"], "item '7' gets category 'b', but"),
    (["--category", "7=|"], "missing category"),
    (["--category", "7=a|b\x1b"], "category holds a control character"),
])
def test_hardening_13_recsys_items_refuses_bad_ids_and_changes_nothing(redis_url, redis_client,
                                                                       args, reason):
    result = items(redis_url, "t13", "--unavailable", "fine", "--category", "ok=c", *args)

    assert result.exit_code == 1 and reason in result.output, result.output
    assert "nothing was changed" in result.output and "Traceback" not in result.output
    assert ItemFilters.from_url(redis_url, "t13").read() == (0, set(), {})


def test_recsys_items_refuses_a_bad_table_naming_its_rows(tmp_path, redis_url, redis_client):
    path = tmp_path / "items.csv"
    path.write_text("item_id,available\n1,false\n,true\n3,maybe\n" + "x" * 300 + ",false\n")

    result = items(redis_url, "t13", "--items", str(path))

    assert result.exit_code == 1, result.output
    for line in (f"{path} row 2: missing item_id", f"{path} row 3: available must be",
                 f"{path} row 4: item_id is longer than 256"):
        assert line in result.output
    assert ItemFilters.from_url(redis_url, "t13").read() == (0, set(), {})


def test_recsys_items_names_a_table_without_usable_columns(tmp_path, redis_url, redis_client):
    pd.DataFrame({"item_id": ["1"], "price": [3]}).to_parquet(tmp_path / "i.parquet")
    pd.DataFrame({"sku": ["1"], "category": ["a"]}).to_parquet(tmp_path / "j.parquet")

    no_change = items(redis_url, "t13", "--items", str(tmp_path / "i.parquet"))
    no_id = items(redis_url, "t13", "--items", str(tmp_path / "j.parquet"))

    assert no_change.exit_code == 1 and "no category or available column" in no_change.output
    assert no_id.exit_code == 1 and "missing column(s) ['item_id']" in no_id.output


def test_recsys_items_from_the_environment_dry_run_and_show(redis_url, redis_client):
    env = {"RECSYS_ITEMS_UNAVAILABLE": "a b", "RECSYS_ITEMS_DRY_RUN": "1"}

    dry = items(redis_url, "t13", env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output) == {"dry_run": True, "unavailable": 2, "available": 0,
                                      "categories": 0}
    assert ItemFilters.from_url(redis_url, "t13").read() == (0, set(), {})

    applied = items(redis_url, "t13", env={**env, "RECSYS_ITEMS_DRY_RUN": "0"})
    shown = items(redis_url, "t13")
    assert applied.exit_code == shown.exit_code == 0, applied.output + shown.output
    assert json.loads(shown.output) == {"rev": 1, "unavailable": ["a", "b"], "categories": 0}


def test_recsys_items_says_when_redis_is_unreachable():
    from infra.redis_server import free_port

    result = items(f"redis://127.0.0.1:{free_port()}/0", "t13", "--unavailable", "a")

    assert result.exit_code == 1 and "Redis error" in result.output, result.output
    assert "run the same command again" in result.output


def test_a_table_of_features_only_changes_nothing_for_the_nightly(tmp_path):
    from infra.items_admin import table_changes

    pd.DataFrame({"item_id": ["1"], "price": [3]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"item_id": ["1"], "category": [None]}).to_parquet(tmp_path / "b.parquet")
    pd.DataFrame({"item_id": ["1"], "category": ["x|y"]}).to_parquet(tmp_path / "c.parquet")

    assert table_changes(str(tmp_path / "a.csv")) is None
    assert table_changes(str(tmp_path / "b.parquet")) is None
    assert table_changes(str(tmp_path / "c.parquet")).arguments()["categories"] == {"1": "x|y"}
