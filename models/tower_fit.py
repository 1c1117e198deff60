"""Training the two-tower network (models.towers.TwoTower) on a TowerData: each epoch a
sample of (user, position) examples (`TowerBatches`), `keras.optimizers.Adam`, and the early
stopping of models.training on the validation NDCG@10 of the model's own top 10
(models.two_tower.monitor_ndcg). A fit can continue an earlier fit's weights (`carry_over`).

Also the two-tower recommender of the evaluation (`train_two_tower`, `TwoTowerRecommender`:
epochs picked on a validation split, then a refit on all). Imports Keras.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pandas as pd

from models.evaluation import Cases, Split, build_cases, temporal_split
from models.finite import require_finite
from models.served_guard import PopularityFallback, popularity_guard
from models.topk import ItemVectorRecommender, build_flat_index
from models.tower_data import TowerData, prepare
from models.towers import ID_ROWS, TOKEN_ROWS, TwoTower
from models.training import EpochBatches, FusedAdam, fit_early_stopping
from models.two_tower import TwoTowerConfig, TwoTowerModel, monitor_ndcg

log = logging.getLogger(__name__)
_CHECK = ("the items and users tables' values and TwoTowerConfig's learning_rate, temperature "
          "and l2")


def network(data: TowerData, config: TwoTowerConfig,
            start: TwoTowerModel | None = None) -> TwoTower:
    """A fresh TwoTower for `data` (initial weights from `config.seed`), or with `start`'s
    weights carried over (`carry_over`)."""
    keras.utils.set_random_seed(config.seed)
    net = TwoTower(data.item_tokens, data.item_enc.size, data.user_enc.size, config)
    if start is not None:
        arrays = net.arrays()
        carry_over(arrays, data, start)
        net.set_arrays(arrays)
    return net


def carry_over(w: dict[str, np.ndarray], data: TowerData, start: TwoTowerModel) -> None:
    """Overwrites the fresh weights `w` (shaped for `data`) with `start`'s: the id rows of the
    items both know (by item id), the token rows of the tokens both know (by token), every
    other weight whole. Items and tokens new to `data` keep their fresh rows.

    Raises:
        ValueError: `start` was trained with other dimensions (dim, hidden).
    """
    old = start.arrays
    if any(old[k].shape != w[k].shape for k in w if k not in ID_ROWS + TOKEN_ROWS):
        raise ValueError("two-tower warm start: the starting model's dim or hidden differs "
                         "from TwoTowerConfig's; start from scratch (warm_start_epochs=None)")
    for k in w:
        if k not in ID_ROWS + TOKEN_ROWS:
            w[k] = old[k].copy()
    src = start.data.items.lookup(data.items.ids) + 1  # row i + 1 holds item i; 0 unknown
    hit = np.flatnonzero(src > 0) + 1
    for k in ID_ROWS:
        w[k][0], w[k][hit] = old[k][0], old[k][src[hit - 1]]
    for k, new, prev in (("item_tok", data.item_enc, start.data.item_enc),
                         ("user_tok", data.user_enc, start.data.user_enc)):
        pairs = np.array([(j, prev.vocab[t]) for t, j in new.vocab.items() if t in prev.vocab],
                         np.int64).reshape(-1, 2)
        w[k][0], w[k][pairs[:, 0]] = old[k][0], old[k][pairs[:, 1]]


def fit_tower(data: TowerData, config: TwoTowerConfig, epochs: int,
              monitor: Cases | None = None,
              start: TwoTowerModel | None = None) -> tuple[TwoTowerModel, list[float]]:
    """Trains for `epochs` epochs; with `monitor`, keeps the epoch of best NDCG@10 on it (from
    `config.min_epochs` on) and stops after `config.patience` epochs without improvement.
    With `start` (a model fitted on other data, e.g. an earlier window's), training continues
    from its weights (`carry_over`) instead of random ones, on the examples whose item came
    after `start`'s last train event when `config.warm_start_recent` (on all of them
    otherwise).

    Returns:
        (model, validation NDCG@10 per epoch, empty without `monitor`).

    Raises:
        NonFiniteError: the loss or a trained weight is NaN or inf.
    """
    c = config
    net = network(data, c, start)
    ex_user, ex_pos = data.examples()
    if start is not None and c.warm_start_recent and data.seq_ts is not None:
        new = data.seq_ts[data.offsets[ex_user] + ex_pos] > start.data.now
        ex_user, ex_pos = ex_user[new], ex_pos[new]
        log.debug("two_tower: continued on the %d examples after %s", len(ex_user),
                  start.data.now)
    batches = TowerBatches(data, ex_user, ex_pos, c)
    xla = c.xla if c.xla is not None else (
        epochs * len(batches) * len(data.items) >= 1e7)
    log.debug("two_tower: %d examples per epoch, XLA %s", batches.size, xla)
    net.compile(optimizer=FusedAdam(c.learning_rate), jit_compile=xla,
                steps_per_execution=16)
    done = start.epochs if start is not None else 0  # TwoTowerModel.epochs counts them all

    def validate(net: TwoTower) -> float:
        score = monitor_ndcg(TwoTowerModel.of(data, net, c, 0), monitor)
        log.info("two_tower validation NDCG@10 %.4f", score)
        return score

    scores, kept = fit_early_stopping(net, batches, epochs,
                                      None if monitor is None else validate, c.patience,
                                      "two-tower", _CHECK, c.min_epochs)
    model = TwoTowerModel.of(data, net, c, done + kept)
    require_finite({**model.arrays, "item_vectors": model.item_vectors}, "two-tower", _CHECK)
    return model, scores


class TowerBatches(EpochBatches):
    """Each epoch's batches of examples (user row, position >= 1): a fresh sample
    (`epoch_sample`), the histories before each position, the target items with their ids
    hidden at rate `id_dropout`, and log q (each target's share of the examples).

    Yields {"hist": [B, H], "user_tok": [B, U], "target": [B], "keep": [B], "logq": [B]}
    (TwoTower.train_step's batch); a last batch under a quarter of `batch_size` is dropped.
    With `config.uniform_negatives` = B' > 0 each batch also brings B' items drawn uniformly
    (with replacement) from all N items of the catalogue, cold items included: "neg" [B'],
    "neg_keep" [B'] (0 for a cold item: scored from its tokens, as the index has it) and
    "neg_logq" [B']. Every item's q is then its share of the batch's negatives under both
    draws, p_i + B' / (B N) with p_i its share of the examples (`mixed_logq`), for the
    targets and the uniform draws alike; B' = 0 leaves the batches as they were.
    """

    def __init__(self, data: TowerData, ex_user: np.ndarray, ex_pos: np.ndarray,
                 config: TwoTowerConfig):
        super().__init__()
        self.data, self.ex_user, self.ex_pos, self.config = data, ex_user, ex_pos, config
        self.rng = np.random.default_rng(config.seed)
        counts = np.bincount(data.seq[data.offsets[ex_user] + ex_pos],
                             minlength=len(data.items))
        self.logq = mixed_logq(counts, config.batch_size, config.uniform_negatives)
        self.size = epoch_size(ex_user, config.max_per_user, config.max_examples)

    def __len__(self) -> int:
        b = self.config.batch_size
        return len(range(0, self.size - b // 4, b))

    def __getitem__(self, index: int):
        c, d = self.config, self.data
        b = self.order[index * c.batch_size:(index + 1) * c.batch_size]
        user, pos = self.ex_user[b], self.ex_pos[b]
        target = d.seq[d.offsets[user] + pos].astype(np.int32)
        keep = (self.rng.random(len(b)) >= c.id_dropout).astype(np.int32)
        batch = {"hist": d.histories(user, pos, c.history), "user_tok": d.user_tokens[user],
                 "target": target, "keep": keep, "logq": self.logq[target]}
        if c.uniform_negatives:
            neg = self.rng.integers(0, len(d.items), c.uniform_negatives).astype(np.int32)
            batch.update(neg=neg, neg_keep=d.has_events[neg].astype(np.int32),
                         neg_logq=self.logq[neg])
        return batch

    def draw(self) -> np.ndarray:
        c = self.config
        return epoch_sample(self.ex_user, c.max_per_user, c.max_examples, self.rng)


def mixed_logq(counts: np.ndarray, batch_size: int, uniform: int) -> np.ndarray:
    """log q [n_items] float32 of the logQ correction: log p_i, p_i = counts_i / sum(counts)
    (an item's share of the examples: in-batch negatives are drawn as the targets are), and
    with `uniform` = B' uniform negatives per batch of `batch_size` = B over the N items,
    log(p_i + B' / (B N)): the expected count of item i among the batch's B + B' draws
    (B p_i + B' / N), divided by B, which the softmax does not see. An item without examples
    gets p_i = 1 / sum(counts) when B' = 0 (it is never a target then), 0 otherwise.
    """
    n = max(int(counts.sum()), 1)
    if not uniform:
        return np.log(np.maximum(counts, 1) / n).astype(np.float32)
    return np.log(counts / n + uniform / (batch_size * len(counts))).astype(np.float32)


def epoch_size(ex_user: np.ndarray, per_user: int | None, total: int | None) -> int:
    """len(epoch_sample(ex_user, per_user, total, rng)) for any rng."""
    n = len(ex_user)
    if per_user is not None:
        n = int(np.minimum(np.bincount(ex_user), per_user).sum()) if n else 0
    return n if total is None else min(n, total)


def epoch_sample(ex_user: np.ndarray, per_user: int | None, total: int | None,
                 rng) -> np.ndarray:
    """A shuffled sample of example rows: at most `per_user` per user, `total` in all."""
    order = rng.permutation(len(ex_user))
    if per_user is not None:
        by_user = order[np.argsort(ex_user[order], kind="stable")]
        starts = np.searchsorted(ex_user[by_user], ex_user[by_user], side="left")
        keep = by_user[np.arange(len(by_user)) - starts < per_user]
        order = keep[rng.permutation(len(keep))]
    return order[:total]


def train_two_tower(train: pd.DataFrame, users: pd.DataFrame | None = None,
                    items: pd.DataFrame | None = None,
                    config: TwoTowerConfig = TwoTowerConfig()) -> TwoTowerModel:
    """Picks the epochs on the last `config.validation` of train events, then refits on all.

    Args:
        train: the train side's interactions.
        users: user features (user_id + columns) or None.
        items: item features (item_id + columns) or None.
        config: hyperparameters.

    Returns:
        The model trained on all of `train`.
    """
    return fit_validated(train, users, items, config)[0]


def fit_validated(train: pd.DataFrame, users: pd.DataFrame | None,
                  items: pd.DataFrame | None, config: TwoTowerConfig
                  ) -> tuple[TwoTowerModel, tuple[TwoTowerModel, Split] | None]:
    """`train_two_tower`, also returning (the model of the picked epochs fitted on all but
    the last `config.validation` of `train`, that split), or None without validation."""
    epochs, held = config.epochs, None
    if config.validation > 0:
        split = temporal_split(train, 1.0 - config.validation)
        if not (split.train.empty or split.test.empty):
            model, scores = fit_tower(prepare(split.train, users, items, config), config,
                                      epochs, build_cases(split))
            epochs = model.epochs if scores else epochs  # the kept epoch (min_epochs on)
            log.info("two_tower: %d epochs picked on validation (NDCG@10 per epoch %s)",
                     epochs, np.round(scores, 4).tolist())
            held = model, split
    return fit_tower(prepare(train, users, items, config), config, epochs)[0], held


class TwoTowerRecommender(ItemVectorRecommender):
    """The two-tower model alone: user tower -> Faiss over item vectors -> rules; a segment
    where popularity beats it beyond noise on its validation share of the train events
    (models.served_guard.popularity_guard, the model of `fit_validated`) is served by
    popularity (`guard` has the figures; `guard=False` turns it off)."""

    name = "two_tower"
    train = staticmethod(train_two_tower)

    def __init__(self, config: TwoTowerConfig = TwoTowerConfig(), guard: bool = True):
        super().__init__(config)
        self.use_guard = guard
        self.fallback, self.guard = PopularityFallback(None, {}), {}

    def fit(self, train, users=None, items=None):
        self.model, held = fit_validated(train, users, items, self.config)
        self.index = build_flat_index(self.model.item_vectors)
        fallback, self.guard = {}, {}
        if held is not None and self.use_guard:
            inner = ItemVectorRecommender(self.config)
            inner.model, inner.index = held[0], build_flat_index(held[0].item_vectors)
            fallback, self.guard = popularity_guard(inner, held[1], self.name)
        self.fallback = PopularityFallback(train, fallback)
        return self

    def recommend(self, user_ids, histories, k, fresh):
        if self.fallback.handles(fresh):
            return self.fallback.popularity.recommend(user_ids, histories, k, fresh)
        return super().recommend(user_ids, histories, k, fresh)

    def score(self, user_ids, histories, candidates, fresh):
        """The retrieval score, or popularity's in a segment the guard gave to popularity."""
        if self.fallback.handles(fresh):
            return self.fallback.popularity.score(user_ids, histories, candidates, fresh)
        return super().score(user_ids, histories, candidates, fresh)
