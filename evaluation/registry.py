"""The models `recsys evaluate` runs, by name: the baselines, the product's models and the peers
(models/peers.py).

Every name is listed whether or not its optional package is installed; `resolve_models` says
what to install for one that cannot run here (ALS and BPR without the `peers` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models.baselines import ItemKNN, Popularity, RecentPopularity
from models.dqn_guard import ServedDQNRecommender
from models.evaluation import Recommender
from models.graphsage_fit import GraphSAGERecommender
from models.mf import MFConfig
from models.peers import PEERS, missing_requirement
from models.retrieval import MFRecommender
from models.served_fit import ServedRecommender
from models.tower_fit import TwoTowerRecommender

# Name -> factory of an unfitted model.
MODEL_REGISTRY: dict[str, Callable[[], Recommender]] = {
    "popularity": Popularity,
    "recent_popularity": RecentPopularity,
    "item_knn": ItemKNN,
    "mf": MFRecommender,
    "mf_explicit": lambda: MFRecommender(MFConfig(objective="explicit")),
    "mf_bpr": lambda: MFRecommender(MFConfig(objective="bpr")),
    "two_tower": TwoTowerRecommender,
    "served": ServedRecommender,
    "served_dqn": ServedDQNRecommender,
    "graphsage": GraphSAGERecommender,
    **PEERS,
}


def resolve_models(model_names: Sequence[str],
                   registry: dict[str, Callable[[], Recommender]] | None = None
                   ) -> dict[str, Callable[[], Recommender]]:
    """Factories for the names, in order.

    Raises:
      ValueError: a name is unknown (the message lists the known ones), or its model needs an
        optional package that is not installed (the message says what to install).
    """
    registry = MODEL_REGISTRY if registry is None else registry
    unknown = [n for n in model_names if n not in registry]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {sorted(registry)}")
    missing = {n: p for n in model_names if (p := missing_requirement(registry[n]))}
    if missing:
        raise ValueError(
            f"model(s) {sorted(missing)} need {sorted(set(missing.values()))}, which is not "
            "installed: pip install 'recsys[peers]' (or -e '.[peers]' in a checkout)")
    return {name: registry[name] for name in model_names}
