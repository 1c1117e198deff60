"""A ground-truth session simulator: users with known tastes react to slates, step by step.

The synthetic generator's `World` (models.synthetic.latent_world) knows each user's latent
taste `user_vec` and each item's `item_vec`; the simulator lets those users browse sessions
of up to `horizon` slates of `slate` items each, with long-term dynamics that a one-shot
ranker cannot see:

    attraction a_j = click_scale * (u . v_j) + click_bias          (relevance, the truth)
                     - fatigue * max(0, F . v_j)                    (seen too much like it)
                     - redundancy * max(0, max_{i<j} v_i . v_j - overlap)
                                                                    (a near-duplicate above)
    P(click j)     = examination_j * sigmoid(a_j),  examination_j = 1 / (1 + j) ** position
    F             <- fatigue_decay * F + fatigue_shown * sum_shown v + fatigue_click * sum_clicked v
    P(continue)    = sigmoid(continue_bias + continue_click * clicks
                             - continue_redundancy * mean pairwise v_i . v_j of the slate)

The reward of a step is its clicks; a session's return is the sum over its steps. So a slate
of ten near-duplicates of the user's favourite item earns its clicks now and pays later: its
lower items are skipped, the fatigue it leaves lowers the next slates' clicks, and a
monotonous slate makes the user leave sooner. Relevant variety (clicks on a slate that is
not redundant) keeps the session going. These dynamics are an assumption of this simulator,
the hypothesis a policy is tested under, not a fact about real users (docs/RL.md).

    SETTINGS[0], SETTINGS[1]: two parameter sets with different dynamics (the policy is tuned
    on the first and scored on both).

    python -c "from models.simulator import *; print(SETTINGS[0])"
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class SimConfig:
    """Dynamics of the simulated sessions (see the module docstring for the formulas).

    Attributes:
        name: a label for reports.
        slate: items shown per step (K).
        horizon: most steps of a session.
        click_scale, click_bias: true affinity u . v in [-1, 1] -> click logit.
        position: examination decay over the slate's positions (0: every item is seen).
        fatigue: logit penalty per unit of fatigue along an item's vector.
        fatigue_decay: share of the fatigue carried to the next step.
        fatigue_shown, fatigue_click: fatigue added per shown / clicked item (along its vector).
        redundancy: logit penalty per unit of an item's excess cosine to an item above it.
        overlap: cosine to an item above that costs nothing.
        continue_bias, continue_click, continue_redundancy: the continuation logit's terms.
    """

    name: str = "setting1"
    slate: int = 10
    horizon: int = 6
    click_scale: float = 8.0
    click_bias: float = -4.0
    position: float = 0.3
    fatigue: float = 1.5
    fatigue_decay: float = 0.8
    fatigue_shown: float = 0.05
    fatigue_click: float = 0.3
    redundancy: float = 6.0
    overlap: float = 0.5
    continue_bias: float = 2.0
    continue_click: float = 0.6
    continue_redundancy: float = 3.0

    def __post_init__(self) -> None:
        if self.slate < 1 or self.horizon < 1:
            raise ValueError(f"SimConfig: slate ({self.slate}) and horizon ({self.horizon}) "
                             "must be at least 1")
        if not 0.0 <= self.fatigue_decay <= 1.0:
            raise ValueError(f"SimConfig.fatigue_decay {self.fatigue_decay} must be in [0, 1]")


# The two settings of benchmarks.rl: the second has longer sessions, stronger and slower-fading
# fatigue, a milder near-duplicate penalty that starts at a higher cosine, a steeper position
# decay, flatter click probabilities and users who leave sooner on a monotonous slate.
SETTINGS = (
    SimConfig(),
    replace(SimConfig(), name="setting2", horizon=8, click_scale=7.0, click_bias=-3.5,
            position=0.5, fatigue=2.5, fatigue_decay=0.9, fatigue_click=0.2, redundancy=4.0,
            overlap=0.6, continue_bias=1.5, continue_click=0.8, continue_redundancy=4.0),
)


@dataclass
class Sessions:
    """B sessions in progress.

    Attributes:
        users: [B] user indices of the world.
        fatigue: [B, dim] the fatigue vectors F.
        alive: [B] bool, the session has not ended.
        t: steps taken.
        rng: the sessions' random generator (one per run: the same seed, the same draws).
        p_continue: [B] the probability each session had of going on after the last step
            (0 at the horizon), of which `alive` is a draw.
    """

    users: np.ndarray
    fatigue: np.ndarray
    alive: np.ndarray
    t: int
    rng: np.random.Generator
    p_continue: np.ndarray | None = None


class Simulator:
    """Sessions of users of a latent world under one SimConfig.

    Args:
        user_vec: [n_users, dim] true unit tastes.
        item_vec: [n_items, dim] true unit item vectors.
        config: the dynamics.
    """

    def __init__(self, user_vec: np.ndarray, item_vec: np.ndarray, config: SimConfig):
        self.user_vec = np.asarray(user_vec, np.float64)
        self.item_vec = np.asarray(item_vec, np.float64)
        self.config = config
        c = config
        self.examination = 1.0 / (1.0 + np.arange(c.slate)) ** c.position

    def reset(self, users: np.ndarray, seed: int) -> Sessions:
        """New sessions of `users` [B], drawn from `seed`."""
        users = np.asarray(users, np.int64)
        return Sessions(users, np.zeros((len(users), self.item_vec.shape[1])),
                        np.ones(len(users), bool), 0, np.random.default_rng(seed))

    def one_shot_logits(self, s: Sessions, items: np.ndarray) -> np.ndarray:
        """[B, N] each item's click logit alone at the top of a slate (relevance and fatigue,
        no slate effects): the best one-shot ranking orders by it."""
        c = self.config
        V = self.item_vec[np.maximum(items, 0)]
        a = c.click_scale * np.einsum("bd,bnd->bn", self.user_vec[s.users], V) + c.click_bias
        a -= c.fatigue * np.maximum(np.einsum("bd,bnd->bn", s.fatigue, V), 0.0)
        return np.where(items >= 0, a, -np.inf)

    def click_probs(self, s: Sessions, slates: np.ndarray) -> np.ndarray:
        """[B, K] click probabilities of the slates [B, K] (item indices, -1: an empty
        place, probability 0) in the sessions' current state."""
        c = self.config
        V = self.item_vec[np.maximum(slates, 0)]  # [B, K, dim]
        u = self.user_vec[s.users]
        a = c.click_scale * np.einsum("bd,bkd->bk", u, V) + c.click_bias
        a -= c.fatigue * np.maximum(np.einsum("bd,bkd->bk", s.fatigue, V), 0.0)
        a -= c.redundancy * np.maximum(_max_cos_above(V, slates >= 0) - c.overlap, 0.0)
        p = self.examination[:slates.shape[1]] / (1.0 + np.exp(-a))
        return np.where(slates >= 0, p, 0.0)

    def step(self, s: Sessions, slates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shows the slates [B, K] to the living sessions and advances them one step.

        Returns:
            (clicks [B, K] bool, rewards [B] float: the clicks of each session, 0 for the
            sessions that had already ended).
        """
        c = self.config
        p = self.click_probs(s, slates)
        clicks = (s.rng.random(p.shape) < p) & s.alive[:, None]
        V = self.item_vec[np.maximum(slates, 0)] * (slates >= 0)[..., None]
        s.fatigue = (c.fatigue_decay * s.fatigue + c.fatigue_shown * V.sum(1)
                     + c.fatigue_click * (V * clicks[..., None]).sum(1))
        n_clicks = clicks.sum(1).astype(float)
        logit = (c.continue_bias + c.continue_click * n_clicks
                 - c.continue_redundancy * _mean_pair_cos(V, slates >= 0))
        p_stay = 1.0 / (1.0 + np.exp(-logit))
        stay = s.rng.random(len(p)) < p_stay
        rewards = np.where(s.alive, n_clicks, 0.0)
        s.t += 1
        s.p_continue = p_stay * (s.t < c.horizon)
        s.alive = s.alive & stay & (s.t < c.horizon)
        return clicks, rewards


def _max_cos_above(V: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[B, K] each place's largest cosine to a valid item above it (-1 for the first)."""
    G = np.einsum("bkd,bjd->bkj", V, V)
    above = np.tril(np.ones(G.shape[1:], bool), -1)[None] & valid[:, None, :]
    return np.where(above, G, -1.0).max(2)


def _mean_pair_cos(V: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[B] mean cosine over the slate's pairs of valid items (0 for fewer than two)."""
    G = np.einsum("bkd,bjd->bkj", V, V)
    pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(G.shape[1], dtype=bool)[None]
    n = pair.sum((1, 2))
    return np.where(n > 0, (G * pair).sum((1, 2)) / np.maximum(n, 1), 0.0)
