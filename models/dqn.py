"""The DQN re-ranking stage after `served`: a Q-network picks one re-ranking strategy per
slate, the strategy orders served's top N (no TensorFlow here: the batch and the functions
run the exported weights in NumPy or LiteRT).

Actions are strategies, not items. Each action re-orders served's own candidates with maximal
marginal relevance (MMR, Carbonell & Goldstein 1998) at one trade-off between served's rank
(relevance = 1 - rank / N) and similarity (cosine of the centred two-tower item embeddings)
to the items already placed:

    0 served    served's order unchanged (the greedy one-shot ranking)
    1 mmr_0.7   0.7 * relevance - 0.3 * max cosine to the items placed above
    2 mmr_0.4   0.4 * relevance - 0.6 * max cosine to the items placed above
    3 mmr_0.25  0.25 * relevance - 0.75 * max cosine to the items placed above

Every strategy fills the first HEAD slots in served's order and picks each later slot among
the first WINDOW places still free (a relevance floor by rank), and the policy keeps served's
order unless the best strategy's Q beats it by more than a margin (`choose`): the MovieLens
holdout cost of diversifying all 100 places was 26% NDCG@10 (docs/RL.md).

(`rerank` can also count similarity to the recent items; a strategy doing so, "away from
what was just shown", was dominated by these on both simulator settings and was dropped.)

Why strategies rather than "which item next": four actions with the same meaning for every
user are learnable from a few thousand simulated sessions; every action starts from served's
ranked list (its relevance is kept, only the trade-off moves, and action 0 is served itself);
the state is one vector per user, so the batch runs one small forward pass per user and the
network exports as a fixed [S] -> [4] graph. Scoring single items needs per-item features in
the state and hundreds of actions.

    state = [user embedding (d), recent items' mean embedding (d), context (15)]
    context = step / horizon, last step's clicks / K, share of the pool left, and for each
              strategy the slate it would show: its mean relevance (1 - served rank / N),
              its mean pairwise cosine (redundancy), its mean cosine to the recent items
    q = dense 64 relu -> dense 64 relu -> Q per action   (models.dqn_fit trains it)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("served", "mmr_0.7", "mmr_0.4", "mmr_0.25")
# (relevance weight, whether similarity to the recent items counts) of each strategy
_MMR = ((1.0, False), (0.7, False), (0.4, False), (0.25, False))
CONTEXT = 3 + 3 * len(STRATEGIES)
HEAD = 3  # slots every strategy fills in served's order (docs/RL.md: how chosen)
WINDOW = 30  # a strategy picks each later slot among the first WINDOW places still free
RANDOM = -1  # not a strategy: a uniformly random order (the benchmark's baseline)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-12), 0.0)


def state_dim(dim: int) -> int:
    """S, the state's length for embeddings of `dim`."""
    return 2 * dim + CONTEXT


def states(query: np.ndarray, recent: np.ndarray, pool: np.ndarray, available: np.ndarray,
           emb: np.ndarray, step: float, last_clicks: np.ndarray, k: int) -> np.ndarray:
    """The policy's states [B, S] float32.

    Args:
        query: [B, d] user embeddings (served's user tower).
        recent: [B, d] unit mean embedding of the recent items (zeros: none).
        pool: [B, N] served's candidates in served's order, -1 pads.
        available: [B, N] bool, not shown yet.
        emb: [n_items, d] unit item embeddings.
        step: step / horizon (0 for a list served once).
        last_clicks: [B] clicks of the last step (0 at the start).
        k: slate length.
    """
    B, N = pool.shape
    ctx = [np.full(B, step), last_clicks / k, available.sum(1) / N]
    for a in range(len(STRATEGIES)):  # what each strategy's slate would be like
        slate = rerank(pool, available, emb, recent, np.full(B, a), k)
        ok = slate >= 0
        n = np.maximum(ok.sum(1), 1)
        E = emb[np.maximum(slate, 0)] * ok[..., None]
        pairs = np.einsum("bkd,bjd->b", E, E) - (E * E).sum((1, 2))
        rank = (pool[:, :, None] == slate[:, None, :]).argmax(1)
        ctx += [1.0 - (rank * ok).sum(1) / n / N, pairs / np.maximum(n * (n - 1), 1),
                np.einsum("bkd,bd->b", E, recent) / n]
    return np.concatenate([query, recent, np.stack(ctx, 1)], 1).astype(np.float32)


def rerank(pool: np.ndarray, available: np.ndarray, emb: np.ndarray, recent: np.ndarray,
           actions: np.ndarray, k: int, rng: np.random.Generator | None = None,
           head: int | None = None, window: int | None = None) -> np.ndarray:
    """The slates [B, k] (item indices, -1 pads) each user's strategy makes of the pool.

    Args:
        pool: [B, N] served's candidates in served's order, -1 pads.
        available: [B, N] bool, the places that may be shown.
        emb: [n_items, d] unit item embeddings.
        recent: [B, d] the recent items' unit mean embedding.
        actions: [B] strategy indices (STRATEGIES), or RANDOM for a random order.
        k: slate length.
        rng: draws the random orders (RANDOM only).
    """
    B, N = pool.shape
    head = HEAD if head is None else head
    window = WINDOW if window is None else window
    ok = available & (pool >= 0)
    keep = (actions != RANDOM)[:, None]  # strategies keep served's head and its window
    rel = np.broadcast_to(1.0 - np.arange(N) / N, (B, N))
    lam = np.array([_MMR[a][0] if a >= 0 else 1.0 for a in actions])[:, None]
    use_recent = np.array([a >= 0 and _MMR[a][1] for a in actions])
    E = emb[np.maximum(pool, 0)]  # [B, N, d]
    sim = np.where(use_recent[:, None], np.einsum("bnd,bd->bn", E, recent), -1.0)
    if rng is not None:
        rel = np.where((actions == RANDOM)[:, None], rng.random((B, N)), rel)
    out = np.full((B, k), -1, np.int64)
    rows = np.arange(B)
    for j in range(k):
        reach = np.where(keep, np.cumsum(ok, 1) <= (1 if j < head else window), True)
        score = np.where(ok & reach, lam * rel - (1.0 - lam) * sim, -np.inf)
        best = score.argmax(1)
        has = np.isfinite(score[rows, best])
        out[has, j] = pool[rows[has], best[has]]
        ok[rows[has], best[has]] = False
        sim = np.maximum(sim, np.einsum("bnd,bd->bn", E, E[rows, best]))
    return out


@dataclass(frozen=True)
class QPolicy:
    """The trained Q-network's weights, run in NumPy: state [B, S] -> Q [B, A].

    Attributes:
        layers: [W0, b0, W1, b1, W2, b2] with the state standardisation folded into W0, b0.
        horizon: the simulator horizon the step feature was divided by.
        slate: K, the slate length it was trained on.
        margin: the Q advantage over served's order (action 0) a strategy needs to be
            chosen (see `choose`).
        margins: per segment ("warm", "fresh") the margin that replaces `margin`, inf for a
            segment the stage leaves in served's order (models.dqn_guard chooses them on a
            train-side validation window); None: `margin` everywhere.
    """

    layers: tuple
    horizon: int
    slate: int
    margin: float = 0.0
    margins: Mapping[str, float] | None = None

    def margin_of(self, fresh: np.ndarray | bool | None, n: int) -> np.ndarray:
        """[n] the margin of each row: its segment's (fresh True/False), or `margin`."""
        return segment_margins(self.margin, self.margins, fresh, n)

    def q_values(self, state: np.ndarray) -> np.ndarray:
        h = state.astype(np.float32)
        for i in range(0, len(self.layers), 2):
            h = h @ self.layers[i] + self.layers[i + 1]
            if i + 2 < len(self.layers):
                h = np.maximum(h, 0.0)
        return h

    def act(self, state: np.ndarray, fresh: np.ndarray | bool | None = None) -> np.ndarray:
        """[B] the greedy action unless its advantage is within the row's margin (`choose`;
        `fresh`: [B] or one bool, the rows' segment for `margins`)."""
        return choose(self.q_values(state), self.margin_of(fresh, len(state)))


def segment_margins(margin: float, margins: Mapping[str, float] | None,
                    fresh: np.ndarray | bool | None, n: int) -> np.ndarray:
    """[n] float margins: `margins["fresh"]` on fresh rows and `margins["warm"]` on the others
    (a segment missing from `margins`, or `fresh` None: `margin`)."""
    out = np.full(n, float(margin))
    if margins is None or fresh is None:
        return out
    fresh = np.broadcast_to(np.asarray(fresh, bool), (n,))
    for segment, rows in (("warm", ~fresh), ("fresh", fresh)):
        if segment in margins:
            out[rows] = float(margins[segment])
    return out


def choose(q: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """[B] the action of highest Q, or served's order (action 0) unless the best action's Q
    exceeds served's by more than `margin` (ties: the lower index).

    Args:
        q: [B, A] Q-values.
        margin: the advantage (expected clicks per session) a strategy must clear, one or
            [B] (inf: always served's order).
    """
    best = q.argmax(1)
    return np.where(q[np.arange(len(q)), best] - q[:, 0] > margin, best, 0)


def rerank_lists(policy: QPolicy, query: np.ndarray, history_emb_mean: np.ndarray,
                 pool: np.ndarray, emb: np.ndarray, k: int,
                 fresh: np.ndarray | bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The stage after ranking, for lists served once (the batch, on demand, evaluation):
    step 0 of a session whose recent items are the user's last history items.

    Args:
        policy: the trained policy.
        query: [B, d] user embeddings; history_emb_mean: [B, d] unit mean embedding of the
            user's last items (zeros for none).
        pool: [B, N] served's top N, best first, -1 pads.
        emb: [n_items, d] unit item embeddings.
        k: list length.
        fresh: [B] or one bool: the users are fresh (the segment of `policy.margins`).

    Returns:
        (items [B, k], -1 pads; the chosen actions [B]).
    """
    available = pool >= 0
    s = states(query, history_emb_mean, pool, available, emb, 0.0, np.zeros(len(pool)), k)
    actions = policy.act(s, fresh)
    return rerank(pool, available, emb, history_emb_mean, actions, k), actions
