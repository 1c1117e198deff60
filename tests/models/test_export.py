"""The exported SavedModel loads in a fresh process and scores like the NumPy model."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from models.export import export_mf
from models.mf import MFConfig, train_mf
from models.topk import brute_force_topk

LOADER = """
import json, sys, numpy as np, tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
hist = tf.constant(json.loads(sys.argv[2]))
q = m.signatures["user_embedding"](item_ids=hist)["query"].numpy()
top = m.signatures["serving_default"](item_ids=hist)
print(json.dumps({"query": q.tolist(),
                  "ids": [[x.decode() for x in r] for r in top["item_ids"].numpy()],
                  "scores": top["scores"].numpy().tolist()}))
"""


def test_saved_model_in_fresh_process_matches(tmp_path, tiny_dataset):
    model = train_mf(tiny_dataset.interactions, MFConfig(dim=8, epochs=2))
    export_mf(model, str(tmp_path / "sm"), k=10)
    ids = [str(x) for x in model.items.ids]
    histories = [[ids[0], ids[5], ids[5], ""], [ids[3], "unknown-item", "", ""]]
    out = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "sm"),
                          json.dumps(histories)], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    idx = [model.items.lookup([h for h in hist if h]) for hist in histories]
    ref = model.fold_in([list(i) for i in idx])
    np.testing.assert_allclose(np.array(got["query"]), ref, atol=1e-4)
    I, D = brute_force_topk(ref, model.item_vectors(), 10, [i[i >= 0] for i in idx])
    assert got["ids"] == [[ids[i] for i in row] for row in I]
    np.testing.assert_allclose(np.array(got["scores"]), D, atol=1e-3)


def test_litert_tower_matches_the_model(tmp_path, tiny_dataset):
    from ai_edge_litert.interpreter import Interpreter

    from models.export import check_tower
    from models.histories import HISTORY, history_matrix

    model = train_mf(tiny_dataset.interactions, MFConfig(dim=8, epochs=2))
    tflite = export_mf(model, str(tmp_path / "sm"), k=10)
    assert check_tower(tflite, model) < 1e-3
    run = Interpreter(model_content=tflite).get_signature_runner()
    got = run(item_idx=history_matrix([[3, 1, 3]], HISTORY))["query"]
    np.testing.assert_allclose(got, model.fold_in([[1, 3]]), atol=1e-4)
    # A broken model is caught: perturb the item factors the check compares against.
    model.item_factors = model.item_factors + 0.5
    with pytest.raises(ValueError, match="differs from the model"):
        check_tower(tflite, model)


def test_hardening_03_tower_check_and_export_fail_on_a_nan_model(tmp_path, tiny_dataset):
    from models.export import check_tower

    model = train_mf(tiny_dataset.interactions, MFConfig(dim=4, epochs=1))
    tflite = export_mf(model, str(tmp_path / "sm"), k=5)
    nan = dataclasses.replace(model, item_factors=np.full_like(model.item_factors, np.nan),
                              item_bias=np.full_like(model.item_bias, np.nan))
    # The old check reported max(0.0, nan) = 0.0 here: a parity of zero for an all-NaN model.
    with pytest.raises(ValueError, match="LiteRT user tower: the reference returned"):
        check_tower(tflite, nan)
    with pytest.raises(ValueError, match=r"item_factors \(\d+ of \d+\)"):
        export_mf(nan, str(tmp_path / "nan"), k=5)
    assert not (tmp_path / "nan").exists()
