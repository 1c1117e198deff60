"""Hybrid two-tower retrieval: a user tower over user features and recent items (no user id,
so a fresh user needs none) and an item tower with multi-head attention over the item's
feature tokens, scored by a dot product and trained for retrieval.

    models.tower_data   TowerData, TokenEncoder: the towers' inputs
    models.towers       UserTower, ItemTower, TwoTower: the Keras network and its loss
    models.tower_fit    fit_tower: its training (early stopping on monitor_ndcg)
    models.two_tower    TwoTowerConfig, TwoTowerModel (the trained weights as named NumPy
                        arrays, no TensorFlow needed to hold them), train_two_tower

Loss: in-batch sampled softmax with logQ correction over (items before position j, item j),
optionally mixed with negatives drawn uniformly from the catalogue (`uniform_negatives`).
Items without train events get vectors from their tokens alone (cold items).

    python -m benchmarks.cold_items   # trains it on synthetic data with held-back items
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.evaluation import Cases, ndcg_at_k
from models.histories import history_matrix
from models.tower_data import TowerData

if TYPE_CHECKING:

    from models.towers import TwoTower

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwoTowerConfig:
    """Hyperparameters of the two-tower model.

    Attributes:
        dim: embedding dimension of both towers.
        hidden: width of each tower's hidden layer.
        heads: attention heads of the item tower (divides dim).
        history: items of a user's history the user tower reads (the most recent).
        recent: of those, the last ones averaged apart (short-term interest).
        epochs: most passes over the examples; early stopping may pick fewer.
        batch_size: examples per step, the in-batch negatives of each other.
        uniform_negatives: B', items drawn uniformly from the whole catalogue (cold items
            included) per batch and scored by the item tower as extra negatives of every
            query, in the same softmax as the in-batch ones (mixed negative sampling, Yang,
            Yi et al., WWW 2020): in-batch negatives come as often as items are used, so
            rare items are rarely shown as negatives. The logQ correction then uses each
            item's share of both draws (models.tower_fit.mixed_logq); 0 trains on in-batch
            negatives alone. 256 was chosen on the train side of ml-100k (EVALUATION_RESULTS.md,
            "Two-tower training"): with patience 4, LOO-S HR@10 0.597 -> 0.652, the three
            temporal validation windows' NDCG@10 warm / fresh / all 0.0866 / 0.4176 / 0.2347
            -> 0.0983 / 0.4192 / 0.2419, served's 0.2068 / 0.4878 / 0.3325 -> 0.2083 /
            0.4886 / 0.3337 with its tower source's recall of the truth 0.210 / 0.199 ->
            0.233 / 0.204 (128 and 1024 did worse); within noise for served, which keeps
            0 (ServedConfig.tower).
        learning_rate: Adam learning rate.
        temperature: softmax temperature of the cosine scores.
        id_dropout: share of training items whose id vector is hidden, so that the item
            tower learns to place items from their tokens alone (cold items).
        l2: L2 penalty on the batch's embedding rows.
        validation: share of train events (the last in time) held out to pick the epochs;
            0 trains `epochs` epochs on everything.
        patience: epochs without a better validation NDCG@10 before stopping. The figure
            is noisy (about 140 validation cases on ml-100k: it moves by 0.01-0.03 from
            epoch to epoch on a nearly flat curve), and with 2 one lucky first epoch ended
            the fit (1 epoch kept on the newest validation window); 4 (chosen with
            uniform_negatives, figures above) kept 6 / 6 / 3 epochs on the three windows.
        min_epochs: fewest epochs early stopping may keep; the epochs before are not scored
            against the later ones (keras EarlyStopping's `start_from_epoch`).
        cold_items: also index items of the items table without train events whose
            `created_ts` precedes the last train event.
        max_per_user: examples drawn per user and epoch (None: all), so that long histories
            do not dominate an epoch's time and gradient.
        max_examples: examples drawn per epoch (None: all).
        xla: compile the training step with XLA. None decides per fit: XLA when epochs x
            steps per epoch x items reaches 1e7. Compiling costs a few seconds per fit and
            removes much of a step's fixed cost, which grows with the catalog: at 19,647
            items a step of 1,024 took 75 ms instead of 89 and one of 256 took 20 instead of
            37 (`python -m benchmarks.tower_step`), while on the 500-item synthetic default a
            4-epoch fit took 14 s instead of 5.5.
        warm_start_epochs: epochs of a fit that continues an earlier fit's weights
            (`fit_tower`'s `start`): models.served_fit fits the tower once on its first
            window's past and continues it on each later window's past and on all of the
            train side for this many epochs; None fits each from scratch.
        warm_start_recent: a continued fit trains on the examples newer than the starting
            model's last train event only (its window's new events), not on all of them.
        seed: random seed.
    """

    dim: int = 32
    hidden: int = 128
    heads: int = 2
    history: int = 50
    recent: int = 5
    epochs: int = 12
    batch_size: int = 512
    uniform_negatives: int = 256
    learning_rate: float = 0.003
    temperature: float = 0.1
    id_dropout: float = 0.2
    l2: float = 1e-4
    validation: float = 0.1
    patience: int = 4
    min_epochs: int = 1
    cold_items: bool = True
    max_per_user: int | None = 64
    max_examples: int | None = None
    xla: bool | None = None
    warm_start_epochs: int | None = 1
    warm_start_recent: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuses a value that cannot mean what it says (a --served-config or a bundle's
        served.json reaches here), naming the field, before any training."""
        def whole(v, low: int) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= low

        def real(v) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        bad = [f"{n} {getattr(self, n)!r}: a whole number >= 1" for n in (
            "dim", "hidden", "heads", "history", "recent", "epochs", "batch_size", "patience",
            "min_epochs") if not whole(getattr(self, n), 1)]
        bad += [f"{n} {getattr(self, n)!r}: a whole number >= 1, or null" for n in (
            "max_per_user", "max_examples", "warm_start_epochs")
            if getattr(self, n) is not None and not whole(getattr(self, n), 1)]
        if not whole(self.uniform_negatives, 0):
            bad.append(f"uniform_negatives {self.uniform_negatives!r}: a whole number >= 0")
        bad += [f"{n} {getattr(self, n)!r}: a number >= 0" for n in ("learning_rate",
                "temperature", "l2") if not (real(getattr(self, n)) and getattr(self, n) >= 0)]
        bad += [f"{n} {getattr(self, n)!r}: a number in [0, 1)" for n in ("id_dropout",
                "validation") if not (real(getattr(self, n)) and 0 <= getattr(self, n) < 1)]
        if bad:
            raise ValueError("TwoTowerConfig: " + "; ".join(bad))


@dataclass
class TwoTowerModel:
    """A trained two-tower model: its inputs, weights and the item vectors.

    Attributes:
        data: the inputs it was fitted on.
        arrays: the weights by name (models.towers.ARRAYS: "item_tok", "u_w1", ...), float32
            NumPy: what the bundle stores and models.runtimes reads.
        config: its hyperparameters.
        epochs: epochs trained (a continued fit counts its start's).
        item_vectors: [n_items, d] (computed by the item tower when None).
    """

    data: TowerData
    arrays: dict[str, np.ndarray]
    config: TwoTowerConfig
    epochs: int
    item_vectors: np.ndarray | None = None

    def __post_init__(self):
        self._net = None
        if self.item_vectors is None:
            self.item_vectors = self.network().item_vectors(self.data.has_events)

    @classmethod
    def of(cls, data: TowerData, net: TwoTower, config: TwoTowerConfig,
           epochs: int) -> TwoTowerModel:
        """The model of a trained network (which it keeps: do not train `net` further)."""
        model = cls(data, net.arrays(), config, epochs, net.item_vectors(data.has_events))
        model._net = net
        return model

    def network(self) -> TwoTower:
        """The Keras network of these weights (built on first use; imports TensorFlow)."""
        if self._net is None:
            from models.towers import TwoTower

            self._net = TwoTower(self.data.item_tokens, self.data.item_enc.size,
                                 self.data.user_enc.size, self.config)
            self._net.set_arrays(self.arrays)
        return self._net

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_net": None}  # the network is rebuilt from the arrays

    def user_vectors(self, hist: np.ndarray, user_tok: np.ndarray,
                     batch_size: int = 4096) -> np.ndarray:
        """Args: hist [B, H] int32, user_tok [B, U] int32. Returns: [B, d] float32."""
        net = self.network()
        out = [net.queries(hist[lo:lo + batch_size], user_tok[lo:lo + batch_size])
               for lo in range(0, len(hist), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.config.dim), np.float32)

    def queries(self, user_ids: list[str], histories: list[np.ndarray]) -> np.ndarray:
        """Query vectors [B, d] from item-index histories (oldest first) and user ids."""
        hist = history_matrix(histories, self.config.history)
        return self.user_vectors(hist, self.data.user_matrix(user_ids))


def monitor_ndcg(model: TwoTowerModel, cases: Cases, max_cases: int = 2000) -> float:
    """Mean NDCG@10 of the model's own top 10 (history excluded) over warm + fresh cases."""
    from models.topk import brute_force_topk

    chosen = (cases.warm + cases.fresh)[:max_cases]
    if not chosen:
        return 0.0
    items = model.data.items
    hist = [items.lookup(c.history) for c in chosen]
    hist = [h[h >= 0] for h in hist]
    xq = model.queries([c.user_id for c in chosen], hist)
    I, _ = brute_force_topk(xq, model.item_vectors, 10, hist)
    return float(np.mean([ndcg_at_k([str(items.ids[i]) for i in row if i >= 0], c.truth)
                          for row, c in zip(I, chosen, strict=True)]))
