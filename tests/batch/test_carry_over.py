"""Users without new interactions keep their list across nightly runs, until it is too old."""

import numpy as np
import pandas as pd
import pytest

from batch.carry_over import carry_over, plan_lists, user_fingerprints
from batch.nightly import run
from batch.transforms import ScoreFn
from infra.bundle import BundleWriter, new_version, read_bundle
from infra.redis.builds import BuildRecords
from infra.redis.lists import ServedLists
from infra.store import LocalStore
from models.schema import SECONDS_PER_DAY

NOW = 1_800_000_000


def test_plan_carries_only_known_unchanged_young_users():
    # Users of the new version: 0 unchanged and young, 1 changed, 2 new, 3 unchanged but old.
    fingerprints = np.array([10, 11, 12, 13], np.uint64)
    rows = np.array([1, 0, -1, 2])  # their rows in the previous version
    prev_built = np.array([NOW - 100, NOW - 100, NOW - 8 * SECONDS_PER_DAY], np.uint32)
    prev_fp = np.array([99, 10, 13], np.uint64)  # row 0 had 99 (user 1 changed)
    plan = plan_lists(fingerprints, NOW, 7 * SECONDS_PER_DAY, (rows, prev_built, prev_fp))
    assert plan.carry.tolist() == [0] and plan.refresh.tolist() == [1, 2, 3]
    assert plan.built_at.tolist() == [NOW - 100, NOW, NOW, NOW]  # a carried list keeps its age
    assert (plan.new, plan.expired) == (1, 1)
    zero = plan_lists(fingerprints, NOW, 0, (rows, prev_built, prev_fp))
    assert zero.carry.size == 0 and zero.expired == 2
    first = plan_lists(fingerprints, NOW, 7 * SECONDS_PER_DAY, None)
    assert first.refresh.tolist() == [0, 1, 2, 3] and first.new == 4


def test_fingerprints_ignore_row_order_and_see_any_change():
    df = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["1", "2", "3"],
                       "timestamp": [5, 6, 7], "event_type": ["view", None, "click"],
                       "weight": [None, 2.0, None]})
    fp = user_fingerprints(df, ["a", "b", "c"])
    assert fp[2] == 0 and fp[0] != fp[1]
    assert user_fingerprints(df.iloc[::-1], ["a", "b", "c"]).tolist() == fp.tolist()
    late = df.assign(timestamp=[5, 6, 1])  # a's second event re-sent with an older time
    got = user_fingerprints(late, ["a", "b", "c"])
    assert got[0] != fp[0] and got[1] == fp[1]


def _bundle(store: LocalStore, model: str | None, users: list[str], items: list[str]) -> str:
    """A committed bundle of `model` holding what carry_over reads (no training)."""
    version = new_version()
    writer = BundleWriter(store, version)
    writer.put_json("user_ids.json", users)
    writer.put_json("item_ids.json", items)
    writer.put_array("item_vectors.npy", np.ones((len(items), 2), np.float32))
    writer.put_json("popular.json", items)
    writer.commit({"k": 5, **({"model": model} if model else {})})
    return version


@pytest.mark.parametrize("served_model,model,carried", [
    ("served", "served", 3), ("mf", "mf", 3), (None, "mf", 3),  # no `model`: an MF bundle
    ("served", "mf", 0), ("mf", "served", 0), (None, "served", 0)])
def test_switching_the_model_recomputes_every_list(tmp_path, redis_client, served_model, model,
                                                   carried):
    # The served version's lists were built (young) from exactly these rows: the same kind
    # carries all three over, another kind's ranking keeps none.
    store, lists, builds = LocalStore(str(tmp_path)), ServedLists(redis_client), \
        BuildRecords(redis_client)
    users, items = ["a", "b", "c"], ["1", "2", "3"]
    clean = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": [1, 2, 3],
                          "event_type": ["click"] * 3, "weight": [None] * 3})
    served = _bundle(store, served_model, users, items)
    lists.write_shard(served, "0", users, np.array([[1, 2]] * 3), np.ones((3, 2), np.float32))
    builds.put_built(served, np.full(3, NOW - 100, np.uint32), user_fingerprints(clean, users))
    lists.flip(served, 3)
    version = _bundle(store, model, users, items)

    plan, summary = carry_over(lists, builds, store, clean, version, 5, 7.0, NOW)

    assert plan.carry.size == summary["users_carried_over"] == carried
    assert plan.refresh.tolist() == list(range(3 - carried))
    assert summary["lists_carried_from"] == (served if carried else None)
    assert plan.built_at.tolist() == [NOW - 100 if carried else NOW] * 3
    assert [lists.get_list(version, u) is not None for u in users] == [bool(carried)] * 3


@pytest.fixture
def nightly(tmp_path, redis_client, tiny_dataset):
    """run(extra flags, interactions) on one input file, store and Redis db."""
    path = tmp_path / "interactions.parquet"
    url = redis_client.connection_pool.connection_kwargs
    base = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0",
            "--model=mf", "--epochs=1", "--dim=4",
            "--k=5", "--shard_size=40", "--skip_gate", "--direct_running_mode=in_memory"]

    def go(data: pd.DataFrame, *flags: str) -> dict:
        data.to_parquet(path)
        return run(base + list(flags))

    return go, ServedLists(redis_client), LocalStore(str(tmp_path / "store"))


def _new_events(data: pd.DataFrame, users, item: str | None = None) -> pd.DataFrame:
    """One click per user, after everything else, on `item` or an item the user lacks."""
    t = int(data["timestamp"].max()) + 60
    rows = []
    for n, u in enumerate(users):
        seen = set(data.loc[data["user_id"] == u, "item_id"])
        rows.append({"user_id": u, "timestamp": t + n, "event_type": "click", "weight": None,
                     "item_id": item or next(i for i in data["item_id"].unique()
                                             if i not in seen)})
    return pd.concat([data, pd.DataFrame(rows)], ignore_index=True)


def test_inactive_users_keep_their_list_byte_for_byte(nightly, tiny_dataset):
    go, lists, store = nightly
    data = tiny_dataset.interactions
    first = go(data)
    assert (first["users_new"], first["users_carried_over"]) == (first["users_published"], 0)
    users = sorted(data["user_id"].unique())
    active = users[:7]
    data2 = _new_events(data, active)
    data2 = _new_events(data2, ["newcomer"], item=data["item_id"].iloc[0])
    second = go(data2)
    v1, v2 = first["version"], second["version"]

    assert second["users_published"] == len(users) + 1
    assert second["users_refreshed"] == len(active) + 1
    assert second["users_carried_over"] == len(users) - len(active)
    assert (second["users_new"], second["users_expired_refreshed"]) == (1, 0)
    assert second["list_max_age_days"] == 7.0 and second["lists_carried_from"] == v1
    assert lists.current() == v2
    for u in users[len(active):]:
        assert lists.r.get(lists.keys.user(v2, u)) == lists.r.get(lists.keys.user(v1, u))

    fn = ScoreFn(store.uri, v2, 5)  # the active users' lists are those of the new model
    fn.setup()
    bundle = read_bundle(store, v2)
    rows = np.flatnonzero(np.isin(bundle.user_ids, active + ["newcomer"]))
    _, ids, items, scores = next(fn.process((0, rows)))
    for u, row in zip(ids, items, strict=True):
        got, _ = lists.get_list(v2, u)
        assert got.tolist() == row.tolist()
    clicked = data2.groupby("user_id")["item_id"].last()
    for u in active:
        got, _ = lists.get_list(v2, u)
        assert clicked[u] not in {bundle.item_ids[i] for i in got}  # seen: excluded

    builds = BuildRecords(lists.r)
    built_1, _ = builds.built(v1)
    built_2, _ = builds.built(v2)
    old = dict(zip(read_bundle(store, v1, with_users=True).user_ids, built_1, strict=True))
    for u, b in zip(bundle.user_ids, built_2, strict=True):
        assert (b == old[u]) if u in users[len(active):] else b >= old.get(u, 0)


# Slow: three nightly runs. Fast loop: test_plan_carries_only_known_unchanged_young_users (the
# age limit and the zero limit), test_inactive_users_keep_their_list_byte_for_byte (the wiring).
@pytest.mark.slow
def test_lists_past_the_age_limit_and_a_zero_limit_are_recomputed(nightly, tiny_dataset):
    go, lists, store = nightly
    data = tiny_dataset.interactions
    first = go(data)
    v1, n = first["version"], first["users_published"]
    builds = BuildRecords(lists.r)
    built, fingerprints = builds.built(v1)
    aged = built.copy()
    aged[: n // 3] -= 8 * SECONDS_PER_DAY  # a third of the lists were built 8 days ago
    builds.put_built(v1, aged, fingerprints)
    second = go(data)
    assert second["users_expired_refreshed"] == second["users_refreshed"] == n // 3
    assert second["users_carried_over"] == n - n // 3
    built_2, _ = builds.built(second["version"])
    assert (built_2[: n // 3] >= built[0]).all()  # rebuilt: the new build time

    third = go(data, "--list_max_age_days=0")
    assert third["users_carried_over"] == 0 and third["lists_carried_from"] is None
    assert third["users_refreshed"] == third["users_expired_refreshed"] == n
    assert third["list_max_age_days"] == 0


# Slow: two nightly runs. Fast loop: tests/infra/redis/test_lists.py
# test_copy_lists_copies_bytes_remaps_indices_and_counts (the remap of copied lists).
@pytest.mark.slow
def test_a_catalog_change_remaps_the_carried_lists(nightly, tiny_dataset):
    go, lists, store = nightly
    data = tiny_dataset.interactions
    first = go(data)
    active = sorted(data["user_id"].unique())[:2]
    second = go(_new_events(data, active, item="00"))  # sorts right after "0": indices shift
    v1, v2 = first["version"], second["version"]
    assert second["users_carried_over"] == first["users_published"] - 2
    b1, b2 = read_bundle(store, v1), read_bundle(store, v2)
    assert b2.item_ids[:len(b1.item_ids)].tolist() != b1.item_ids.tolist()
    for u in b1.user_ids:
        if u in active:
            continue
        i1, s1 = lists.get_list(v1, u)
        i2, s2 = lists.get_list(v2, u)
        assert b1.item_ids[i1].tolist() == b2.item_ids[i2].tolist()
        assert s1.tolist() == s2.tolist()


# Slow: three nightly runs, two of the served kind. Fast loop: the carry-over end to end in
# test_inactive_users_keep_their_list_byte_for_byte, the model switch in
# test_switching_the_model_recomputes_every_list, the served nightly in test_nightly_served.py.
@pytest.mark.slow
def test_served_lists_are_carried_over_and_a_model_switch_recomputes_all(nightly, tmp_path,
                                                                        tiny_dataset):
    from tests.conftest import served_flags

    go, lists, store = nightly
    data, flags = tiny_dataset.interactions, served_flags(tmp_path, tiny_dataset)
    mf = go(data)
    first = go(data, *flags)  # same rows, another model: nothing is carried
    assert (first["model"], mf["model"]) == ("served", "mf")
    assert first["users_carried_over"] == 0 and first["lists_carried_from"] is None
    assert first["users_refreshed"] == first["users_published"]
    users = sorted(data["user_id"].unique())
    active = users[:5]
    second = go(_new_events(data, active), *flags)
    v1, v2 = first["version"], second["version"]
    assert second["users_refreshed"] == len(active)
    assert second["users_carried_over"] == len(users) - len(active)
    assert second["lists_carried_from"] == v1 and lists.current() == v2
    for u in users[len(active):]:
        assert lists.r.get(lists.keys.user(v2, u)) == lists.r.get(lists.keys.user(v1, u))
    fn = ScoreFn(store.uri, v2, 5)  # the active users': the new model's lists
    fn.setup()
    rows = np.flatnonzero(np.isin(read_bundle(store, v2).user_ids, active))
    _, ids, items, _ = next(fn.process((0, rows)))
    for u, row in zip(ids, items, strict=True):
        assert lists.get_list(v2, u)[0].tolist() == row[row >= 0].tolist()
