"""benchmarks.fresh_probes: the session kNN it compares, its refusals, and (slow) the ranker
probe on a tiny fit, which reads fit_served's validation lists and would break with them."""

import json

import pandas as pd
import pytest

from benchmarks import fresh_probes


def _events(pairs):
    return pd.DataFrame([{"user_id": u, "item_id": i, "timestamp": t}
                         for t, (u, i) in enumerate(pairs)])


def test_session_knn_sums_the_items_of_the_users_who_share_the_history():
    train = _events([("u1", "a"), ("u1", "b"), ("u1", "c"),
                     ("u2", "a"), ("u2", "d"),
                     ("u3", "e"), ("u3", "f")])
    model = fresh_probes.SessionKNN(k=2, beta=0.5).fit(train)
    got = dict(zip(model.catalog.ids, model.scores([["a", "b"]], fresh=True)[0], strict=True))
    # u1 shares a and b (2 / (sqrt 2 sqrt 3)), u2 shares a (1 / (sqrt 2 sqrt 2)), u3 nothing
    assert got["c"] == pytest.approx(2 / (2 ** 0.5 * 3 ** 0.5))
    assert got["d"] == pytest.approx(1 / 2)
    assert got["e"] == got["f"] == 0.0
    one = fresh_probes.SessionKNN(k=1, beta=0.5).fit(train)
    only = dict(zip(one.catalog.ids, one.scores([["a", "b"]], fresh=True)[0], strict=True))
    assert only["c"] > 0 and only["d"] == 0.0  # the nearest user alone


def test_an_unknown_probe_is_refused_before_the_data_is_read(capsys):
    with pytest.raises(SystemExit) as e:
        fresh_probes.main(["--dataset", "movielens:/nonexistent", "--probes", "ranker,nope"])
    assert e.value.code == 2
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_ranker_probe_scores_served_and_its_variants_on_the_fit_s_own_lists(tmp_path):
    out = tmp_path / "probes.json"
    report = fresh_probes.main(["--dataset", "synthetic:users=300,items=150,events_per_user=30",
                                "--probes", "ranker", "--starts", "1.0", "--json", str(out)])
    rows = report["ranker"]
    assert {"mlp (served)", "mlp, fresh lists x2", "fusion source alone"} <= set(rows)
    for per_start in rows.values():
        (warm, fresh, all_), = per_start
        assert 0 <= warm <= 1 and 0 <= fresh <= 1 and min(warm, fresh) <= all_ <= max(warm, fresh)
    assert json.loads(out.read_text())["ranker"]["mlp (served)"] == [list(rows["mlp (served)"][0])]


def test_served_s_knn_table_and_rp3beta_score_co_occurring_items():
    train = _events([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"),
                     ("u3", "c"), ("u3", "d")])
    asym = fresh_probes.ItemWalk(asym=0.7).fit(train)
    got = dict(zip(asym.catalog.ids, asym.scores([["a"]], fresh=True)[0], strict=True))
    assert got["b"] == pytest.approx(2 / (2 ** 0.7 * 2 ** 0.3))  # co 2, n_a = n_b = 2
    assert got["c"] == pytest.approx(1 / (2 ** 0.7 * 2 ** 0.3))
    assert got["a"] == got["d"] == 0.0  # the diagonal out; d never meets a
    walk = fresh_probes.ItemWalk(alpha=1.0, beta=0.0).fit(train)
    step = dict(zip(walk.catalog.ids, walk.scores([["a"]], fresh=True)[0], strict=True))
    # a -> u1 or u2 (1/2 each); u1 -> b (1/2), u2 -> b or c (1/3 each)
    assert step["b"] == pytest.approx(1 / 2 * 1 / 2 + 1 / 2 * 1 / 3)
    assert step["c"] == pytest.approx(1 / 2 * 1 / 3) and step["d"] == 0.0
