"""The model-kind registry (models/kinds/): kinds load by name, lazily, and light."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from infra.bundle import BundleWriter, read_bundle
from infra.store import LocalStore
from models import kinds
from models.kinds import mf, write_bundle


def test_kinds_import_lazily_and_the_mf_kind_without_pandas_or_tensorflow():
    code = textwrap.dedent("""
        import json, sys
        from models import kinds
        before = sorted(m for m in sys.modules if m.startswith("models.kinds."))
        kind = kinds.get("mf")
        heavy = sorted(m for m in ("pandas", "pyarrow", "tensorflow", "apache_beam")
                       if m in sys.modules)
        print(json.dumps([before, kind.name, heavy, "models.kinds.served" in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=".").stdout
    assert json.loads(out.splitlines()[-1]) == [[], "mf", [], False]


def test_an_unknown_kind_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model kind 'mf-random': known kinds are "
                                         r"\['graphsage', 'mf', 'served', 'served_dqn'\]"):
        kinds.get("mf-random")
    store = LocalStore(str(tmp_path))
    writer = BundleWriter(store, "v1")  # by hand, as the benchmarks once did: no kind
    for name in ("item_ids.json", "user_ids.json", "popular.json"):
        writer.put_json(name, ["1"])
    writer.put_array("item_vectors.npy", np.ones((1, 2), np.float32))
    writer.commit({"model": "mf-random"})
    with pytest.raises(ValueError, match="unknown model kind 'mf-random'"):
        kinds.get(read_bundle(store, "v1").manifest.get("model")).batch_scorer(None)


def test_the_mf_bundle_scores_as_its_vectors_say(tmp_path):
    """Users u0 and u1 with one seen item each; items whose vectors give known scores."""
    item_factors = np.array([[1.0, 0], [0, 1], [1, 1], [-1, 0]])
    fit = mf.fit_from_factors(["u0", "u1"], ["a", "b", "c", "d"], [[1.0, 0], [0, 2]],
                              item_factors, np.zeros(4), popular=["c", "a"],
                              seen=[np.array([2]), np.array([])])
    store = LocalStore(str(tmp_path))
    manifest = write_bundle(mf.KIND, fit, BundleWriter(store, "v1"), k=3, meta={"gate": None})
    assert (manifest["model"], manifest["users"], manifest["items"]) == ("mf", 2, 4)
    bundle = read_bundle(store, "v1")
    assert bundle.popular == ["c", "a"] and mf.KIND.on_demand(bundle) is None  # no tower
    ids, items, scores = mf.KIND.batch_scorer(bundle).score(range(0, 2), 3)
    assert ids.tolist() == ["u0", "u1"]
    # u0 = [1, 0]: a 1, b 0, (c seen), d -1; u1 = [0, 2]: c 2, b 2 (tie: smaller index), a 0
    assert items.tolist() == [[0, 1, 3], [1, 2, 0]]
    np.testing.assert_allclose(scores, [[1, 0, -1], [2, 2, 0]])


def test_popular_ids_rank_by_events_ties_in_vocabulary_order_without_unseen_items():
    import pandas as pd

    clean = pd.DataFrame({"item_id": ["b", "c", "b", "a", "c", "zz"]})
    # b and c tie at 2 (b first in the vocabulary), a has 1; d has no event, zz is not listed.
    assert kinds.popular_ids(clean, np.array(["a", "b", "c", "d"], object)) == ["b", "c", "a"]


def test_one_list_drops_the_pads_of_a_one_query_top_k():
    items, scores = kinds.one_list(np.array([[4, 2, -1]]), np.array([[0.9, 0.5, 0.0]]))
    assert items.tolist() == [4, 2] and scores.tolist() == [0.9, 0.5]


def test_served_config_overrides_start_from_served_defaults_not_the_parts_classes():
    # ServedConfig's tower keeps in-batch negatives only, unlike TwoTowerConfig's default:
    # a --served_config naming other tower fields (or none) must not bring the class's back
    from models.kinds.served import parse_config
    from models.served import ServedConfig
    from models.two_tower import TwoTowerConfig

    defaults = ServedConfig()
    assert defaults.tower != TwoTowerConfig()  # what makes the test able to fail
    assert parse_config(None) == defaults
    got = parse_config(json.dumps({"tower": {"dim": 16}, "ranker": {"epochs": 2}}))
    assert got.tower == dataclasses.replace(defaults.tower, dim=16)
    assert got.ranker == dataclasses.replace(defaults.ranker, epochs=2)
    asked = parse_config(json.dumps({"tower": {"uniform_negatives": 64}}))
    assert asked.tower.uniform_negatives == 64


@pytest.mark.parametrize("tower", [{"uniform_negatives": -5}, {"uniform_negatives": 1e308},
                                   {"uniform_negatives": "256"}, {"min_epochs": 0},
                                   {"patience": True}, {"batch_size": 2**70 + 0.5},
                                   {"learning_rate": float("nan")}, {"id_dropout": 1.0},
                                   {"max_per_user": -1}])
def test_a_hostile_tower_value_is_refused_naming_its_field_before_any_work(tower):
    from models.kinds.served import parse_config

    field = next(iter(tower))
    with pytest.raises(ValueError, match=f"TwoTowerConfig: {field} "):
        parse_config(json.dumps({"tower": tower}))


@pytest.mark.parametrize("value", [1e308, 101, -0.5, True, "0.5", float("inf")])
def test_a_fusion_weight_that_overflows_or_means_nothing_is_refused(value):
    # 1e308 x the ranker's spread overflowed the fused scores to -inf, and the lists dropped
    # those candidates as padding
    from models.kinds.served import parse_config

    with pytest.raises(ValueError, match="fusion_warm .*: numbers in \\[0, 100\\]"):
        parse_config(json.dumps({"fusion_fresh": value}, allow_nan=True))
    assert parse_config(json.dumps({"fusion_fresh": 2.0})).fusion_fresh == 2.0


def test_the_served_kind_weighs_events_by_the_run_s_event_weights():
    # --event_weights reached MF and GraphSAGE but not served: its ranker's mean_weight
    # feature averaged the schema's default weights whatever the run said.
    from models.kinds import TrainingData
    from models.kinds.served import ServedKind
    from models.ranker import ITEM_STATS, RankerConfig
    from models.served import ServedConfig
    from models.synthetic import generate
    from models.two_tower import TwoTowerConfig

    ds = generate(n_users=120, n_items=40, seed=3, events_per_user=12)
    tiny = ServedConfig(tower=TwoTowerConfig(dim=8, hidden=16, epochs=1, history=10, recent=3),
                        ranker=RankerConfig(hidden=(8,), neighbours=10, epochs=1, members=1),
                        windows=(0.8, 0.9), n_tower=10, n_knn=10, n_session=5, n_popular=5,
                        candidates=20, tower_epochs=1)
    weights = {"view": 1.0, "click": 3.0, "purchase": 40.0, "rating": 1.0}
    fit = ServedKind().fit(TrainingData(ds.interactions, weights, ds.users, ds.items), tiny)
    vocab = fit.model.tower.data.items
    events = ds.interactions.assign(w=ds.interactions["event_type"].map(weights))
    mean = events.groupby("item_id")["w"].mean()
    got = fit.model.tables.item_stats[:len(vocab), ITEM_STATS.index("mean_weight")]
    want = np.log1p(mean.reindex(vocab.ids).fillna(0.0).to_numpy())  # 0: no event yet
    np.testing.assert_allclose(got, want, rtol=1e-5)
