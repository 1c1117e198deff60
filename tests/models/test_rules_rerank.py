"""models.rules.rerank (the served model's exposure stage) against a plain-Python reference
on random lists, on a hand-made case, and inside ServedModel on every runtime."""

import dataclasses

import numpy as np
import pytest

from models.rules import rerank

N_ITEMS = 30


def reference(items, scores, log_pop, tail, beta, slots, margin, top, affinity=None):
    """One list, plain Python: the rule as its docstring states it."""
    f32 = np.float32
    aff = dict(zip(items, scores if affinity is None else affinity, strict=True))
    pairs = [(i, f32(s) - f32(beta) * f32(log_pop[i]) if beta else f32(s))
             for i, s in zip(items, scores, strict=True) if i >= 0]
    pads = [(i, s) for i, s in zip(items, scores, strict=True) if i < 0]
    if beta:
        pairs.sort(key=lambda p: (-p[1], p[0]))
        if affinity is None:
            aff = dict(pairs)
    if slots and len(items) > top:
        heads = [j for j in range(min(top, len(pairs)) - 1, -1, -1) if not tail[pairs[j][0]]]
        free = [j for j in range(top, len(pairs)) if tail[pairs[j][0]]]
        out_heads, in_tails = [], []
        for h in heads[:slots]:
            close = [j for j in free if pairs[j][1] >= pairs[h][1] - f32(margin)]
            if not close:
                break
            best = max(close, key=lambda j: (aff[pairs[j][0]], -j))
            out_heads.append(h)
            in_tails.append(best)
            free.remove(best)
        first = [p for j, p in enumerate(pairs[:top]) if j not in out_heads]
        first += [pairs[t] for t in sorted(in_tails)]
        rest = [p for j, p in enumerate(pairs) if (j < top and j in out_heads)
                or (j >= top and j not in in_tails)]
        pairs = first + rest
    ranked = [(i, min(p[1] for p in pairs[:j + 1])) for j, (i, _) in enumerate(pairs)]
    return [p[0] for p in ranked + pads], [p[1] for p in ranked + pads]


def random_lists(rng, B=40, n=16):
    """Ranked lists as the ranker gives them: distinct items, descending scores with ties
    (smaller item first), some rows padded with -1 at the end."""
    I = np.full((B, n), -1, np.int64)
    S = np.zeros((B, n), np.float32)
    for r in range(B):
        m = int(rng.integers(n // 2, n + 1))
        items = rng.choice(N_ITEMS, m, replace=False)
        scores = np.round(rng.normal(size=m), 1).astype(np.float32)  # rounding makes ties
        order = np.lexsort((items, -scores))
        I[r, :m], S[r, :m] = items[order], scores[order]
    return I, S


@pytest.fixture
def world():
    rng = np.random.default_rng(0)
    log_pop = np.log1p(rng.integers(0, 50, N_ITEMS)).astype(np.float32)
    tail = log_pop < np.quantile(log_pop, 0.6)
    return rng, log_pop, tail


@pytest.mark.parametrize("beta,slots,margin,personal", [
    (0.0, 0, 0.0, False), (0.3, 0, 0.0, False), (0.0, 2, 0.5, False), (0.0, 10, 9.0, False),
    (0.2, 3, 0.3, False), (0.0, 3, 0.8, True), (0.2, 10, 9.0, True)])
def test_rerank_matches_the_reference(world, beta, slots, margin, personal):
    rng, log_pop, tail = world
    I, S = random_lists(rng)
    A = np.round(rng.normal(size=I.shape), 1).astype(np.float32) if personal else None
    got_I, got_S = rerank(I, S, log_pop, tail, beta, slots, margin, top=5, affinity=A)
    # a permutation of each row: what the rules dropped before it (exclusions) stays out
    np.testing.assert_array_equal(np.sort(got_I, 1), np.sort(I, 1))
    for r in range(len(I)):
        want_I, want_S = reference(I[r].tolist(), S[r].tolist(), log_pop, tail, beta, slots,
                                   margin, 5, None if A is None else A[r].tolist())
        assert got_I[r].tolist() == want_I
        np.testing.assert_allclose(got_S[r], want_S, atol=1e-5)
    listed = np.where(got_I >= 0, got_S, np.float32(-1e30))
    assert (np.diff(listed, axis=1) <= 0).all()  # the scores stay a descending rank key


def test_beta_zero_and_no_slots_is_the_identity(world):
    rng, log_pop, tail = world
    I, S = random_lists(rng)
    for beta, slots in ((0.0, 0), (0.0, 3)):
        got_I, got_S = rerank(I, S, log_pop, tail, beta, slots, margin=-1.0 if slots else 0)
        np.testing.assert_array_equal(got_I, I)  # a negative margin lets nothing through
        np.testing.assert_array_equal(got_S, S)


def test_ties_go_to_the_smaller_item_and_calls_repeat_exactly(world):
    _, log_pop, tail = world
    log_pop = np.zeros(N_ITEMS, np.float32)
    log_pop[[7, 3]] = 1.0  # 7 and 3 fall by the same amount onto 5's score
    I = np.array([[7, 3, 5, -1]])
    S = np.array([[2.0, 2.0, 1.5, 0.0]], np.float32)
    got_I, got_S = rerank(I, S, log_pop, tail, beta=0.5)
    assert got_I.tolist() == [[3, 5, 7, -1]] and got_S.tolist() == [[1.5, 1.5, 1.5, 0.0]]
    again = rerank(I, S, log_pop, tail, beta=0.5)
    np.testing.assert_array_equal(again[0], got_I)


def test_more_slots_and_margin_raise_the_tail_share_of_the_top(world):
    rng, log_pop, tail = world
    I, S = random_lists(rng, B=200)

    def share(I):
        top = I[:, :10]
        return (tail[np.maximum(top, 0)] & (top >= 0)).mean()

    shares = [share(rerank(I, S, log_pop, tail, 0.0, slots, margin)[0])
              for slots, margin in ((0, 0.0), (1, 0.3), (2, 0.3), (2, 1.0), (10, 100.0))]
    assert shares == sorted(shares) and shares[-1] > shares[0] + 0.05
    assert share(rerank(I, S, log_pop, tail, 1.0)[0]) > shares[0]  # debiasing alone too


# -- inside the served model: exclusions still honoured, every runtime the same -------------

@pytest.fixture(scope="module")
def fitted(tiny_dataset):
    from models.served_fit import fit_served
    from tests.models.test_served import TINY

    ds = tiny_dataset
    return fit_served(ds.interactions, ds.users, ds.items,
                      dataclasses.replace(TINY, rerank_slots=3, rerank_margin=10.0,
                                          rerank_beta=0.5))


@pytest.mark.slow  # a served fit and its LiteRT export: ~40 s
def test_served_rerank_honours_exclusions_and_matches_the_litert_path(fitted, tmp_path):
    from models import served_bundle
    from models.served_export import export
    from tests.models.test_served import requests

    model = fitted
    users, histories = requests(model, 6, seed=4)
    idx = model.history_indices(histories)
    args = (idx, model.tower.data.user_matrix(users), model.context(users, True), 10)
    I, S = model.recommend_indices(*args)
    old = model.config
    model.config = dataclasses.replace(old, rerank_slots=0, rerank_beta=0.0)
    try:
        I0, _ = model.recommend_indices(*args)
    finally:
        model.config = old
    tail = ~model.head_items()
    assert (tail[I[I >= 0]]).sum() > (tail[I0[I0 >= 0]]).sum()  # the re-rank acted
    banned = [row[:3] for row in I]
    I2, _ = model.recommend_indices(*args, exclude=banned)
    for row, ban, hist in zip(I2, banned, idx, strict=True):
        assert not set(row) & set(ban) and not set(row) & set(hist)
    export(model, str(tmp_path / "bundle"))
    lite = served_bundle.load(str(tmp_path / "bundle"), runtime="litert")
    assert lite.config.rerank_slots == 3
    I3, S3 = lite.recommend_indices(*args)
    np.testing.assert_array_equal(I3, I)  # the on-demand function's runtime, the same lists
    np.testing.assert_allclose(S3, S, atol=2e-3)


def test_config_rejects_bad_rerank_values():
    from models.served import ServedConfig

    for bad in ({"rerank_beta": -0.1}, {"rerank_margin": float("nan")}, {"rerank_slots": 11},
                {"rerank_slots": 1.5}):
        with pytest.raises(ValueError, match="rerank"):
            ServedConfig(**bad)


def mmr_reference(items, scores, vectors, diversity, top, pool):
    """One list, plain Python MMR: greedy picks from the first `pool`, then the rest."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cand = [j for j in range(min(pool, len(items))) if items[j] >= 0]
    picked = []
    while cand and len(picked) < top:
        def gain(j):
            near = max([0.0, *(float(unit[items[j]] @ unit[items[p]]) for p in picked)])
            return scores[j] - diversity * near

        best = max(cand, key=lambda j: (gain(j), -j))
        picked.append(best)
        cand.remove(best)
    order = picked + [j for j in range(len(items)) if j not in picked]
    return [items[j] for j in order]


@pytest.mark.parametrize("diversity", [0.0, 0.5, 3.0])
def test_mmr_matches_the_reference_and_zero_keeps_the_order(world, diversity):
    rng, log_pop, tail = world
    I, S = random_lists(rng)
    vectors = np.vstack([rng.normal(size=(N_ITEMS, 4)), np.zeros((1, 4))]).astype(np.float32)
    got_I, _ = rerank(I, S, log_pop, tail, diversity=diversity, vectors=vectors, top=5,
                      pool=8)
    for r in range(len(I)):
        assert got_I[r].tolist() == mmr_reference(I[r].tolist(), S[r].tolist(), vectors,
                                                  diversity, 5, 8)
    if diversity == 0.0:
        np.testing.assert_array_equal(got_I, I)
