import json

import pytest

from batch.gate import QualityGateError, quality_gate
from batch.nightly import run
from infra.redis_store import ListStore
from models.mf import MFConfig


@pytest.fixture(scope="module")
def data():
    from models.synthetic import generate

    return generate(n_users=300, n_items=120, seed=2, events_per_user=30).interactions


def test_gate_compares_with_popularity_and_the_served_figure(data):
    config = MFConfig(dim=8, epochs=6)
    first = quality_gate(data, config, None, served=None)
    assert first.cases > 0 and first.popularity_ndcg > 0
    assert first.passed == (first.ndcg >= first.popularity_ndcg)
    better_served = {"gate": {"ndcg@10": first.ndcg * 1.2}}
    worse = quality_gate(data, config, None, served=better_served, tolerance=0.05)
    if first.passed:
        assert not worse.passed and "below the served version" in worse.reason
    close_served = {"gate": {"ndcg@10": first.ndcg * 1.02}}
    assert quality_gate(data, config, None, close_served, tolerance=0.05).passed == first.passed


def test_failed_gate_publishes_nothing_unless_forced(tmp_path, redis_client, data):
    path = tmp_path / "interactions.parquet"
    data.to_parquet(path)
    url = redis_client.connection_pool.connection_kwargs
    argv = [f"--input={path}", f"--store={tmp_path / 'store'}",
            f"--redis_url=redis://{url['host']}:{url['port']}/0", "--epochs=6", "--dim=8",
            "--k=5", "--direct_running_mode=in_memory"]
    first = run([*argv, "--skip_gate"])["version"]
    lists = ListStore(redis_client)
    # Pretend the served version scored far above anything this run can reach.
    lists.r.set(f"recsys:v:{first}:meta", json.dumps({"gate": {"ndcg@10": 0.99}}))
    with pytest.raises(QualityGateError, match="nothing was published"):
        run(argv)
    assert lists.current() == first and lists.versions() == [first]
    forced = run([*argv, "--force_publish"])
    assert lists.current() == forced["version"] and forced["gate"]["passed"] is False


def test_gate_evaluates_the_served_recommender(tiny_dataset):
    from batch.stages import served_config
    from tests.conftest import TINY_SERVED

    config = served_config(json.dumps(TINY_SERVED))
    gate = quality_gate(tiny_dataset.interactions, config, None,
                        served={"gate": {"ndcg@10": 0.99}}, window=0.2,
                        users=tiny_dataset.users, items=tiny_dataset.items)
    assert gate.cases > 0 and 0 < gate.ndcg < 0.99 and gate.popularity_ndcg > 0
    assert not gate.passed and "below" in gate.reason  # popularity's or the served figure
