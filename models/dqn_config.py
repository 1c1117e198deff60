"""The DQN stage's hyperparameters (DQNConfig) and the nightly's `--dqn-config FILE` (JSON
overrides of them), without TensorFlow: a bad file stops the run before any work.

    recsys nightly --model served_dqn --dqn-config dqn.json    # e.g. {"rounds": 20}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.config_file import read_config_file

FLAG = "--dqn_config"


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of the DQN (models.dqn_fit) and of its deployment guard
    (models.dqn_guard).

    Attributes:
        hidden: widths of the dense ReLU layers.
        gamma: discount of later steps' clicks (1: the session's return itself; sessions
            end by the simulator's horizon).
        learning_rate: Adam's.
        batch: transitions per gradient step.
        buffer: most transitions the replay buffer keeps (the oldest go first).
        rounds: rounds of sessions; users_per_round: sessions per round.
        updates_per_round: gradient steps after each round.
        target_every: gradient steps between copies to the target network.
        epsilon_start, epsilon_end, explore_share: epsilon falls linearly from start to end
            over the first `explore_share` of the rounds.
        seed: weights, sampling and sessions.
        margin: the trained policy's fallback (models.dqn.choose): a strategy other than
            served's order is chosen only when its Q exceeds served's by more than this.
        guard_budget: the deployment guard's NDCG@10 share the stage may cost served per
            segment, at 95% confidence on the train-side windows' cases pooled; None: no
            guard (`margin` everywhere).
        guard_margins: the margins the guard tries per segment, the smallest that keeps the
            budget wins (none: the stage is off in that segment).
        guard_windows: how many of served's windows (`ServedConfig.windows`, the latest)
            the guard pools, each one more served and DQN fit; None: all of them.
    """

    hidden: tuple[int, ...] = (64, 64)
    gamma: float = 1.0
    learning_rate: float = 5e-4
    batch: int = 256
    buffer: int = 200_000
    rounds: int = 40
    users_per_round: int = 1000
    updates_per_round: int = 250
    target_every: int = 500
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    explore_share: float = 0.6
    seed: int = 0
    margin: float = 0.2
    guard_budget: float | None = 0.03
    guard_margins: tuple[float, ...] = (0.2, 0.3, 0.5, 1.0)
    guard_windows: int | None = None

    def __post_init__(self) -> None:
        def number(v) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        def whole(v, low: int) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= low

        for name in ("batch", "buffer", "rounds", "users_per_round", "updates_per_round",
                     "target_every"):
            if not whole(getattr(self, name), 1):
                raise ValueError(f"DQNConfig.{name} {getattr(self, name)!r}: a whole number "
                                 ">= 1")
        if not whole(self.seed, 0):
            raise ValueError(f"DQNConfig.seed {self.seed!r}: a whole number >= 0")
        if not (isinstance(self.hidden, tuple) and self.hidden
                and all(whole(h, 1) for h in self.hidden)):
            raise ValueError(f"DQNConfig.hidden {self.hidden!r}: a list of whole numbers >= 1")
        for name in ("gamma", "epsilon_start", "epsilon_end", "explore_share"):
            v = getattr(self, name)
            if not (number(v) and 0 <= v <= 1):
                raise ValueError(f"DQNConfig.{name} {v!r}: a number in [0, 1]")
        if not (number(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"DQNConfig.learning_rate {self.learning_rate!r}: a number > 0")
        if not (number(self.margin) and self.margin >= 0):
            raise ValueError(f"DQNConfig.margin {self.margin!r}: a number >= 0")
        if self.guard_budget is not None and not (number(self.guard_budget)
                                                  and 0 <= self.guard_budget < 1):
            raise ValueError(f"DQNConfig.guard_budget {self.guard_budget!r}: a number in "
                             "[0, 1), or null for no guard")
        if not (isinstance(self.guard_margins, tuple) and self.guard_margins
                and all(number(m) and m >= 0 for m in self.guard_margins)):
            raise ValueError(f"DQNConfig.guard_margins {self.guard_margins!r}: a list of "
                             "numbers >= 0")
        if self.guard_windows is not None and not whole(self.guard_windows, 1):
            raise ValueError(f"DQNConfig.guard_windows {self.guard_windows!r}: a whole number "
                             ">= 1, or null for all of served's windows")


def dqn_config_of(raw: object, where: str = FLAG) -> DQNConfig:
    """DQNConfig from a JSON object's overrides of its defaults (lists become tuples).

    Raises:
        ValueError: starting with `where`: not an object, an unknown field, a refused value.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must hold a JSON object of DQNConfig fields, e.g. "
                         '{"rounds": 20}')
    known = {f.name for f in dataclasses.fields(DQNConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    try:
        return DQNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def parse_dqn_config(path: str | None) -> DQNConfig:
    """DQNConfig from a JSON file of overrides of its defaults (--dqn_config; None or "":
    the defaults).

    Raises:
        ValueError: naming the flag and what to fix: the file cannot be read, is not JSON,
            not an object, names a field DQNConfig does not have, or a value it refuses.
    """
    if not path:
        return DQNConfig()
    raw = read_config_file(path, FLAG, "DQNConfig", '{"rounds": 20}')
    return dqn_config_of(raw, f"{FLAG}: {path!r}")
