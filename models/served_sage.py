"""GraphSAGE inside `served` (ServedConfig.graphsage): a candidate source (top-N of its query
· item vectors) and the "graphsage" ranking feature (the candidate's score), over the served
model's own items (it is fitted on the tower's models.tower_data.TowerData).

    fit_sage(data, train, config, event_weights) -> GraphSAGEModel   one window's fit
    sage_arrays(sage) -> {name: array}     what served.npz stores (`g:<name>`)
    sage_from_arrays(arrays, config, epochs) -> GraphSAGEModel   the query side, read back

The query (models.graphsage.GraphSAGEModel.user_vectors) is NumPy in every runtime: the
nightly's, the on-demand function's (no TensorFlow) and, beside the TF graph's own features
(models.feature_graph), the reference they are checked against.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from models.graphsage import GraphSAGEConfig, GraphSAGEModel

if TYPE_CHECKING:
    import pandas as pd

    from models.tower_data import TowerData

# The weights the query side reads (GraphSAGEModel.user_vectors) and its item tables.
QUERY_WEIGHTS = ("user_tok", "user_x0", "u1_self", "u1_neigh", "u1_b", "u2_self", "u2_neigh",
                 "u2_b")
ITEM_TABLES = ("x_item", "h1_item", "item_vectors")


def fit_sage(data: TowerData, train: pd.DataFrame, config: GraphSAGEConfig, epochs: int,
             event_weights=None) -> GraphSAGEModel:
    """GraphSAGE fitted for `epochs` epochs on `data` (the tower's inputs of `train`)."""
    import logging

    from models.graphsage_fit import fit_graphsage
    from models.graphsage_graph import Graph

    t = time.perf_counter()
    model = fit_graphsage(data, Graph.build(data, train, event_weights), config, epochs)[0]
    logging.getLogger(__name__).info("served: GraphSAGE fitted in %.1f s",
                                     time.perf_counter() - t)
    return model


def sage_arrays(sage: GraphSAGEModel) -> dict[str, np.ndarray]:
    """The arrays of GraphSAGE's query side and item tables, by name."""
    out = {k: sage.arrays[k] for k in QUERY_WEIGHTS}
    out.update({k: getattr(sage, k) for k in ITEM_TABLES})
    return out


def sage_from_arrays(arrays: dict[str, np.ndarray], config: GraphSAGEConfig, epochs: int
                     ) -> GraphSAGEModel:
    """The query side of `sage_arrays`' output (no TowerData: the served model's items)."""
    return GraphSAGEModel(None, {k: arrays[k] for k in QUERY_WEIGHTS}, config, epochs,
                          *(np.asarray(arrays[k], np.float32) for k in ITEM_TABLES))
