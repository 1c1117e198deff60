import numpy as np
import pytest

from models.index import IndexConfig, build_index, index_recall


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_reach_the_target_recall(kind):
    import faiss

    rng = np.random.default_rng(0)
    xb = rng.normal(size=(4000, 16)).astype(np.float32)
    xq = rng.normal(size=(200, 16)).astype(np.float32)
    index, info = build_index(xb, xq[:100], 20, IndexConfig(kind=kind, target_recall=0.95))
    assert info["recall@k"] >= 0.95
    exact = faiss.IndexFlatIP(16)
    exact.add(xb)
    assert index_recall(index, exact, xq[100:], 20) >= 0.9  # holds on unseen queries too


def test_auto_is_exact_for_small_catalogs():
    xb = np.random.default_rng(1).normal(size=(100, 4)).astype(np.float32)
    index, info = build_index(xb, xb[:10], 5)
    assert info == {"type": "IndexFlatIP", "recall@k": 1.0, "k": 5} and index.ntotal == 100
