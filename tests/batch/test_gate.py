import json

import pytest

from batch.gate import QualityGateError, decide, quality_gate
from batch.nightly import run
from infra.redis.lists import ServedLists
from models.mf import MFConfig


@pytest.fixture(scope="module")
def data():
    from models.synthetic import generate

    return generate(n_users=300, n_items=120, seed=2, events_per_user=30).interactions


def test_gate_compares_with_popularity_and_the_served_figure(data):
    # Trained, MF beats popularity on the block data (NDCG@10 0.23 against 0.19); untrained
    # (learning rate 0) it ranks at random, far below. Both branches are taken on purpose.
    trained_config = MFConfig(dim=8, epochs=6, learning_rate=0.03)
    trained = quality_gate(data, trained_config, None, served=None)
    assert trained.cases > 0 and trained.popularity_ndcg > 0
    assert trained.passed and trained.ndcg > trained.popularity_ndcg, trained.reason
    untrained = quality_gate(data, MFConfig(dim=8, epochs=1, learning_rate=0.0), None,
                             served={"gate": {"ndcg@10": 0.0}})
    assert untrained.popularity_ndcg == trained.popularity_ndcg  # the same validation cases
    assert untrained.ndcg < untrained.popularity_ndcg and untrained.served_ndcg == 0.0
    assert not untrained.passed and "below popularity's" in untrained.reason  # served: no help
    # Against the served version's figure: more than `tolerance` below it fails, within passes.
    better_served = {"gate": {"ndcg@10": trained.ndcg * 1.2}}
    worse = quality_gate(data, trained_config, None, served=better_served, tolerance=0.05)
    assert not worse.passed and "below the served version" in worse.reason
    assert worse.ndcg == pytest.approx(trained.ndcg)  # the same model: only the served moved
    close_served = {"gate": {"ndcg@10": trained.ndcg * 1.02}}
    assert quality_gate(data, trained_config, None, close_served, tolerance=0.05).passed


# Slow: three nightly runs. Fast loop: the served kind's gate test below (a refused run
# publishes nothing) and test_hardening_04_first_run_with_the_gate_and_too_few_cases_is_refused
# (--force_publish publishes what the gate refused).
@pytest.mark.slow
def test_failed_gate_publishes_nothing_unless_forced(tmp_path, redis_client, data):
    path = tmp_path / "interactions.parquet"
    data.to_parquet(path)
    url = redis_client.connection_pool.connection_kwargs
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0",
            "--model=mf", "--epochs=6", "--dim=8",
            "--k=5", "--direct_running_mode=in_memory"]
    first = run([*argv, "--skip_gate"])["version"]
    lists = ServedLists(redis_client)
    # Pretend the served version scored far above anything this run can reach.
    lists.r.set(f"recsys:v:{first}:meta", json.dumps({"gate": {"ndcg@10": 0.99}}))
    with pytest.raises(QualityGateError, match="nothing was published"):
        run(argv)
    assert lists.current() == first and lists.versions() == [first]
    forced = run([*argv, "--force_publish"])
    assert lists.current() == forced["version"] and forced["gate"]["passed"] is False


def test_decide_reads_the_models_own_validation():
    v = {"window": 0.1, "cases": 80, "warm": 70, "fresh": 10, "ndcg@10": 0.3,
         "popularity_ndcg@10": 0.2}
    ok = decide(v, None)
    assert ok.passed and (ok.ndcg, ok.popularity_ndcg, ok.cases) == (0.3, 0.2, 80)
    assert set(ok.as_dict()) >= {"ndcg@10", "popularity_ndcg@10", "served_ndcg@10", "cases",
                                 "passed", "reason"}
    assert "below popularity's 0.2000" in decide({**v, "ndcg@10": 0.19}, None).reason
    served = {"gate": {"ndcg@10": 0.4}}
    assert "more than 5% below the served version's 0.4000" in decide(v, served, 0.05).reason
    assert decide(v, {"gate": {"ndcg@10": 0.31}}, 0.05).passed  # within the tolerance
    few = decide({**v, "cases": 10}, None, min_cases=50)
    assert not few.passed and few.ndcg is None
    assert "only 10 validation case(s) in the last 10% of the time range" in few.reason
    assert "no version is served yet" in few.reason
    missing = decide(None, {"gate": {"ndcg@10": 0.2}})
    assert not missing.passed and missing.served_ndcg == 0.2
    assert "no validation figure" in missing.reason
    # The nightly names the window as a share of the time range, whatever the figures say.
    named = decide({**v, "window": 0.9, "cases": 10}, None, min_cases=50, window=0.1)
    assert "in the last 10% of the time range" in named.reason and named.window == 0.1


def test_served_nightly_trains_once_and_gates_on_the_fits_validation(tmp_path, redis_client,
                                                                      tiny_dataset,
                                                                      monkeypatch):
    """The served kind is fitted once per run; the gate reads that fit's validation (the
    contract of models/served_fit.fit_served, set here to known figures) and refuses a
    regression against the served version before anything is exported."""
    import models.served_fit as served_fit
    from infra.bundle import list_bundles
    from infra.store import LocalStore
    from tests.conftest import served_flags

    figures = {"window": 0.9, "cases": 41, "warm": 40, "fresh": 1, "ndcg@10": 0.25,
               "popularity_ndcg@10": 0.125}
    fits, real = [], served_fit.fit_served

    def fit_served(*args, **kwargs):
        model = real(*args, **kwargs)
        model.validation = figures
        fits.append(model)
        return model

    monkeypatch.setattr(served_fit, "fit_served", fit_served)
    path = tmp_path / "interactions.parquet"
    tiny_dataset.interactions.to_parquet(path)
    url = redis_client.connection_pool.connection_kwargs
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0", "--k=5",
            "--direct_running_mode=in_memory", "--no_drain_events", "--gate_min_cases=20",
            *served_flags(tmp_path, tiny_dataset)]
    first = run(argv)
    assert len(fits) == 1  # no second training for the gate
    assert first["gate"]["passed"] and first["gate"]["ndcg@10"] == 0.25
    assert first["gate"]["popularity_ndcg@10"] == 0.125 and first["gate"]["cases"] == 41
    assert first["gate"]["window"] == 0.1  # the last of TINY_SERVED's windows is 0.9
    assert "quality_gate" in first["seconds"] and "train" in first["seconds"]
    lists = ServedLists(redis_client)
    meta = json.loads(lists.r.get(f"recsys:v:{first['version']}:meta"))
    lists.r.set(f"recsys:v:{first['version']}:meta",
                json.dumps({**meta, "gate": {**meta["gate"], "ndcg@10": 0.3}}))
    with pytest.raises(QualityGateError, match=r"more than 5% below the served version's "
                                               r"0\.3000.*nothing was published"):
        run(argv)
    assert len(fits) == 2 and lists.current() == first["version"]
    assert list_bundles(LocalStore(str(tmp_path / "store"))) == [first["version"]]


def test_hardening_04_gate_refuses_too_few_validation_cases(data):
    sliver = data.sort_values("timestamp").tail(10)  # the old gate passed: "gate skipped"
    gate = quality_gate(sliver, MFConfig(dim=4, epochs=1), None, served=None)
    assert not gate.passed and gate.cases < 50 and gate.ndcg is None
    assert "fewer than --gate-min-cases 50" in gate.reason
    assert "no version is served yet" in gate.reason
    served = quality_gate(sliver, MFConfig(dim=4, epochs=1), None, {"gate": {"ndcg@10": 0.2}})
    assert not served.passed and "no version is served" not in served.reason
    full = quality_gate(data, MFConfig(dim=4, epochs=1), None, served=None, min_cases=1)
    assert full.cases >= 50 and full.ndcg is not None  # evaluated
    strict = quality_gate(data, MFConfig(dim=4, epochs=1), None, served=None,
                          min_cases=full.cases + 1)
    assert not strict.passed and f"only {full.cases} validation case(s)" in strict.reason


def test_hardening_04_shrink_check_names_each_figure_that_shrank():
    from batch.gate import shrink_check

    served = {"version": "v1", "users_published": 399, "items": 200, "valid_events": 6000}
    sizes = {"users": 10, "items_with_events": 150, "valid_events": 10}
    reason = shrink_check(sizes, served, max_shrink=0.5)
    assert "served version v1" in reason
    assert "users 10 vs 399 (-97.5%)" in reason and "valid_events 10 vs 6,000" in reason
    assert "items_with_events" not in reason  # 150 of 200 is within the tolerance
    assert shrink_check(sizes, served, max_shrink=1.0) is None  # 1 = never refuse
    assert shrink_check({**sizes, "users": 200, "valid_events": 3000}, served, 0.5) is None
    assert "users 398 vs 399" in shrink_check({**sizes, "users": 398, "valid_events": 6000,
                                               "items_with_events": 200}, served, 0.0)
    assert shrink_check(sizes, None) is None  # first run: nothing to compare with
    # A served bundle counts cold items in `items`: items_with_events is what compares.
    with_cold = {**served, "items": 900, "items_with_events": 150}
    assert "items_with_events" not in shrink_check(sizes, with_cold, 0.5)


@pytest.fixture
def nightly_100(tmp_path, redis_client):
    """(argv for an input file, the ~100-user data, ServedLists) on a real Redis."""
    from models.synthetic import generate

    data = generate(n_users=100, n_items=60, seed=1, events_per_user=15).interactions
    url = redis_client.connection_pool.connection_kwargs
    path = tmp_path / "interactions.parquet"
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0",
            "--model=mf", "--epochs=1", "--dim=4",
            "--k=5", "--direct_running_mode=in_memory", "--no_drain_events"]
    return path, argv, data, ServedLists(redis_client)


def _assert_serving(lists, version, users):
    assert lists.current() == version and lists.versions() == [version]
    assert all(lists.get_list(version, u) is not None for u in users)
    assert {k.decode().split(":")[2] for k in lists.r.scan_iter("recsys:v:*")} == {version}


# Slow: a nightly run and three cut short. Fast loop: the shrink rule in
# test_hardening_04_shrink_check_names_each_figure_that_shrank, its refusal unless forced in
# tests/batch/test_stages.py test_refusals_raise_unless_forced.
@pytest.mark.slow
def test_hardening_04_a_sliver_of_the_data_cannot_replace_the_served_version(nightly_100):
    path, argv, data, lists = nightly_100
    data.to_parquet(path)
    first = run([*argv, "--skip_gate"])
    users = sorted(data["user_id"].unique())
    assert first["users_published"] == len(users) >= 95
    data.sort_values("timestamp").tail(10).to_parquet(path)  # a 10-row file
    for flags in (["--skip_gate"], []):  # skipping the evaluation skips no shrink check
        with pytest.raises(QualityGateError, match=r"shrank against the served version "
                                                   rf"{first['version']}: users \d+ vs "
                                                   rf"{len(users)} .*nothing was published"):
            run([*argv, *flags])
        _assert_serving(lists, first["version"], users)  # every list still served
    forced = run([*argv, "--skip_gate", "--force_publish"])
    assert lists.current() == forced["version"] != first["version"]
    assert forced["users_published"] <= 10 and "users" in forced["shrink"]


def test_hardening_04_first_run_with_the_gate_and_too_few_cases_is_refused(nightly_100):
    path, argv, data, lists = nightly_100
    data.sort_values("timestamp").tail(10).to_parquet(path)
    with pytest.raises(QualityGateError, match="fewer than --gate-min-cases 50.*no version is "
                                               "served yet.*nothing was published"):
        run(argv)
    assert lists.current() is None and not list(lists.r.scan_iter("recsys:v:*"))
    forced = run([*argv, "--force_publish"])
    assert lists.current() == forced["version"]
    assert forced["gate"]["passed"] is False and forced["gate"]["ndcg@10"] is None
