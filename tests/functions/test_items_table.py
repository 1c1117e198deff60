"""The items table reaches the functions' filters: one nightly with an items table loads its
categories (several per item: `Comedy|Drama`) and availability once it published, `recsys items`
does the same by hand (tests/infra/test_items_admin.py), and a category no item has answers a
400 naming the field instead of an empty 200. Real nightly (MF), real Redis, real functions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from batch.gate import QualityGateError
from batch.nightly import run
from infra.bundle import read_bundle
from infra.items_admin import ItemsError
from infra.redis.item_filters import ItemFilters
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from tests.functions.conftest import make_app

GENRES = ("Comedy", "Horror", "Action")
NS = "genres"


def genres_of(items: list[str]) -> dict[str, str]:
    """One genre per item in turn; every third item is also a Drama (`Comedy|Drama`,
    `Horror|Drama`)."""
    return {item: GENRES[n % 3] + ("|Drama" if n % 3 == n % 2 else "")
            for n, item in enumerate(items)}


@pytest.fixture(scope="module")
def nightly(tmp_path_factory, redis_url, tiny_dataset):
    """One nightly run with --items (genres, one item unavailable) in namespace `genres` of
    db 1; returns (flags, functions' env, item id -> genres, the unavailable item, folder)."""
    redis_url = redis_url.rsplit("/", 1)[0] + "/1"
    root = tmp_path_factory.mktemp("genres")
    tiny_dataset.interactions.to_parquet(root / "interactions.parquet")
    items = sorted(tiny_dataset.items.item_id)
    genres = genres_of(items)
    off = next(i for i in items if genres[i] == "Comedy")
    pd.DataFrame({"item_id": items, "category": [genres[i] for i in items],
                  "available": [i != off for i in items]}).to_csv(root / "items.csv", index=False)
    flags = [f"--store={root / 'artifacts'}", f"--redis_url={redis_url}", f"--namespace={NS}",
             "--model=mf", "--epochs=1", "--dim=4", "--k=20", "--shard_size=50",
             "--direct_running_mode=in_memory"]
    run([f"--input={root / 'interactions.parquet'}", f"--items={root / 'items.csv'}",
         "--skip_gate", *flags])
    env = {"REDIS_URL": redis_url, "RECSYS_STORE": str(root / "artifacts"),
           "RECSYS_NAMESPACE": NS, "RECSYS_POINTER_TTL_S": "0", "RECSYS_RECOMMEND_KEY": None,
           "RECSYS_ADMIN_KEY": "admin"}
    return flags, env, {i: set(g.split("|")) for i, g in genres.items()}, off, root


def _get(app, url: str) -> tuple[int, dict]:
    answer = app.get(url)
    return answer.status_code, answer.get_json()


def test_after_one_nightly_a_category_answers_only_its_items_each_genre_of_an_item_matching(
        nightly, warm_user):
    flags, env, genres, off, root = nightly
    app = make_app(env).test_client()
    store = LocalStore(env["RECSYS_STORE"])
    popular = read_bundle(store, ServedLists.from_url(env["REDIS_URL"], NS).current()).popular
    answered = {}
    for genre in (*GENRES, "Drama"):
        status, body = _get(app, f"/recommend?user_id=nobody&k=100&category={genre}")
        assert status == 200, body
        answered[genre] = [i["item_id"] for i in body["items"]]
        # The popular fill under the filter: every popular item of the genre, none unavailable.
        assert answered[genre] == [i for i in popular if genre in genres[i] and i != off]
        status, body = _get(app, f"/recommend?user_id={warm_user}&k=5&category={genre}")
        assert status == 200 and body["source"] == "cache", body
        assert body["items"] and all(genre in genres[i["item_id"]] for i in body["items"])
    both = set(answered["Comedy"]) & set(answered["Drama"])
    assert both and all(genres[i] == {"Comedy", "Drama"} for i in both)
    assert off in popular and off not in answered["Comedy"]


def test_a_category_no_item_has_answers_400_naming_the_field(nightly, warm_user):
    app = make_app(nightly[1]).test_client()
    status, body = _get(app, f"/recommend?user_id={warm_user}&k=5&category=Comedy,Nope")
    assert status == 400 and body == {"error": (
        "category: no served item has category 'Nope'; known categories (4): 'Action', "
        "'Comedy', 'Drama', 'Horror'")}


def test_a_refused_run_leaves_the_filters_unchanged(nightly):
    flags, env, genres, off, root = nightly
    filters = ItemFilters.from_url(env["REDIS_URL"], NS)
    before = filters.read()
    folder = root / "refused"
    folder.mkdir()
    (folder / "interactions.parquet").write_bytes((root / "interactions.parquet").read_bytes())
    pd.DataFrame({"item_id": list(genres), "category": "Western",
                  "available": True}).to_csv(folder / "items.csv", index=False)

    with pytest.raises(QualityGateError, match="nothing was published"):  # the items.* of
        run([f"--input={folder}", "--gate_min_cases=1000000", *flags])  # the input folder
    (folder / "items.csv").write_text("item_id,category,available\n1,Western,maybe\n")
    with pytest.raises(ItemsError, match=r"items.csv row 1: available must be"):
        run([f"--input={folder}", "--skip_gate", *flags])

    assert filters.read() == before
    assert ServedLists.from_url(env["REDIS_URL"], NS).versions() == [
        ServedLists.from_url(env["REDIS_URL"], NS).current()]


def test_recsys_items_marks_an_item_unavailable_for_the_functions(client, served_env,
                                                                    warm_user):
    app, _ = client

    def served() -> list[str]:
        status, body = _get(app, f"/recommend?user_id={warm_user}&k=10")
        assert status == 200, body
        return [i["item_id"] for i in body["items"]]

    def items(*args: str):
        return CliRunner().invoke(main, ["items", "--namespace", "pub", *args],
                                  env={"REDIS_URL": served_env["REDIS_URL"]})

    before = served()
    gone = before[0]
    result = items("--unavailable", gone)
    try:
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["unavailable"] == 1
        assert gone not in served()
    finally:
        back = items("--available", gone)
    assert back.exit_code == 0, back.output
    assert served() == before
