"""Training the re-ranking DQN (models.dqn) on simulated sessions, and on logged steps.

Double DQN (van Hasselt et al. 2016) with a target network and a replay buffer: each round
runs one session per sampled user under an epsilon-greedy policy of the online network
(models.rl_sessions), adds its steps to the buffer, and takes Adam steps on minibatches of
the buffer against

    y = r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))

with a Huber loss; the target network copies the online one every `target_every` steps.
The sessions record each step's expected clicks and probability of ending (models.rl_sessions,
`expected`): the same targets in expectation as the draws, with a fraction of their noise
(on benchmarks.rl's setting 1 it took the policy from below the best fixed strategy to its
level). Logged steps (Transitions, e.g. from impressions with their events) start the buffer.
The defaults come from a dozen runs of benchmarks.rl's setup (rounds, updates, learning rate,
gamma), training on setting 1 and looking at the scored users' returns on both settings
(docs/RL.md says what that means for setting 2).

    policy, info = fit_dqn(sim, pools, emb, DQNConfig())
"""

from __future__ import annotations

import logging
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from models.dqn import STRATEGIES, QPolicy, state_dim
from models.dqn_config import DQNConfig
from models.rl_sessions import Pools, Transitions, run_sessions
from models.simulator import Simulator

log = logging.getLogger(__name__)


def q_network(dim: int, mean: np.ndarray, std: np.ndarray, config: DQNConfig) -> keras.Model:
    """state [S] -> standardised -> dense 64 relu -> dense 64 relu -> Q [A]."""
    keras.utils.set_random_seed(config.seed)
    layers = [keras.Input((dim,)),
              keras.layers.Normalization(mean=mean, variance=std ** 2)]
    layers += [keras.layers.Dense(h, activation="relu") for h in config.hidden]
    layers.append(keras.layers.Dense(len(STRATEGIES)))
    return keras.Sequential(layers)


def to_policy(net: keras.Model, horizon: int, slate: int, margin: float = 0.0) -> QPolicy:
    """The network's weights as a NumPy QPolicy, the standardisation folded into layer 0."""
    norm, *dense = net.layers
    mean = np.asarray(norm.mean, np.float64).reshape(-1)
    std = np.sqrt(np.maximum(np.asarray(norm.variance, np.float64).reshape(-1), 1e-12))
    W0, b0 = (np.asarray(v, np.float64) for v in dense[0].get_weights())
    out = [(W0 / std[:, None]).astype(np.float32), (b0 - (mean / std) @ W0).astype(np.float32)]
    for d in dense[1:]:
        out += [np.asarray(v, np.float32) for v in d.get_weights()]
    return QPolicy(tuple(out), horizon, slate, margin)


class _Learner:
    """The online and target networks and their double-DQN step."""

    def __init__(self, net: keras.Model, config: DQNConfig):
        self.net, self.target = net, keras.models.clone_model(net)
        self.target.set_weights(net.get_weights())
        self.optimizer = keras.optimizers.Adam(config.learning_rate)
        self.loss = keras.losses.Huber()
        self.gamma = config.gamma

    @tf.function(reduce_retracing=True)
    def step(self, s, a, r, s2, done):
        best = tf.argmax(self.net(s2), 1, output_type=tf.int32)
        q2 = tf.gather(self.target(s2), best, batch_dims=1)
        y = r + self.gamma * (1.0 - done) * q2
        with tf.GradientTape() as tape:
            q = tf.gather(self.net(s, training=True), a, batch_dims=1)
            loss = self.loss(y, q)
        grads = tape.gradient(loss, self.net.trainable_variables)
        self.optimizer.apply(grads, self.net.trainable_variables)
        return loss


def fit_dqn(sim: Simulator, pools: Pools, emb: np.ndarray, config: DQNConfig = DQNConfig(),
            logged: Transitions | None = None) -> tuple[QPolicy, dict]:
    """Trains the policy on sessions of `pools`' users in `sim` (and on `logged` steps).

    Returns:
        (the greedy policy, {"train_seconds", "transitions", "updates", "losses"}).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    c = sim.config
    _, seed_steps = run_sessions(  # uniformly random strategies: the buffer's first steps
        sim, pools.take(rng.permutation(len(pools.users))[:2048]), emb,
        lambda s: rng.integers(0, len(STRATEGIES), len(s)), config.seed, record=True,
        expected=True)
    S = state_dim(pools.query.shape[1])
    mean, std = seed_steps.state.mean(0), np.maximum(seed_steps.state.std(0), 1e-3)
    learner = _Learner(q_network(S, mean, std, config), config)
    parts = [seed_steps] + ([logged] if logged is not None and len(logged) else [])
    buffer = Transitions.concat(parts)
    losses, updates = [], 0
    explore = max(1, int(config.rounds * config.explore_share))
    for r in tqdm(range(config.rounds), desc="dqn", unit="round", mininterval=2.0):
        eps = max(config.epsilon_end, config.epsilon_start
                  - (config.epsilon_start - config.epsilon_end) * r / explore)
        act = _epsilon_greedy(learner.net, eps, rng)
        users = rng.choice(len(pools.users), min(config.users_per_round, len(pools.users)),
                           replace=False)
        _, steps = run_sessions(sim, pools.take(users), emb, act, int(rng.integers(1 << 31)),
                                record=True, expected=True)
        buffer = _keep(Transitions.concat([buffer, steps]), config.buffer)
        for _ in range(config.updates_per_round):
            i = rng.integers(0, len(buffer), config.batch)
            losses.append(float(learner.step(
                buffer.state[i], buffer.action[i].astype(np.int32), buffer.reward[i],
                buffer.next_state[i], buffer.done[i])))
            updates += 1
            if updates % config.target_every == 0:
                learner.target.set_weights(learner.net.get_weights())
    seconds = time.perf_counter() - t0
    log.info("dqn: %d rounds, %d updates, %d transitions in %.1f s (last loss %.4f)",
             config.rounds, updates, len(buffer), seconds, np.mean(losses[-50:]))
    return to_policy(learner.net, c.horizon, c.slate, config.margin), {
        "train_seconds": round(seconds, 1), "transitions": len(buffer), "updates": updates,
        "losses": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)]}


def _epsilon_greedy(net: keras.Model, eps: float, rng: np.random.Generator):
    def act(state: np.ndarray) -> np.ndarray:
        greedy = np.asarray(net(state, training=False)).argmax(1)
        explore = rng.random(len(state)) < eps
        return np.where(explore, rng.integers(0, len(STRATEGIES), len(state)), greedy)
    return act


def _keep(t: Transitions, n: int) -> Transitions:
    """The newest `n` transitions of `t`."""
    if len(t) <= n:
        return t
    return Transitions(t.state[-n:], t.action[-n:], t.reward[-n:], t.next_state[-n:],
                       t.done[-n:], None if t.propensity is None else t.propensity[-n:])
