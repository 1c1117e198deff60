"""served followed by the DQN stage: served's top N, then the policy's strategy makes the top k.

    pools = served_pools(model, user_ids, histories, n)   what the policy sees (no TF)
    policy, info = fit_on_beliefs(model, user_ids, histories)   the DQN on served's beliefs

The stage needs only served's public methods (history_indices, recommend_indices, the
runtime's user_embedding, tower.item_vectors). For `recsys evaluate` there is no latent truth:
the policy is trained on a simulator whose "true" tastes are served's own beliefs (its user
embeddings and item embeddings) under the dynamics of SETTINGS[0], so it learns when served's
lists are redundant enough that variety pays; benchmarks.rl measures it against a real
ground truth. Only the step-0 state of models.dqn applies to a list served once.
"""

from __future__ import annotations

import logging

import numpy as np

from models.dqn import QPolicy, rerank_lists, unit
from models.histories import history_matrix
from models.rl_sessions import Pools
from models.served import ServedModel
from models.simulator import SETTINGS, SimConfig

log = logging.getLogger(__name__)
POOL = 100  # served's candidates the stage re-ranks
RECENT = 5  # last history items whose mean embedding is the state's "recent items"


def item_embeddings(model: ServedModel) -> np.ndarray:
    """[n_items, d] served's two-tower item embeddings centred (their mean, a direction every
    item shares, removed) and scaled to unit length: the policy's item space. Centring makes
    their cosines follow the true ones more closely on synthetic data (0.68 vs 0.64)."""
    v = np.asarray(model.tower.item_vectors, np.float64)
    return unit(v - v.mean(0))


def served_pools(model: ServedModel, user_ids: list[str], histories: list[np.ndarray],
                 n: int = POOL, fresh: bool = False, user_tok: np.ndarray | None = None,
                 exclude: list[np.ndarray] | None = None, runtime=None) -> Pools:
    """Served's top n of each user (served's item indices) with its user embedding and the
    mean embedding of the user's last RECENT items; `users` are the rows 0..B-1.

    Args:
        histories: B arrays of served's item indices, oldest first (excluded from the lists).
        fresh: the users are fresh (served's context).
        user_tok: [B, U] user tokens (default: the training users table's).
        exclude: B arrays of further item indices to leave out.
        runtime: what computes the user embeddings (default: the model's runtime).
    """
    utok = model.tower.data.user_matrix(list(user_ids)) if user_tok is None else user_tok
    items, _ = model.recommend_indices(histories, utok, model.context(list(user_ids), fresh), n,
                                       exclude)
    hist = history_matrix(histories, model.config.tower.history)
    runtime = model.get_runtime() if runtime is None else runtime
    query = np.asarray(runtime.user_embedding(hist, utok), np.float64)
    emb = item_embeddings(model)
    recent = np.stack([emb[h[-RECENT:]].sum(0) if len(h) else np.zeros(emb.shape[1])
                       for h in histories]) if histories else np.zeros((0, emb.shape[1]))
    return Pools(np.arange(len(user_ids)), items, query, unit(recent))


def rerank_pools(policy: QPolicy, pools: Pools, emb: np.ndarray, k: int,
                 fresh: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(items [B, k], actions [B]): the stage applied to served's pools (`fresh`: the
    users' segment for the policy's per-segment margins)."""
    return rerank_lists(policy, pools.query, pools.recent, pools.items, emb, k, fresh)


def fit_on_beliefs(model: ServedModel, user_ids: list[str], histories: list[np.ndarray],
                   setting: SimConfig = SETTINGS[0], config=None, max_users: int = 2000,
                   seed: int = 0) -> tuple[QPolicy, dict]:
    """The DQN trained on a simulator whose truth is served's beliefs: users' tastes are
    served's user embeddings, items' vectors its centred item embeddings (at most
    `max_users` users, drawn with `seed`).

    Args:
        histories: each user's served item indices, oldest first.
        config: a models.dqn_fit.DQNConfig (None: its defaults).
    """
    from models.dqn_fit import DQNConfig, fit_dqn
    from models.simulator import Simulator

    rows = np.random.default_rng(seed).permutation(len(user_ids))[:max_users]
    pools = served_pools(model, [user_ids[i] for i in rows], [histories[i] for i in rows])
    emb = item_embeddings(model)
    sim = Simulator(unit(pools.query), emb, setting)
    return fit_dqn(sim, pools, emb, config or DQNConfig())
