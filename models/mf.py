"""Matrix factorisation with biases (the seed's §6.2 model) trained for top-K retrieval.

score(u, i) = p_u · q_i + b_u + b_i + g, L2 (λ = 0.01 by default) on the looked-up rows.
Objectives (`MFConfig.objective`): "logistic" (the default, implicit feedback: every observed
(user, item) pair is a positive weighted by log1p of its summed event weights, against
uniformly sampled negatives), "bpr" (implicit, pairwise: each positive above a sampled item
of the same user) and "explicit" (the seed's MSE on ratings: each pair's mean event weight,
e.g. its MovieLens rating, with no negatives).
Fresh users are folded in from their recent items (see `fold_in`), so the same item
vectors serve warm users (precomputed) and fresh ones (on demand):
query = [p_u, 1] and item = [q_i, b_i] make the score an inner product for Faiss.

    models.mf       MFConfig, MFModel (NumPy factors, fold_in), train_mf
    models.mf_net   MFNet (Keras), OBJECTIVES (each objective's loss and negatives)

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --models mf
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.finite import NonFiniteError, require_finite
from models.preprocess import Preprocessor
from models.vocab import Vocab, interaction_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MFConfig:
    """Hyperparameters of MF. The defaults were swept on the MovieLens 100K train side (LOO-S
    and the TH validation windows, `--mf-try` of benchmarks.validate_loo / validate_served):
    no dim, L2, epochs, negatives, learning rate or objective beat them beyond seed noise
    (docs/EVALUATION_RESULTS.md, "MF tuned on the train side").

    Attributes:
        dim: embedding dimension.
        l2: L2 penalty on the embedding and bias rows of each batch.
        epochs: passes over the positives.
        batch_size: examples per step (positives and their negatives).
        learning_rate: Adam learning rate.
        negatives: sampled negatives per positive.
        fold_in_alpha: extra confidence of a fresh user's history items in the fold-in.
        fold_in_l2: ridge penalty of the fold-in.
        objective: "logistic", "bpr" or "explicit" (see the module docstring).
        seed: random seed.
        guard_window: share of the train events (the last in time) on which
            models.retrieval.MFRecommender checks an MF fitted on the rest against popularity,
            per segment (models.served_guard); 0 turns the guard off.
    """

    dim: int = 32
    l2: float = 0.01
    epochs: int = 12
    batch_size: int = 4096
    learning_rate: float = 0.01
    negatives: int = 4
    fold_in_alpha: float = 20.0
    fold_in_l2: float = 1.0
    objective: str = "logistic"
    seed: int = 0
    guard_window: float = 0.1


@dataclass
class MFModel:
    """A trained MF model: vocabularies, factors and biases as NumPy arrays."""

    users: Vocab
    items: Vocab
    user_factors: np.ndarray  # [num_users, dim]
    item_factors: np.ndarray  # [num_items, dim]
    user_bias: np.ndarray  # [num_users]
    item_bias: np.ndarray  # [num_items]
    global_bias: float
    pos_logit: float  # mean training logit of positives, the fold-in's target
    neg_logit: float  # mean training logit of sampled negatives
    config: MFConfig

    def item_vectors(self) -> np.ndarray:
        """Returns [num_items, dim + 1] float32: [q_i, b_i]."""
        return np.hstack([self.item_factors, self.item_bias[:, None]]).astype(np.float32)

    def user_vectors(self) -> np.ndarray:
        """Returns [num_users, dim + 1] float32: [p_u, 1]."""
        ones = np.ones((len(self.user_factors), 1), np.float32)
        return np.hstack([self.user_factors, ones]).astype(np.float32)

    def fold_in(self, histories: list[list[int]]) -> np.ndarray:
        """Query vectors for users known only by their items (weighted ridge, ALS-style).

        Solves min_p Σ_i c_i (y_i - b_i - p·q_i)² + λ|p|² with y_i = pos_logit, c_i = 1 + α
        for history items and y_i = neg_logit, c_i = 1 for the others.

        Args:
            histories: item indices per user; unknown items (index < 0) are ignored.

        Returns:
            [num_users, dim + 1] float32 query vectors [p, 1].
        """
        Q, b = self.item_factors.astype(np.float64), self.item_bias.astype(np.float64)
        a, lam = self.config.fold_in_alpha, self.config.fold_in_l2
        G = Q.T @ Q + lam * np.eye(Q.shape[1])
        g = Q.T @ (self.neg_logit - b)
        out = np.zeros((len(histories), Q.shape[1] + 1), np.float32)
        out[:, -1] = 1.0
        for n, hist in enumerate(histories):
            h = np.unique([i for i in hist if i >= 0])
            if len(h) == 0:
                continue
            Qh = Q[h]
            rhs = g + Qh.T @ ((1 + a) * (self.pos_logit - b[h]) - (self.neg_logit - b[h]))
            out[n, :-1] = np.linalg.solve(G + a * Qh.T @ Qh, rhs)
        return out


def train_mf(interactions: pd.DataFrame, config: MFConfig = MFConfig(),
             event_weights=None) -> MFModel:
    """Trains MF with biases with `config.objective` (implicit logistic by default):
    models.mf_net's network, its objective's loss and negatives, `keras.optimizers.Adam`.

    Args:
        interactions: the train side only (user_id, item_id, timestamp, ...).
        config: hyperparameters.
        event_weights: weight per event type; None uses the schema's defaults.

    Returns:
        The trained MFModel.

    Raises:
        ValueError: an unknown `config.objective`.
        NonFiniteError: a pair's weight is not finite (e.g. one event weight past float32's
            range), the loss stops being finite, or a trained parameter is NaN or inf: no
            model rather than one that serves empty lists.
    """
    import keras

    from models.mf_net import OBJECTIVES, MFNet, positives
    from models.training import fit_early_stopping

    objective = OBJECTIVES.get(config.objective)
    if objective is None:
        raise ValueError(f"MFConfig.objective {config.objective!r}: use "
                         f"{', '.join(OBJECTIVES)}")
    keras.utils.set_random_seed(config.seed)
    pre = Preprocessor.fit(interactions, event_weights)
    users, items = pre.users, pre.items
    u, i, w = _rating_pairs(interactions, pre) if objective.rating else _pairs(interactions, pre)
    _require_finite_weights(w, u, i, users, items)
    negatives = config.negatives if objective.negatives is None else objective.negatives
    net = MFNet(len(users), len(items), config, negatives)
    if objective.rating:  # start from the mean rating
        net.g.assign(float(w.mean()))
    # Several small steps per graph call, without XLA: at MovieLens 100K size XLA doubled
    # the time (its compile costs more than such steps) and one step per call added 20%.
    net.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=objective.loss,
                steps_per_execution=32, jit_compile=False)
    batches = positives(u, i, w, objective, max(1, config.batch_size // (1 + negatives)),
                        config.seed)
    fit_early_stopping(net, batches, config.epochs, None, 0, "MF", _CHECK)
    a = net.arrays()
    require_finite(a, "MF", _CHECK)
    P, Q, bu, bi, g = (a[k] for k in ("user_factors", "item_factors", "user_bias",
                                      "item_bias", "global_bias"))
    # Fold-in targets live in the (p·q + b_i) space: the user and global terms dropped.
    neg_items = np.random.default_rng(config.seed).integers(0, len(items), len(u))
    pos_t = float(np.mean(np.einsum("nd,nd->n", P[u], Q[i]) + bi[i]))
    neg_t = float(np.mean(np.einsum("nd,nd->n", P[u], Q[neg_items]) + bi[neg_items]))
    return MFModel(users, items, P, Q, bu, bi, g, pos_t, neg_t, config)


def _pairs(interactions: pd.DataFrame, pre: Preprocessor):
    """(u, i, log1p of the pair's summed event weights) of every observed pair."""
    pairs = pre.pairs(interactions)
    return (pairs.u.to_numpy(np.int32), pairs.i.to_numpy(np.int32),
            np.log1p(pairs.w.to_numpy(np.float32)))  # diminishing returns of repeated events


def _rating_pairs(interactions: pd.DataFrame, pre: Preprocessor):
    """(u, i, the pair's mean event weight: its rating) of every observed pair."""
    df = pd.DataFrame({"u": pre.users.lookup(interactions["user_id"]),
                       "i": pre.items.lookup(interactions["item_id"]),
                       "w": interaction_weights(interactions, pre.event_weights)})
    mean_w = df.groupby(["u", "i"])["w"].mean()
    return (mean_w.index.get_level_values(0).to_numpy(np.int32),
            mean_w.index.get_level_values(1).to_numpy(np.int32),
            mean_w.to_numpy(np.float32))


_CHECK = ("the input's weights and ratings (finite, 0..1000: docs/SCHEMA.md) and MFConfig's "
          "learning_rate and l2")


def _require_finite_weights(w: np.ndarray, u: np.ndarray, i: np.ndarray, users: Vocab,
                            items: Vocab) -> None:
    """Refuses pairs whose training weight (or rating target) is NaN or inf, naming one."""
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        n = bad[0]
        raise NonFiniteError(
            f"MF: {bad.size} (user, item) pair(s) have a non-finite training weight, e.g. "
            f"user {users.ids[u[n]]!r} item {items.ids[i[n]]!r}: each event's weight must be "
            "finite and >= 0 (summed per pair in float32, whose largest value is ~3.4e38); "
            "drop or fix those rows (docs/SCHEMA.md bounds `weight` to 0..1000)")
