"""Training the ranker: `train_ranker` fits `RankerConfig.members` MLPs (one stacked
models.ranker_net.RankerNet) on the windows' ranking lists, with `keras.optimizers.Adam`
(models.training.FusedAdam) and, to pick the epochs, the early stopping of models.training
on the validation NDCG@10 of the members' mean.

Imports Keras: models.served_fit imports this module when it trains.
"""

from __future__ import annotations

import logging

import numpy as np

from models.finite import NonFiniteError, require_finite
from models.ranker import (
    FEATURES,
    RankerConfig,
    RankerModel,
    RankingData,
    ndcg_of_scores,
    net_scores,
)
from models.ranker_net import RankerNet
from models.training import EpochBatches, FusedAdam, fit_early_stopping

log = logging.getLogger(__name__)


def fit_member(train: RankingData, config: RankerConfig, epochs: int, seed: int,
               monitor: RankingData | None = None) -> tuple[RankerModel, list[float]]:
    """Listwise training of one MLP (`fit_members` with one seed)."""
    return fit_members(train, config, epochs, [seed], monitor)


def fit_members(train: RankingData, config: RankerConfig, epochs: int, seeds: list[int],
                monitor: RankingData | None = None) -> tuple[RankerModel, list[float]]:
    """Listwise training of one MLP per seed, all in one Keras model (models.ranker_net):
    each member draws its initial weights and its order of cases from its own seed, so that
    it learns what it would learn alone. With `monitor`, keeps the epoch of best NDCG@10 of
    the members' mean (models.training's early stopping).

    Returns:
        (a model of len(seeds) members, validation NDCG@10 per epoch, empty without
        `monitor`).

    Raises:
        NonFiniteError: a feature of a real candidate, or a trained weight, is NaN or inf.
    """
    rngs = [np.random.default_rng(seed) for seed in seeds]
    mean, std = _standardisation(train)
    sizes = [train.X.shape[-1], *config.hidden, 1]
    members = [[w for a, b in zip(sizes[:-1], sizes[1:], strict=True)
                for w in (r.normal(0, 1 / np.sqrt(a), (a, b)), np.zeros(b))] for r in rngs]
    net = RankerNet(members, mean, std, config.l2, config.loss)
    net.compile(optimizer=FusedAdam(config.learning_rate), jit_compile=False,
                steps_per_execution=16)
    keep = np.flatnonzero(train.y.sum(1) > 0)  # lists with a positive (rows of train, no copy)
    batches = RankingBatches(train.X, train.y, train.mask, keep, rngs, config.batch_size)

    def validate(net: RankerNet) -> float:
        return ndcg_of_scores(net_scores(net, monitor.X), monitor)

    history, kept = fit_early_stopping(net, batches, epochs,
                                       None if monitor is None else validate, config.patience,
                                       "ranker", _CHECK)
    model = RankerModel(net.members(), mean, std, kept)
    require_finite({f"member {j} weight {n}": v for j, member in enumerate(model.members)
                    for n, v in enumerate(member)}, "ranker", _CHECK)
    return model, history


_CHECK = "RankerConfig's learning_rate and l2"


def _standardisation(data: RankingData, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ([F] float32, std at least 1e-3) of the real candidates' features, read
    `chunk` lists at a time (no copy of the features); refuses NaN and inf."""
    F = data.X.shape[-1]
    n, total, squares = 0, np.zeros(F), np.zeros(F)
    for lo in range(0, len(data.X), chunk):
        valid = data.X[lo:lo + chunk][data.mask[lo:lo + chunk]].astype(np.float64)
        _require_finite_features(valid)
        n, total, squares = n + len(valid), total + valid.sum(0), squares + (valid**2).sum(0)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(squares / max(n, 1) - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def _require_finite_features(X: np.ndarray) -> None:
    """Refuses ranking features [N, F] with NaN or inf, naming the features."""
    bad = np.flatnonzero(~np.isfinite(X).all(0))
    if bad.size:
        names = [FEATURES[f] if f < len(FEATURES) else str(f) for f in bad]
        raise NonFiniteError(f"ranker: non-finite (NaN or inf) values in feature(s) {names}; "
                             "nothing was exported. Check the input's weights and timestamps "
                             "(mean_weight averages the event weights) and the items table")


def train_ranker(parts: list[RankingData], config: RankerConfig) -> RankerModel:
    """Trains `config.members` MLPs on all parts for `config.epochs` epochs; with
    `config.select_epochs`, for the epochs of best NDCG@10 on the last part (the latest window)
    of one MLP trained on the earlier parts."""
    epochs = config.epochs
    if config.select_epochs and len(parts) > 1:
        _, history = fit_member(RankingData.concat(parts[:-1]), config, config.epochs,
                                config.seed, parts[-1])
        epochs = int(np.argmax(history)) + 1
        log.info("ranker: %d epochs (validation NDCG@10 %s)", epochs,
                 np.round(history, 4).tolist())
    return fit_members(RankingData.concat(parts), config, epochs,
                       [config.seed + n for n in range(config.members)])[0]


class RankingBatches(EpochBatches):
    """Each epoch's batches: every member its own order (from its own rng) of the cases
    `keep`; yields {"X": [B, M, C, F], "y": [B, M, C] float32, "mask": [B, M, C]}.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, mask: np.ndarray, keep: np.ndarray,
                 rngs: list, batch_size: int):
        super().__init__()
        self.X, self.y, self.mask, self.keep = X, y, mask, keep
        self.rngs, self.batch_size = rngs, batch_size

    def __len__(self) -> int:
        return -(-len(self.keep) // self.batch_size)

    def draw(self) -> np.ndarray:
        return np.stack([self.keep[r.permutation(len(self.keep))] for r in self.rngs], 1)

    def __getitem__(self, index: int):
        b = self.order[index * self.batch_size:(index + 1) * self.batch_size]  # [B, M]
        return {"X": self.X[b], "y": self.y[b].astype(np.float32), "mask": self.mask[b]}
