"""Training GraphSAGE (models.graphsage_net.GraphSAGENet) with neighbour sampling, and the
recommender `recsys evaluate --models graphsage` runs. Imports Keras.

Each example is a train user's item at position j >= 1 (as the towers': models.tower_data),
the query the user's items before j, the positive item j. Per batch (`SageBatches`):

    hist          [B, H]       the user's last H items before j (the query node's neighbours)
    hist_users    [B, H, Sq]   a sample of each history item's users (its layer-1 neighbours)
    users         [B, S]       a sample of item j's users, the query's own user left out
    user_items    [B, S, S2]   a sample of each of those users' items (item j's second hop)

so a step touches B (H Sq + S S2) nodes whatever the graph's size. A share `id_dropout` of
the targets is trained as cold items (id and edges hidden).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pandas as pd

from models.evaluation import Cases, build_cases, temporal_split
from models.finite import require_finite
from models.graphsage import GraphSAGEConfig, GraphSAGEModel
from models.graphsage_graph import Graph, sample_neighbours
from models.graphsage_net import GraphSAGENet
from models.topk import ItemVectorRecommender
from models.tower_data import TowerData, prepare
from models.tower_fit import epoch_sample, epoch_size
from models.training import EpochBatches, FusedAdam, fit_early_stopping
from models.two_tower import monitor_ndcg

log = logging.getLogger(__name__)
_CHECK = "the items and users tables' values and GraphSAGEConfig's learning_rate and temperature"
QUERY_FANOUT = 4  # users per history item in training (the query's second hop)


class SageBatches(EpochBatches):
    """Each epoch's batches (see the module docstring): a fresh sample of examples
    (`epoch_sample`), fresh neighbour samples, log q of each target (its share of examples).
    A last batch under a quarter of `batch_size` is dropped."""

    def __init__(self, data: TowerData, graph: Graph, ex_user: np.ndarray, ex_pos: np.ndarray,
                 config: GraphSAGEConfig):
        super().__init__()
        self.data, self.graph, self.config = data, graph, config
        self.ex_user, self.ex_pos = ex_user, ex_pos
        self.rng = np.random.default_rng(config.seed)
        counts = np.bincount(data.seq[data.offsets[ex_user] + ex_pos], minlength=len(data.items))
        self.logq = np.log(np.maximum(counts, 1) / max(len(ex_user), 1)).astype(np.float32)
        self.size = epoch_size(ex_user, config.max_per_user, config.max_examples)

    def __len__(self) -> int:
        b = self.config.batch_size
        return len(range(0, self.size - b // 4, b))

    def __getitem__(self, index: int) -> dict:
        c, d, g, rng = self.config, self.data, self.graph, self.rng
        b = self.order[index * c.batch_size:(index + 1) * c.batch_size]
        user, pos = self.ex_user[b], self.ex_pos[b]
        target = d.seq[d.offsets[user] + pos].astype(np.int32)
        keep = (rng.random(len(b)) >= c.id_dropout).astype(np.int32)
        hist = d.histories(user, pos, c.history)
        hist_users, hist_users_w = sample_neighbours(g.item_indptr, g.item_users, g.item_w,
                                                     hist, QUERY_FANOUT, rng)
        users, users_w = sample_neighbours(g.item_indptr, g.item_users, g.item_w,
                                           np.where(keep > 0, target, -1), c.user_fanout, rng)
        own = users == user[:, None]  # the query's own edge to its answer
        users, users_w = np.where(own, -1, users), np.where(own, 0.0, users_w)
        user_items, user_items_w = sample_neighbours(g.user_indptr, g.user_items, g.user_w,
                                                     users, c.item_fanout, rng)
        return {"user_tok": d.user_tokens[user], "hist": hist, "hist_users": hist_users,
                "hist_users_w": hist_users_w, "target": target, "keep": keep, "users": users,
                "users_w": users_w.astype(np.float32), "user_items": user_items,
                "user_items_w": user_items_w, "logq": self.logq[target]}

    def draw(self) -> np.ndarray:
        c = self.config
        return epoch_sample(self.ex_user, c.max_per_user, c.max_examples, self.rng)


def fit_graphsage(data: TowerData, graph: Graph, config: GraphSAGEConfig, epochs: int,
                  monitor: Cases | None = None) -> tuple[GraphSAGEModel, list[float]]:
    """Trains for at most `epochs` epochs; with `monitor`, keeps the epoch of best NDCG@10 on
    it and stops after `config.patience` epochs without improvement.

    Returns:
        (model, validation NDCG@10 per epoch, empty without `monitor`).

    Raises:
        NonFiniteError: the loss or a trained weight is NaN or inf.
    """
    c = config
    keras.utils.set_random_seed(c.seed)
    net = GraphSAGENet(data.item_tokens, data.user_tokens, data.item_enc.size,
                       data.user_enc.size, c)
    ex_user, ex_pos = data.examples()
    batches = SageBatches(data, graph, ex_user, ex_pos, c)
    net.compile(optimizer=FusedAdam(c.learning_rate), steps_per_execution=16)

    def validate(net: GraphSAGENet) -> float:
        model = GraphSAGEModel.of(data, graph, net.arrays(), c, 0)
        score = monitor_ndcg(model, monitor)
        log.info("graphsage validation NDCG@10 %.4f", score)
        return score

    scores, kept = fit_early_stopping(net, batches, epochs,
                                      None if monitor is None else validate, c.patience,
                                      "graphsage", _CHECK)
    model = GraphSAGEModel.of(data, graph, net.arrays(), c, kept)
    require_finite({**model.arrays, "item_vectors": model.item_vectors}, "graphsage", _CHECK)
    return model, scores


def train_graphsage(train: pd.DataFrame, users: pd.DataFrame | None = None,
                    items: pd.DataFrame | None = None,
                    config: GraphSAGEConfig = GraphSAGEConfig(),
                    event_weights=None) -> GraphSAGEModel:
    """Picks the epochs on the last `config.validation` of train events, then refits on all.

    Args:
        train: the train side's interactions.
        users, items: the features tables or None.
        config: hyperparameters.
        event_weights: event type -> weight of the graph's edges (None: the defaults).
    """
    epochs = config.epochs
    if config.validation > 0:
        split = temporal_split(train, 1.0 - config.validation)
        data = prepare(split.train, users, items, config)
        _, scores = fit_graphsage(data, Graph.build(data, split.train, event_weights), config,
                                  epochs, build_cases(split))
        epochs = int(np.argmax(scores)) + 1 if scores else epochs
    data = prepare(train, users, items, config)
    return fit_graphsage(data, Graph.build(data, train, event_weights), config, epochs)[0]


class GraphSAGERecommender(ItemVectorRecommender):
    """GraphSAGE alone: the query from the history's items -> Faiss over item vectors."""

    name = "graphsage"
    train = staticmethod(train_graphsage)

    def __init__(self, config: GraphSAGEConfig = GraphSAGEConfig()):
        super().__init__(config)
