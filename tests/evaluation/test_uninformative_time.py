"""Issue 22's acceptance: with uninformative timestamps, `served` stays at or above popularity
and item-kNN under the temporal holdout.

The split and the cases come from the generated data's true timestamps (models/synthetic.py),
so the truth is the same in every variant; then the train side's timestamps, all the models
see, are made uninformative: shuffled among the train events, constant (all at the last train
instant) or tied (each user's events at that user's first instant, their order lost).

Tolerance: served must not be *significantly* below a baseline: the upper end of the 95%
paired bootstrap interval (scipy.stats.bootstrap, 1,000 resamples of the cases, percentile) of
the per-case NDCG@10 difference served - baseline must be >= 0. Over these 751 cases that
interval is about ±0.008 wide, so served passes only if its mean is above the baseline's minus
about 0.008. Measured 2026-11-30 (commit 59aac5d), NDCG@10 served / popularity / item-kNN:
shuffled 0.1543 / 0.1219 / 0.1403 (served - item-kNN +0.0141 [0.0067, 0.0217]); tied
0.1353 / 0.1219 / 0.1403 (served - item-kNN -0.0049 [-0.0107, 0.0009]: within noise, the
closest call); constant: served did not fit. Measured again at commit 4fe6e5b (EASE off by
default since a397b22; constant timestamps cut the windows by each user's event order):
shuffled 0.1375 (served - item-kNN -0.0027 [-0.0100, 0.0037]); constant 0.1348 (-0.0055
[-0.0124, 0.0010]); tied 0.1302 (-0.0100 [-0.0170, -0.0038]: fails; with tied timestamps
no user has events on both sides of a window's cutoff, so served's windows hold fresh cases
only and its guard cannot check the warm segment). Measured at 366dad8 (a window with almost
no warm case gets warm cases held out without time: models/served_fit.with_warm_cases): tied
0.1387 (served - item-kNN -0.0015 [-0.0071, 0.0039]); shuffled and constant unchanged.
Measured at 9c706cd (the ranker's "positive" loss, the re-rank at 1 slot / margin 1.0):
shuffled 0.1375 (-0.0027 [-0.0098, 0.0037]), constant 0.1361 (-0.0042 [-0.0106, 0.0022]),
tied 0.1374 (-0.0028 [-0.0083, 0.0027]); popularity 0.1219, item-kNN 0.1403.
"""

import logging

import numpy as np
import pytest
from scipy.stats import bootstrap

from evaluation.registry import MODEL_REGISTRY
from models.evaluation import Split, build_cases, ndcg_at_k, recommend_cases, temporal_split
from models.synthetic import generate

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)
BASELINES = ("popularity", "item_knn")


def uninformative(train, how: str, seed: int = 0):
    """The train events with timestamps that say nothing: "shuffled", "constant" or "tied"."""
    ts = train["timestamp"].to_numpy()
    if how == "shuffled":
        new = np.random.default_rng(seed).permutation(ts)
    elif how == "constant":
        new = np.full_like(ts, ts.max())
    else:  # tied: each user's events at the user's first instant
        new = train.groupby("user_id")["timestamp"].transform("min").to_numpy()
    return train.assign(timestamp=new)


@pytest.fixture(scope="module")
def world():
    data = generate(900, 400, seed=11)
    split = temporal_split(data.interactions)
    return data, split, build_cases(split)


def per_case_ndcg(name, train, split, cases, data):
    """NDCG@10 of each case (warm then fresh) for the model `name` fitted on `train`."""
    model = MODEL_REGISTRY[name]().fit(train.copy(), data.users, data.items)
    lists = recommend_cases(model, cases.warm) + recommend_cases(model, cases.fresh)
    return np.array([ndcg_at_k(r, c.truth)
                     for r, c in zip(lists, cases.warm + cases.fresh, strict=True)])


@pytest.mark.parametrize("how", ["shuffled", "constant", "tied"])
def test_served_stays_at_or_above_popularity_and_item_knn(world, how):
    data, split, cases = world
    train = uninformative(split.train, how)
    assert train["timestamp"].max() < split.cutoff  # still the train side
    shown = Split(train, split.test, split.cutoff)
    ndcg = {n: per_case_ndcg(n, train, shown, cases, data) for n in ("served", *BASELINES)}
    figures = {n: round(float(v.mean()), 4) for n, v in ndcg.items()}
    for name in BASELINES:
        diff = ndcg["served"] - ndcg[name]
        ci = bootstrap((diff,), np.mean, n_resamples=1000, confidence_level=0.95,
                       method="percentile", random_state=0).confidence_interval
        log.info("%s timestamps: NDCG@10 %s; served - %s %.4f [%.4f, %.4f]", how, figures,
                 name, diff.mean(), ci.low, ci.high)
        assert ci.high >= 0, (f"{how} timestamps: served below {name}: NDCG@10 {figures}, "
                              f"served - {name} {diff.mean():.4f} [{ci.low:.4f}, {ci.high:.4f}]")
