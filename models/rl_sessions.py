"""Sessions of a re-ranking policy on the ground-truth simulator, and what they leave behind.

    pools = Pools(users, items, query, recent)      each user's served top N, served's
                                                    user embedding and recent items
    returns, log = run_sessions(sim, pools, emb, "served" | "random" | "oracle" | act, seed)

At each step the policy picks a strategy (models.dqn) from the state, the strategy makes a
slate of the pool's items not shown yet, the simulator answers with clicks, and the recent
items move towards what was shown and clicked. "served" is served's order (action 0 every
step), "random" a random order of the same pool, "oracle" the best one-shot ranking of the
pool by the true click probability (which served's ranker estimates); `act` any
state -> action function (a trained QPolicy.act, or an exploring one while training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.dqn import RANDOM, STRATEGIES, rerank, states, unit
from models.simulator import Simulator


@dataclass(frozen=True)
class Pools:
    """What the policy sees of B users before a session.

    Attributes:
        users: [B] the users' indices in the simulator's world.
        items: [B, N] served's top N of each user, best first, -1 pads.
        query: [B, d] served's user embeddings.
        recent: [B, d] unit mean embedding of each user's last history items.
    """

    users: np.ndarray
    items: np.ndarray
    query: np.ndarray
    recent: np.ndarray

    def take(self, rows: np.ndarray) -> Pools:
        return Pools(self.users[rows], self.items[rows], self.query[rows], self.recent[rows])


@dataclass
class Transitions:
    """Steps of sessions (a replay buffer's content, or logged data).

    Attributes:
        state, next_state: [n, S] float32.
        action: [n] int64 strategy indices.
        reward: [n] float32 clicks of the step.
        done: [n] float32, 1 when the session ended after the step (or its probability of
            ending, see run_sessions' `expected`).
        propensity: [n] probability the logging policy gave the action (None: unknown).
    """

    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_state: np.ndarray
    done: np.ndarray
    propensity: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        props = [p.propensity for p in parts]
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("state", "action", "reward", "next_state", "done")),
                   None if any(x is None for x in props) else np.concatenate(props))

    def __len__(self) -> int:
        return len(self.action)


Policy = str | Callable[[np.ndarray], np.ndarray]


def run_sessions(sim: Simulator, pools: Pools, emb: np.ndarray, policy: Policy, seed: int,
                 record: bool = False, propensity: Callable | None = None,
                 expected: bool = False) -> tuple[np.ndarray, Transitions | None]:
    """One session per user of `pools` under `policy`.

    Args:
        sim: the simulator.
        pools: the users and their candidates.
        emb: [n_items, d] unit item embeddings (the model's, not the truth).
        policy: "served", "random", "oracle" or a function states [B, S] -> actions [B].
        seed: the sessions' draws (the same seed and users give the same sessions to the
            same slates).
        record: return the steps as Transitions.
        propensity: (states, actions) -> [B] the policy's probability of its actions, to
            record with the steps (a logging policy's, for off-policy estimates).
        expected: record each step's expected clicks (the sum of the slate's click
            probabilities) as its reward and its probability of ending the session as
            `done`, instead of the draws: the same Bellman targets in expectation, far less
            noise for training (the sessions and returns are the drawn ones either way; `s'`
            is the state the session would go on from).

    Returns:
        (returns [B]: each session's clicks summed, the steps or None).
    """
    c = sim.config
    s = sim.reset(pools.users, seed)
    rng = np.random.default_rng([seed, 1])
    B = len(pools.users)
    available = pools.items >= 0
    recent = pools.recent.astype(np.float64).copy()
    last = np.zeros(B)
    total = np.zeros(B)
    steps: list[tuple] = []
    for t in range(c.horizon):
        if not s.alive.any():
            break
        alive = s.alive.copy()
        state = states(pools.query, recent, pools.items, available, emb, t / c.horizon, last,
                       c.slate)
        if policy == "oracle":
            actions = np.zeros(B, np.int64)
            logit = np.where(available, sim.one_shot_logits(s, pools.items), -np.inf)
            top = np.argsort(-logit, 1, kind="stable")[:, :c.slate]
            slates = np.where(np.isfinite(np.take_along_axis(logit, top, 1)),
                              np.take_along_axis(pools.items, top, 1), -1)
        else:
            if policy == "served":
                actions = np.zeros(B, np.int64)
            elif policy == "random":
                actions = np.full(B, RANDOM, np.int64)
            else:
                actions = np.asarray(policy(state), np.int64)
            slates = rerank(pools.items, available, emb, recent, actions, c.slate, rng)
        mean = np.where(alive, sim.click_probs(s, slates).sum(1), 0.0) if expected else None
        clicks, rewards = sim.step(s, slates)
        total += rewards
        shown = (pools.items[:, :, None] == slates[:, None, :]).any(2) & (pools.items >= 0)
        available &= ~(shown & alive[:, None])
        E = emb[np.maximum(slates, 0)] * (slates >= 0)[..., None]
        moved = unit(recent + 0.2 * E.sum(1) + (E * clicks[..., None]).sum(1))
        recent = np.where(alive[:, None], moved, recent)
        last = clicks.sum(1).astype(float)
        if record:
            p = propensity(state, actions) if propensity is not None else None
            if expected:
                steps.append((state, actions, mean, alive, 1.0 - s.p_continue, p))
            else:
                steps.append((state, actions, rewards, alive, ~s.alive, p))
    if not record:
        return total, None
    return total, _transitions(steps, pools, recent, available, emb, last, c)


def _transitions(steps, pools, recent, available, emb, last, c) -> Transitions:
    """The recorded steps of living sessions as (s, a, r, s', done)."""
    final = states(pools.query, recent, pools.items, available, emb, len(steps) / c.horizon,
                   last, c.slate)
    nxt = [steps[i + 1][0] for i in range(len(steps) - 1)] + [final]
    parts = []
    for (state, actions, rewards, alive, done, p), s2 in zip(steps, nxt, strict=True):
        parts.append(Transitions(state[alive], actions[alive], rewards[alive].astype(np.float32),
                                 s2[alive], done[alive].astype(np.float32),
                                 None if p is None else np.asarray(p)[alive]))
    return Transitions.concat(parts)


def n_actions() -> int:
    return len(STRATEGIES)
