"""GraphSAGE retrieval over the user–item graph (inductive: no user id, so a fresh user's
vector comes from the items they touched, and an item without events from its tokens).

    models.graphsage_graph   Graph (weighted CSR both ways), sample_neighbours (NumPy)
    models.graphsage_net     GraphSAGENet: the two SAGE layers in Keras, the retrieval loss
    models.graphsage_fit     SageBatches, fit_graphsage, train_graphsage (epochs picked on the
                             train side's last window), GraphSAGERecommender (recsys evaluate)
    models.graphsage_export  the query side as LiteRT (user_embedding.tflite), checked
    models.graphsage         GraphSAGEConfig, GraphSAGEModel: the trained weights as NumPy
                             arrays and the full-neighbourhood forward pass in NumPy

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --models two_tower,graphsage
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.histories import history_matrix
from models.tower_data import TowerData

# The weights by name: layer 0 (item ids, item and user tokens, the user base vector) and,
# for node type u/i and layer 1/2, W_self, W_neigh and the bias.
ARRAYS = ("item_id", "item_tok", "user_tok", "user_x0",
          *(f"{t}{layer}_{p}" for layer in "12" for t in "ui" for p in ("self", "neigh", "b")))


@dataclass(frozen=True)
class GraphSAGEConfig:
    """Hyperparameters of GraphSAGE (chosen on the train side's validation windows:
    docs/EVALUATION_RESULTS.md, "GraphSAGE").

    Attributes:
        dim: embedding dimension (layer 0 and layer 2).
        hidden: width of layer 1.
        history: a user's most recent items that are its neighbours (query side).
        user_fanout: users sampled per item in training (its neighbours).
        item_fanout: items sampled per such user (the candidate's second hop).
        epochs: most passes over the examples; the validation picks how many.
        batch_size: examples per step, the in-batch negatives of each other.
        learning_rate: Adam learning rate.
        temperature: softmax temperature of the cosine scores.
        id_dropout: share of target items trained as cold items: id and edges hidden, the
            vector from their tokens alone.
        l2: L2 penalty on the batch's item id rows.
        validation: share of train events (the last in time) that picks the epochs; 0 trains
            `epochs` epochs on everything.
        patience: epochs without a better validation NDCG@10 before stopping.
        cold_items: also index items of the items table without train events created before
            the last train event.
        max_per_user: examples drawn per user and epoch (None: all).
        max_examples: examples drawn per epoch (None: all).
        seed: random seed (weights and samples).
    """

    dim: int = 64
    hidden: int = 128
    history: int = 50
    user_fanout: int = 10
    item_fanout: int = 10
    epochs: int = 12
    batch_size: int = 512
    learning_rate: float = 0.003
    temperature: float = 0.05
    id_dropout: float = 0.2
    l2: float = 1e-4
    validation: float = 0.1
    patience: int = 2
    cold_items: bool = True
    max_per_user: int | None = 64
    max_examples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        whole = {k: getattr(self, k) for k in ("dim", "hidden", "history", "user_fanout",
                                               "item_fanout", "epochs", "batch_size")}
        whole.update({k: v for k in ("max_per_user", "max_examples")
                      if (v := getattr(self, k)) is not None})
        for name, value in whole.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GraphSAGEConfig.{name} {value!r}: a whole number >= 1")
        for name in ("patience", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"GraphSAGEConfig.{name} {value!r}: a whole number >= 0")
        bounds = {"learning_rate": (0, None), "temperature": (0, None), "l2": (None, None),
                  "id_dropout": (None, 1), "validation": (None, 1)}
        for name, (above, below) in bounds.items():
            value = getattr(self, name)
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and value >= 0 and (above is None or value > above)
                  and (below is None or value < below))
            if not ok:
                raise ValueError(f"GraphSAGEConfig.{name} {value!r}: a number >= 0"
                                 + (f", > {above}" if above is not None else "")
                                 + (f", < {below}" if below is not None else ""))
        if not isinstance(self.cold_items, bool):
            raise ValueError(f"GraphSAGEConfig.cold_items {self.cold_items!r}: true or false")


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def token_mean(table: np.ndarray, tok: np.ndarray) -> np.ndarray:
    """Mean of the rows of `table` named by tok [..., T] (0 pads) -> [..., d]."""
    m = (tok > 0).astype(np.float32)
    return (table[tok] * m[..., None]).sum(-2) / np.maximum(m.sum(-1), 1e-6)[..., None]


@dataclass
class GraphSAGEModel:
    """A trained GraphSAGE: its inputs, weights and the precomputed item tables.

    Attributes:
        data: the towers' inputs it was fitted on (items, tokens, user encoder).
        arrays: the weights by name (ARRAYS), float32.
        config: its hyperparameters.
        epochs: epochs trained.
        x_item: [n_items, dim] layer-0 item vectors (cold items: tokens only).
        h1_item: [n_items, hidden] layer-1 item vectors over each item's users (all of them).
        item_vectors: [n_items, dim] layer-2 item vectors: the retrieval index.
    """

    data: TowerData
    arrays: dict[str, np.ndarray]
    config: GraphSAGEConfig
    epochs: int
    x_item: np.ndarray = field(repr=False)
    h1_item: np.ndarray = field(repr=False)
    item_vectors: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, data: TowerData, graph, arrays: dict[str, np.ndarray],
           config: GraphSAGEConfig, epochs: int) -> GraphSAGEModel:
        """The model of trained weights: every item's layers over its full neighbourhood
        (the weighted mean over all its edges, of which training saw samples)."""
        w = arrays
        ids1 = np.where(data.has_events, np.arange(1, len(data.items) + 1), 0)
        x_item = w["item_id"][ids1] + token_mean(w["item_tok"], data.item_tokens)
        x_user = w["user_x0"] + token_mean(w["user_tok"], data.user_tokens)
        a_item, a_user = graph.adjacency("item"), graph.adjacency("user")
        h1_item = _relu(x_item @ w["i1_self"] + (a_item @ x_user) @ w["i1_neigh"] + w["i1_b"])
        h1_user = _relu(x_user @ w["u1_self"] + (a_user @ x_item) @ w["u1_neigh"] + w["u1_b"])
        vectors = _normalise(h1_item @ w["i2_self"] + (a_item @ h1_user) @ w["i2_neigh"]
                             + w["i2_b"])
        f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
        return cls(data, w, config, epochs, f32(x_item), f32(h1_item), f32(vectors))

    def user_vectors(self, hist: np.ndarray, user_tok: np.ndarray) -> np.ndarray:
        """Query vectors [B, dim] of hist [B, H] item indices (-1 pads) and user_tok [B, U]:
        layer 2 of a user node whose neighbours are the history's items."""
        w = self.arrays
        valid = (hist >= 0).astype(np.float32)[..., None]
        n = np.maximum(valid.sum(1), 1e-6)
        safe = np.maximum(hist, 0)
        mean_x = (self.x_item[safe] * valid).sum(1) / n
        mean_h1 = (self.h1_item[safe] * valid).sum(1) / n
        x_user = w["user_x0"] + token_mean(w["user_tok"], user_tok)
        h1 = _relu(x_user @ w["u1_self"] + mean_x @ w["u1_neigh"] + w["u1_b"])
        return _normalise(h1 @ w["u2_self"] + mean_h1 @ w["u2_neigh"] + w["u2_b"]).astype(
            np.float32)

    def queries(self, user_ids: list[str], histories: list[np.ndarray]) -> np.ndarray:
        """Query vectors [B, dim] from item-index histories (oldest first) and user ids (their
        features from the users table; none for unknown users)."""
        hist = history_matrix(histories, self.config.history)
        return self.user_vectors(hist, self.data.user_matrix(user_ids))
