"""fit_served's windows and its validation figure (the nightly gate's) on tiny synthetic data:
no event of the last window reaches an earlier one, and the figure is the NDCG@10 that
evaluate_model gives the last window's served lists."""

import dataclasses

import pandas as pd
import pytest

from models.baselines import Popularity
from models.evaluation import (
    Cases,
    build_cases,
    evaluate_model,
    recommend_cases,
    score_lists,
    temporal_split,
)
from models.ranker import RankerConfig
from models.ranker_fit import train_ranker
from models.served import ServedConfig, ServedModel
from models.served_fit import (
    ServedRecommender,
    fit_served,
    latest,
    ranking_data,
    validate,
    windows,
)
from models.tower_data import prepare
from models.tower_fit import fit_tower
from models.two_tower import TwoTowerConfig

TINY = ServedConfig(
    tower=TwoTowerConfig(dim=8, hidden=16, epochs=2, history=10, recent=3, patience=1),
    ranker=RankerConfig(hidden=(8,), neighbours=20, epochs=3, members=2),
    windows=(0.8, 0.9), n_tower=15, n_knn=15, n_session=10, n_popular=10, candidates=40,
    tower_epochs=2)
KEYS = {"window", "cases", "warm", "fresh", "ndcg@10", "popularity_ndcg@10"}


@pytest.fixture(scope="module")
def data():
    from models.synthetic import generate

    return generate(n_users=160, n_items=60, seed=5, events_per_user=15)


def test_windows_keep_the_last_windows_events_out_of_the_earlier_ones(data):
    events = data.interactions
    splits = windows(events, (0.9, 0.7, 0.8))
    cut = [temporal_split(events, q) for q in (0.7, 0.8, 0.9)]
    assert [s.cutoff for s in splits] == [s.cutoff for s in cut]
    for got, want in zip(splits, cut, strict=True):
        pd.testing.assert_frame_equal(got.train, want.train)
    pd.testing.assert_frame_equal(splits[-1].test, cut[-1].test)  # the gate's window, whole
    for got, want in zip(splits[:-1], cut[:-1], strict=True):
        ts = got.test["timestamp"]
        assert len(got.test) and ts.max() < cut[-1].cutoff <= want.test["timestamp"].max()
        pd.testing.assert_frame_equal(
            got.test, want.test[want.test["timestamp"] < cut[-1].cutoff].reset_index(drop=True))


def test_latest_keeps_the_same_share_of_each_segment():
    cases = Cases(list(range(30)), list(range(10)))
    assert latest(cases, 100) == (30, 10) and latest(cases, 20) == (15, 5)
    assert latest(cases, 3) == (2, 0)


def test_validation_figure_is_evaluate_models_ndcg_of_the_windows_lists(data):
    """`validate` scores the candidate lists it is given; the same ranker in a ServedModel,
    through ServedRecommender and the evaluation's scoring, gives the same NDCG@10."""
    events, (earlier_split, split) = data.interactions, windows(data.interactions, (0.8, 0.9))
    tc = TINY.tower
    tower = fit_tower(prepare(split.train, data.users, data.items, tc), tc, 2)[0]
    window = ServedModel.build(split.train, tower, data.items, TINY)
    cases = build_cases(split)
    assert cases.warm and cases.fresh
    segments = [ranking_data(window, Cases(cases.warm, [])),
                ranking_data(window, Cases([], cases.fresh))]
    earlier = [ranking_data(window, build_cases(earlier_split))]
    got, fallback = validate(split, cases, segments, earlier, TINY)
    assert set(got) == KEYS and got["window"] == 0.9 and fallback == {}  # no sources: no guard
    assert (got["warm"], got["fresh"]) == (len(cases.warm), len(cases.fresh))
    assert got["cases"] == len(build_cases(temporal_split(events, 0.9)).warm) + len(
        build_cases(temporal_split(events, 0.9)).fresh)

    ranker = train_ranker(earlier, TINY.ranker)
    figures = set()
    # the figure is of the ranker's order (no re-rank), fused as served when fusion is on
    for fusion in ({"fusion_warm": 0.0, "fusion_fresh": 0.0},
                   {"fusion_warm": 0.5, "fusion_fresh": 2.0},
                   {"fusion_fresh": 1.0, "fusion_source": "popular", "fusion_kind": "rrf"}):
        config = dataclasses.replace(TINY, **fusion)
        plain = dataclasses.replace(config, rerank_slots=0)
        rec = ServedRecommender(plain)
        rec.model = ServedModel.build(split.train, tower, data.items, plain, ranker)
        want = score_lists(cases, recommend_cases(rec, cases.warm),
                           recommend_cases(rec, cases.fresh), split.train, n_resamples=1)
        got = validate(split, cases, segments, earlier, config)[0]
        assert got["ndcg@10"] == pytest.approx(want["all"]["ndcg@10"], abs=6e-5), fusion
        figures.add(got["ndcg@10"])
    assert len(figures) > 1  # fusion changed the order somewhere
    pop = evaluate_model(Popularity(), temporal_split(events, 0.9),
                         build_cases(temporal_split(events, 0.9)), n_resamples=1)
    assert got["popularity_ndcg@10"] == pytest.approx(pop["all"]["ndcg@10"], abs=6e-5)
    assert validate(split, Cases([], []), [], earlier, TINY) == (None, {})
    assert validate(split, cases, segments, [], TINY) == (None, {})  # nothing to train it on


def test_fit_served_reports_the_last_windows_figure(data):
    model = fit_served(data.interactions, data.users, data.items, TINY)
    v = model.validation
    cases = build_cases(temporal_split(data.interactions, 0.9))
    assert set(v) == KEYS | {"guard"}
    assert (v["warm"], v["fresh"]) == (len(cases.warm), len(cases.fresh))
    assert 0 < v["ndcg@10"] <= 1 and 0 < v["popularity_ndcg@10"] <= 1
    # one tower fit from scratch (2 epochs), continued one epoch per later window and at last
    assert model.tower.epochs == 2 + 2 * TINY.tower.warm_start_epochs
    rec = ServedRecommender(TINY)
    rec.model = model
    lists = rec.recommend(["1", "new"], [["1", "2"], ["3"]], 5, fresh=False)
    assert all(0 < len(r) <= 5 for r in lists)
    single = dataclasses.replace(TINY, windows=(0.9,), tower=dataclasses.replace(
        TINY.tower, warm_start_epochs=None))
    alone = fit_served(data.interactions, data.users, data.items, single)
    assert alone.validation is None and alone.tower.epochs == 2  # fitted from scratch


def test_fit_served_says_when_no_window_has_a_case():
    rows = [("u1", "i1", 1), ("u1", "i2", 2), ("u1", "i1", 3), ("u1", "i2", 4)]  # repeats
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    with pytest.raises(ValueError, match="no ranker training case"):
        fit_served(events, None, None, TINY)
