import numpy as np
import pandas as pd
import pytest

from models.mf import MFConfig, train_mf
from models.retrieval import MFRecommender


def _blocks(n_users=40, n_items=20, seed=0):
    """Two taste groups: even users like items 0-9, odd users like items 10-19."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        lo = 0 if u % 2 == 0 else 10
        for i in rng.choice(np.arange(lo, lo + 10), 6, replace=False):
            rows.append((str(u), str(i), int(rng.integers(0, 1000))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_mf_learns_block_tastes_for_warm_and_fresh_users():
    train = _blocks()
    rec = MFRecommender(MFConfig(dim=4, epochs=30, learning_rate=0.05)).fit(train)
    hist = train.groupby("user_id")["item_id"].apply(list)
    warm = rec.recommend(["0", "1"], [hist["0"], hist["1"]], 3, fresh=False)
    assert all(int(i) < 10 for i in warm[0]) and all(int(i) >= 10 for i in warm[1])
    fresh = rec.recommend(["new"], [["12", "15"]], 3, fresh=True)
    assert all(int(i) >= 10 for i in fresh[0]) and not {"12", "15"} & set(fresh[0])


def test_mf_recommender_trains_with_the_given_event_weights():
    """The kind's validation fits MFRecommender with the run's event weights: a weight that
    changes the training changes the factors, and they are train_mf's with those weights."""
    train = _blocks().assign(event_type=["click", "purchase"] * 120)
    config, weights = MFConfig(dim=4, epochs=2), {"click": 1.0, "purchase": 50.0}
    weighted = MFRecommender(config, weights).fit(train).model
    np.testing.assert_array_equal(weighted.item_factors,
                                  train_mf(train, config, weights).item_factors)
    default = MFRecommender(config).fit(train).model
    assert not np.allclose(weighted.item_factors, default.item_factors)


def test_mf_fold_in_of_empty_history_is_bias_only():
    model = train_mf(_blocks(), MFConfig(dim=4, epochs=1))
    q = model.fold_in([[]])
    assert np.all(q[0, :-1] == 0) and q[0, -1] == 1


def test_hardening_03_one_weight_past_float32_range_is_refused_not_trained_to_nan():
    # 1e39 is finite in float64 but inf in float32: the old model came out all-NaN.
    train = _blocks().assign(weight=np.nan)
    train.loc[3, "weight"] = 1e39
    with pytest.raises(ValueError, match=r"1 \(user, item\) pair\(s\).*user '\d+' item"):
        train_mf(train, MFConfig(dim=4, epochs=1))


def test_hardening_03_a_diverging_training_is_refused():
    # A finite float32 rating of 1e30 makes the explicit objective's squared error overflow.
    train = _blocks().assign(weight=3.0)
    train.loc[3, "weight"] = 1e30
    with pytest.raises(ValueError, match="training loss is (inf|nan) at epoch 1"):
        train_mf(train, MFConfig(dim=4, epochs=2, objective="explicit"))
