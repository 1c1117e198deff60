"""models/similar.py against a brute-force reference, and the next-item task's scoring."""

import numpy as np
import pandas as pd
import pytest

from models.next_item import next_item_cases, score_cases
from models.similar import SimilarConfig, similar_table


def _brute(users, items, V, n, config):
    X = np.zeros((users.max() + 1, n))
    X[users, items] = 1
    co = X.T @ X
    count = X.sum(0)
    knn = co if config.source == "cooc" else co / np.maximum(
        np.outer(count ** config.alpha, count ** (1 - config.alpha)), 1e-12)
    U = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    emb = (1 + U @ U.T) / 2
    w = {"blend": (1.0, config.embedding_weight), "knn": (1.0, 0.0), "cooc": (1.0, 0.0),
         "embedding": (0.0, 1.0)}[config.source]
    s = w[0] * knn + w[1] * emb
    np.fill_diagonal(s, -np.inf)
    return s


@pytest.mark.parametrize("source", ["blend", "knn", "embedding", "cooc"])
def test_the_blocked_table_equals_brute_force(source, monkeypatch):
    import models.similar

    monkeypatch.setattr(models.similar, "BLOCK_CELLS", 40)  # several blocks of 2 rows
    rng = np.random.default_rng(0)
    n = 17
    users, items = rng.integers(0, 30, 120), rng.integers(0, n - 2, 120)  # 2 items: no events
    V = rng.normal(size=(n, 4)).astype(np.float32)
    config = SimilarConfig(k=6, source=source, embedding_weight=0.3)
    idx, score = similar_table(users, items, V, n, config)
    s = _brute(users, items, V, n, config)
    for i in range(n):
        got = idx[i][idx[i] >= 0]
        want = np.sort(s[i][s[i] > 0])[::-1][:config.k]  # the brute-force top scores
        assert len(got) == len(want), i
        np.testing.assert_allclose(score[i][:len(got)], want, atol=1e-4)
        np.testing.assert_allclose(s[i, got], want, atol=1e-4)  # the ids carry those scores
    assert (idx != np.arange(n)[:, None]).all()  # never the item itself
    if source == "knn":
        assert (idx[n - 2:] == -1).all()  # items without events: no co-occurrence neighbour
    if source == "blend":
        assert (idx[n - 2:] >= 0).all()  # ... but the embedding gives them some


def test_next_item_cases_and_hits():
    events = pd.DataFrame({"user_id": ["u", "u", "u", "u", "v", "v"],
                           "item_id": ["a", "b", "a", "c", "b", "c"],
                           "timestamp": [1, 2, 3, 10, 1, 11]})
    cases = next_item_cases(events, cutoff=10)
    assert cases[["prev", "next"]].values.tolist() == [["b", "c"], ["b", "c"]]  # a repeat: no case
    idx = np.array([[1, 2], [2, 0], [0, 1]])  # b's top: c, a
    assert score_cases(cases, ["a", "b", "c"], idx, k=1) == {"cases": 2, "hr@1": 1.0,
                                                            "mrr@1": 1.0}
    assert score_cases(cases, ["a", "b", "c"], idx[:, ::-1], k=2)["mrr@2"] == 0.5
