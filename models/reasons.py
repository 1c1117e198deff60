"""Why an item is in a served list, worked out from the served ranker's own features.

    reasons = item_reasons(model, history, user_tok, context, cand, trending, popular)

For each listed item c, the first that holds of:

1. `because_you_took`: an item h of the history window the ranker's `knn` and `session`
   (and, with EASE, `ease`) features read (the last `tower.history` items) is a neighbour of
   c. Those features are the sums of S[h, c] over that window
   (models.features.neighbour_sums), so each history item's share is its S[h, c]: the reason
   names the h of the largest positive share over the tables, the table's feature
   (`feature`), its share (`contribution`) and the feature's value. Taking h out of the
   history lowers that feature by its share (tests/functions/test_explain.py shows it on the
   ranker's features).
2. `popular_in_your_segment`: the `segment_lift` feature is above 0 (users sharing the
   user's feature tokens took c more than all users did).
3. `new`: c has no train event (`pop_all` is 0): the item tower embedded it from features.
4. `trending`: c is among the instance's trending items (infra/redis/trending.py).
5. `popular`: the list's popular source gave it.
6. `taste`: none of the above: the two-tower score (`tower`) put it there.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.histories import history_matrix

FEATURE_OF = {"knn": "knn", "sess": "session", "ease": "ease"}  # table -> its feature


def shares(matrix, window: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """[len(window), len(cand)] S[h, c] of a neighbour matrix (dense or CSR)."""
    if len(window) == 0 or len(cand) == 0:
        return np.zeros((len(window), len(cand)), np.float32)
    sub = matrix[window][:, cand]
    return np.asarray(sub.toarray() if sp.issparse(sub) else sub, np.float32)


def item_features(model, history: np.ndarray, user_tok: np.ndarray, context: np.ndarray,
                  cand: np.ndarray) -> np.ndarray:
    """[len(cand), F] the ranker's features of the candidates for one user (the tower
    feature left 0: no reason reads it, and it needs the user tower).

    Args:
        model: a models.served.ServedModel.
        history: [n] item indices, oldest first.
        user_tok: [U] user tokens; context: [2] (fresh, days since the last event).
        cand: [C] item indices.
    """
    hist = history_matrix([history], model.config.tower.history)
    d = model.tables.item_vectors.shape[1]
    X = model.features(hist, user_tok[None, :], cand[None, :].astype(np.int64),
                       context[None, :].astype(np.float32), query=np.zeros((1, d), np.float32))
    return X[0]


def item_reasons(model, history: np.ndarray, user_tok: np.ndarray, context: np.ndarray,
                 cand: np.ndarray, trending: np.ndarray, popular: np.ndarray) -> list[dict]:
    """One reason per candidate (the module's rules), with item indices for items.

    Args:
        trending, popular: [C] bool per candidate.

    Returns:
        [{"reason", "feature", "value", and for because_you_took "history_item" (an index)
        and "contribution"}].
    """
    cand = np.asarray(cand, np.int64)
    history = np.asarray(history, np.int64)
    window = history[-model.config.tower.history:] if len(history) else history
    X = item_features(model, history, user_tok, context, cand)
    a = model.arrays()
    tables = [(FEATURE_OF[name], shares(a.neighbours[name].matrix, window, cand))
              for name in model.neighbour_names()]
    _COL = {f: i for i, f in enumerate(model.feature_names())}
    out = []
    for n in range(len(cand)):
        best = max(((float(s[:, n].max()), name, int(s[:, n].argmax())) for name, s in tables
                    if len(window)), default=(0.0, "", 0))
        if best[0] > 0:
            name = best[1]
            out.append({"reason": "because_you_took", "history_item": int(window[best[2]]),
                        "feature": name, "contribution": round(best[0], 4),
                        "value": round(float(X[n, _COL[name]]), 4)})
        elif X[n, _COL["segment_lift"]] > 0:
            out.append({"reason": "popular_in_your_segment", "feature": "segment_lift",
                        "value": round(float(X[n, _COL["segment_lift"]]), 4)})
        elif X[n, _COL["pop_all"]] == 0:
            out.append({"reason": "new", "feature": "pop_all", "value": 0.0})
        elif trending[n]:
            out.append({"reason": "trending", "feature": None, "value": None})
        elif popular[n]:
            out.append({"reason": "popular", "feature": "pop_all",
                        "value": round(float(X[n, _COL["pop_all"]]), 4)})
        else:
            out.append({"reason": "taste", "feature": "tower", "value": None})
    return out
