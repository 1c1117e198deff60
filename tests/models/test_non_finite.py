"""Issue 15, finding 3: training and export refuse NaN and infinity (two-tower, ranker, the
served pipeline and its LiteRT parity check), instead of exporting a model that serves empty
lists."""

import dataclasses
import json

import numpy as np
import pytest

from models.ranker import FEATURES, RankerConfig, RankingData
from models.ranker_fit import fit_member
from models.runtimes import LiteRTRuntime
from models.served_export import check_litert, export
from models.served_fit import fit_served
from models.tower_data import prepare
from models.tower_fit import fit_tower
from models.two_tower import TwoTowerConfig


@pytest.fixture(scope="module")
def tiny_served():
    from models.kinds.served import parse_config
    from tests.conftest import TINY_SERVED

    return parse_config(json.dumps({**TINY_SERVED, "tower_epochs": 1}))


def test_hardening_03_served_training_refuses_a_weight_past_float32_range(tiny_dataset,
                                                                         tiny_served):
    # The ranker's mean_weight feature averages event weights: 1e39 is inf in float32.
    train = tiny_dataset.interactions.assign(weight=np.nan)
    train.loc[train.index[0], "weight"] = 1e39
    with pytest.raises(ValueError, match=r"ranker: .*feature\(s\) \['mean_weight'\]"):
        fit_served(train, tiny_dataset.users, tiny_dataset.items, tiny_served)


def test_hardening_03_litert_parity_check_and_export_fail_on_a_nan_model(tmp_path, tiny_dataset,
                                                                        tiny_served):
    ds = tiny_dataset
    model = fit_served(ds.interactions, ds.users, ds.items, tiny_served)
    path = export(model, str(tmp_path / "good"))["path"]
    lite = LiteRTRuntime(f"{path}/user_tower.tflite", f"{path}/ranker.tflite")
    members = [[np.full_like(w, np.nan) for w in m] for m in model.ranker.members]
    nan = dataclasses.replace(model, ranker=dataclasses.replace(model.ranker, members=members),
                              runtime=None)
    # The old check took max |diff| = nan, and `nan > atol` is False: it passed.
    with pytest.raises(ValueError, match="LiteRT ranker: the reference returned"):
        check_litert(nan, lite)
    with pytest.raises(ValueError, match="served model: .*ranker member 0 weight 0"):
        export(nan, str(tmp_path / "nan"))
    assert not list(tmp_path.glob("nan*"))


def test_hardening_03_two_tower_training_that_diverges_is_refused(tiny_dataset):
    # A temperature of 0 divides the scores by zero: the loss is NaN from the first step.
    config = TwoTowerConfig(dim=8, hidden=16, history=10, recent=3, temperature=0.0)
    data = prepare(tiny_dataset.interactions, None, None, config)
    with pytest.raises(ValueError, match="two-tower: the training loss is nan at epoch 1"):
        fit_tower(data, config, epochs=2)


def test_hardening_03_ranker_names_the_non_finite_feature():
    rng = np.random.default_rng(0)
    X = rng.random((20, 6, len(FEATURES))).astype(np.float32)
    X[3, 2, FEATURES.index("history_pop")] = np.inf
    y = np.zeros((20, 6), bool)
    y[:, 0] = True
    data = RankingData(X, y, np.ones((20, 6), bool), np.ones(20, int))
    with pytest.raises(ValueError, match=r"feature\(s\) \['history_pop'\]"):
        fit_member(data, RankerConfig(hidden=(4,), epochs=1), epochs=1, seed=0)


def test_hardening_03_a_bundle_refuses_nan_vectors(tmp_path):
    from infra.bundle import BundleWriter
    from infra.store import LocalStore

    store = LocalStore(str(tmp_path))
    writer = BundleWriter(store, "v1")
    writer.put_array("seen_items.npy", np.arange(3))  # integers: nothing to check
    vectors = np.ones((4, 3), np.float32)
    vectors[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"item_vectors\.npy has 1 non-finite .* of 12"):
        writer.put_array("item_vectors.npy", vectors)
    assert store.list("bundles/v1") == ["bundles/v1/seen_items.npy"]
