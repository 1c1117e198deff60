"""benchmarks.sequence_probe on tiny data with known answers."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.fresh_probes import ItemWalk
from benchmarks.sequence_probe import (
    BOS,
    PAD,
    SequenceConfig,
    SequenceRecommender,
    training_windows,
)


def chains(n_users=120, n_items=12, length=8, seed=0) -> pd.DataFrame:
    """Each user walks the cycle 0 -> 1 -> ... -> n_items - 1 -> 0 from a random start, one
    item per second: the next item is known from the last one, and item-kNN, blind to order,
    cannot tell the next item from the previous one."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", str((s + t) % n_items), 1000 * u + t)
            for u, s in enumerate(rng.integers(0, n_items, n_users)) for t in range(length)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_windows_start_at_bos_and_pad_on_the_right():
    x, y, w = training_windows([np.array([5, 6, 7]), np.array([0, 1, 2, 3, 4])], max_len=3)
    # seq + 2 are the tokens; [BOS, 5, 6] predicts [5, 6, 7]; the second user's 5 items make
    # two windows: [BOS, 0, 1] -> [0, 1, 2] and [2, 3, pad] -> [3, 4, -].
    assert x.tolist() == [[BOS, 7, 8], [BOS, 2, 3], [4, 5, PAD]]
    assert y.tolist() == [[5, 6, 7], [0, 1, 2], [3, 4, 0]]
    assert w.tolist() == [[1, 1, 1], [1, 1, 1], [1, 1, 0]]


@pytest.mark.slow  # ~10 s with TensorFlow's import
def test_sasrec_learns_the_next_item_that_knn_cannot_see():
    train = chains()
    config = SequenceConfig(max_len=8, dim=16, blocks=1, heads=1, dropout=0.0, epochs=40,
                            batch_size=32, learning_rate=5e-3)
    model = SequenceRecommender(config).fit(train)
    histories = [[str((s + t) % 12) for t in range(5)] for s in range(12)]
    top = model.recommend(["x"] * 12, histories, 1, fresh=True)
    assert [t[0] for t in top] == [str((s + 5) % 12) for s in range(12)]
    knn = ItemWalk(asym=0.7).fit(train).recommend(["x"] * 12, histories, 1, fresh=True)
    assert sum(k[0] == t[0] for k, t in zip(knn, top, strict=True)) < 12
