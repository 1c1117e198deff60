"""The `graphsage` kind end to end on tiny data: fit, bundle through the one writer, the
nightly's batch scorer and the functions' on-demand scorer (LiteRT, no TensorFlow)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from infra.bundle import BundleWriter, read_bundle
from infra.store import LocalStore
from models import kinds
from models.kinds import TrainingData, write_bundle
from tests.models.test_graphsage import FAST, blocks


def test_the_kind_module_imports_without_tensorflow_or_pandas():
    code = textwrap.dedent("""
        import json, sys
        from models import kinds
        kind = kinds.get("graphsage")
        print(json.dumps([kind.name, sorted(m for m in ("pandas", "tensorflow", "keras",
                                                        "apache_beam") if m in sys.modules)]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=".").stdout
    assert json.loads(out.splitlines()[-1]) == ["graphsage", []]


@pytest.mark.slow
def test_the_graphsage_bundle_serves_warm_and_fresh_users(tmp_path):
    train, users, items = blocks()
    kind = kinds.get("graphsage")
    fit = kind.fit(TrainingData(train, users=users, items=items), FAST, window=0.2)
    assert fit.validation["cases"] > 0 and fit.validation["ndcg@10"] is not None
    store = LocalStore(str(tmp_path))
    manifest = write_bundle(kind, fit, BundleWriter(store, "v1"), k=5)
    assert (manifest["model"], manifest["users"], manifest["items"]) == ("graphsage", 60, 22)
    bundle = read_bundle(store, "v1")
    model, idx = fit.model, fit.model.data.items.lookup

    ids, lists, _ = kind.batch_scorer(bundle).score(range(0, 2), 5)
    assert ids.tolist() == ["0", "1"]
    for row, user in zip(lists, ("0", "1"), strict=True):
        seen = set(idx(train.loc[train["user_id"] == user, "item_id"]))
        assert not seen & set(row.tolist())  # the user's own items are excluded
    assert set(lists[0]) <= set(range(0, 10)) | {20}  # block A, and its cold item

    scorer = kind.on_demand(bundle)
    history = idx(["1", "3", "5"])
    # the functions pass the history among the exclusions (OnDemandScorer's contract)
    got, scores = scorer.recommend(history, "new", {"side": "left"}, history, 5)
    xq = model.user_vectors(np.pad(history, (FAST.history - 3, 0), constant_values=-1)[None],
                            model.data.user_enc.encode_rows([{"side": "left"}]))
    want = np.argsort(-(xq @ model.item_vectors.T)[0], kind="stable")
    want = [i for i in want if i not in set(history)][:5]
    assert got.tolist() == want and len(scores) == 5
    assert not set(got) & set(history)
    assert scorer.recommend(np.array([], np.int64), "new", None, np.array([]), 5)[0].size == 0
