"""The `served_dqn` kind end to end on tiny data: fit (served, then the DQN on served's
beliefs), bundle through the one writer, the batch scorer (NumPy policy) and the on-demand
scorer (LiteRT policy) give the stage's lists."""

import json

import numpy as np
import pytest

from infra.bundle import BundleWriter, read_bundle
from infra.store import LocalStore
from models import kinds
from models.dqn import STRATEGIES, rerank_lists
from models.dqn_served import item_embeddings, served_pools
from models.histories import csr_rows
from models.kinds import TrainingData, write_bundle
from tests.conftest import TINY_SERVED

FAST_DQN = '{"rounds": 2, "users_per_round": 60, "updates_per_round": 5, "batch": 32}'


def test_bad_dqn_config_names_the_known_fields(tmp_path):
    kind = kinds.get("served_dqn")
    (tmp_path / "bad.json").write_text('{"epochs": 3}')
    with pytest.raises(ValueError, match="rounds"):  # at config time, before any work
        kind.config({"dqn_config": str(tmp_path / "bad.json")})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        kind.config({"dqn_config": str(tmp_path / "bad.json")})
    (tmp_path / "bad.json").write_text('{"guard_windows": 3}')  # served has 2 windows
    with pytest.raises(ValueError, match="--dqn_config: DQNConfig.guard_windows 3: at most"):
        kind.config({"dqn_config": str(tmp_path / "bad.json"),
                     "served_config": json.dumps(TINY_SERVED)})


@pytest.mark.slow
def test_the_served_dqn_bundle_reranks_served_lists_in_batch_and_on_demand(tmp_path,
                                                                          tiny_dataset):
    kind = kinds.get("served_dqn")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "dqn.json").write_text(FAST_DQN)
    config = kind.config({"served_config": json.dumps(TINY_SERVED),
                          "dqn_config": str(tmp_path / "conf" / "dqn.json")})
    ds = tiny_dataset
    fit = kind.fit(TrainingData(ds.interactions, users=ds.users, items=ds.items), config)
    guard = fit.info["guard"]  # the deployment guard ran on served's windows, pooled
    assert set(fit.policy.margins) == {"warm", "fresh"}
    assert list(guard["windows"]) == ["0.8:0.9", "0.9:1"]  # TINY_SERVED's windows 0.8, 0.9
    assert guard["cases"] == sum(w["cases"] for w in guard["windows"].values()) > 0
    store = LocalStore(str(tmp_path / "store"))
    manifest = write_bundle(kind, fit, BundleWriter(store, "v1"), k=10)
    assert manifest["model"] == "served_dqn"
    assert manifest["dqn"]["strategies"] == list(STRATEGIES)
    assert manifest["dqn"]["litert_max_abs_diff"] < 1e-4
    assert manifest["dqn"]["guard"] == guard
    bundle = read_bundle(store, "v1")

    scorer = kind.batch_scorer(bundle)
    ids, lists, scores = scorer.score(range(0, 5), 10)
    s = scorer.served
    hists = csr_rows(s.indptr, s.items, range(0, 5))
    pools = served_pools(s.model, list(ids), hists, user_tok=s.user_tok[:5])
    want, _ = rerank_lists(fit.policy, pools.query, pools.recent, pools.items,
                           item_embeddings(s.model), 10, fresh=False)  # the warm margin
    assert np.array_equal(lists, want)
    for row, h in zip(lists, hists, strict=True):
        row = row[row >= 0]
        assert len(set(row)) == len(row) and not set(row) & set(h)
    assert (np.diff(scores, axis=1) <= 0).all()  # the stage's order

    on_demand = kind.on_demand(bundle)
    assert on_demand.policy.margins == fit.policy.margins  # LiteRT applies the same ones
    got, _ = on_demand.recommend(hists[0], str(ids[0]), None, hists[0], 10)
    assert len(got) == 10 and not set(got) & set(hists[0])
    assert set(got) <= set(pools.items[0])  # served's top 100 of that user
