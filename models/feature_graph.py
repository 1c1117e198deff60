"""The ranking features in TensorFlow: the graph the ranker SavedModel carries, and the
reference models.features' NumPy gathers are checked against (see models.ranker for what
each feature means).

    graph_tables(tables, tower, sage) -> t   the FeatureTables as constants, the tower's
                                         history table and its user tower (a Keras layer),
                                         GraphSAGE's query weights and item tables if any
    features(t, hist, user_tok, cand, context, recent) -> [B, C, F]: FEATURES, then "ease"
                                         (with EASE tables) and "graphsage" (with GraphSAGE),
                                         as models.served.ServedModel.feature_names
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.ranker import ITEM_STATS

if TYPE_CHECKING:
    from models.ranker import FeatureTables


def features(t: dict, hist, user_tok, cand, context, recent: int):
    """The ranking features in TensorFlow.

    Args:
        t: tensors of the FeatureTables fields, the history table and the user tower (see
            `graph_tables`).
        hist: [B, H] int32 history item indices, right-aligned, -1 pads.
        user_tok: [B, U] int32 user tokens.
        cand: [B, C] int32 candidate item indices, -1 pads.
        context: [B, 2] float32: fresh flag (0/1), days since the user's last event.

    Returns:
        [B, C, F] float32 (see the module docstring).
    """
    import tensorflow as tf

    n = tf.shape(t["item_stats"])[0] - 1
    cand = tf.where(cand < 0, n, cand)
    q = t["user_tower"](hist, user_tok, t["history_table"])
    tower = tf.reduce_sum(tf.gather(t["item_vectors"], cand) * q[:, None, :], -1)
    valid = tf.cast(hist >= 0, tf.float32)
    n_hist = tf.reduce_sum(valid, 1, keepdims=True)
    b = tf.shape(hist)[0]
    rows = tf.range(b)[:, None] * (n + 1)

    def summed(idx_table, sim_table, weights):
        # Each history item spreads its neighbours' similarities over a flattened
        # [B * (n + 1)] score vector (pads land on column n), read at the candidates.
        h = tf.where(hist < 0, n, hist)
        nb = tf.gather(idx_table, h)  # [B, H, M]
        sims = tf.gather(sim_table, h) * weights[:, :, None]
        acc = tf.scatter_nd(tf.reshape(nb + rows[:, :, None], [-1, 1]), tf.reshape(sims, [-1]),
                            tf.reshape(b * (n + 1), [1]))
        return tf.gather(acc, cand + rows)

    last = tf.concat([tf.zeros_like(valid[:, :-recent]), valid[:, -recent:]], 1)
    knn = [summed(t["knn_idx"], t["knn_sim"], w) for w in (valid, last)]
    sess = [summed(t["sess_idx"], t["sess_sim"], w) for w in (valid, last)]
    stats = tf.gather(t["item_stats"], cand)
    # token affinity: share of the candidate's tokens found among the history's tokens
    h_tok = tf.gather(t["item_tokens"], tf.where(hist < 0, n, hist))  # [B, H, T]
    n_tok = t["n_tokens"]
    tkeys = tf.range(b)[:, None, None] * n_tok + h_tok
    prof = tf.scatter_nd(tf.reshape(tkeys, [-1, 1]),
                         tf.reshape(tf.cast(h_tok > 0, tf.float32), [-1]),
                         tf.reshape(b * n_tok, [1]))
    c_tok = tf.gather(t["item_tokens"], cand)  # [B, C, T]
    hit = tf.gather(prof, tf.reshape(c_tok + tf.range(b)[:, None, None] * n_tok, [b, -1]))
    c_mask = tf.cast(c_tok > 0, tf.float32)
    hit = tf.reduce_sum(tf.reshape(hit, tf.shape(c_tok)) * c_mask, -1)
    affinity = hit / tf.maximum(tf.reduce_sum(c_mask, -1), 1.0) / tf.maximum(n_hist, 1.0)
    ones = tf.ones_like(tower)
    idle = tf.maximum(context[:, 1:2], 0.0)
    age_first = stats[..., ITEM_STATS.index("age_first")]
    new_since_visit = tf.math.log1p(tf.maximum(idle - tf.math.expm1(age_first), 0.0))
    h_pop = tf.gather(t["item_stats"][:, 0], tf.where(hist < 0, n, hist))
    history_pop = tf.reduce_sum(h_pop, 1, keepdims=True) / tf.maximum(n_hist, 1.0) * ones
    # segment lift: mean over the user's tokens that have a row, read at the candidates
    seg = tf.gather(t["seg_row"], user_tok)  # [B, U]
    has_seg = tf.cast(seg > 0, tf.float32)
    cells = seg[:, :, None] * (n + 1) + cand[:, None, :]  # [B, U, C]
    lifts = tf.gather(tf.reshape(t["seg_lift"], [-1]), cells) * has_seg[:, :, None]
    segment = tf.reduce_sum(lifts, 1) / tf.maximum(tf.reduce_sum(has_seg, 1, keepdims=True), 1.0)
    ctx = [context[:, :1] * ones, tf.math.log1p(n_hist) * ones, tf.math.log1p(idle) * ones]
    cols = [tower, *knn, *sess, *tf.unstack(stats, axis=-1), affinity, new_since_visit,
            history_pop, segment, *ctx]
    if "ease_idx" in t:  # over the last H items, as the kNN feature
        cols.append(summed(t["ease_idx"], t["ease_sim"], valid))
    if "sage_item_vectors" in t:
        q_sage = sage_query(t, hist, user_tok)
        cols.append(tf.reduce_sum(tf.gather(t["sage_item_vectors"], cand) * q_sage[:, None, :],
                                  -1))
    return tf.stack(cols, -1)


def sage_query(t: dict, hist, user_tok):
    """GraphSAGE's query [B, d] (models.graphsage.GraphSAGEModel.user_vectors in TF)."""
    import tensorflow as tf

    rows = tf.maximum(hist + 1, 0)  # -1 -> the zero row
    valid = tf.cast(hist >= 0, tf.float32)[..., None]
    n = tf.maximum(tf.reduce_sum(valid, 1), 1e-6)
    mean_x = tf.reduce_sum(tf.gather(t["sage_x_item"], rows), 1) / n
    mean_h1 = tf.reduce_sum(tf.gather(t["sage_h1_item"], rows), 1) / n
    m = tf.cast(user_tok > 0, tf.float32)[..., None]
    tok = tf.reduce_sum(tf.gather(t["sage_user_tok"], user_tok) * m, 1) / tf.maximum(
        tf.reduce_sum(m, 1), 1e-6)
    h1 = tf.nn.relu(tf.matmul(t["sage_user_x0"][None, :] + tok, t["sage_u1_self"])
                    + tf.matmul(mean_x, t["sage_u1_neigh"]) + t["sage_u1_b"])
    out = tf.matmul(h1, t["sage_u2_self"]) + tf.matmul(mean_h1, t["sage_u2_neigh"]) \
        + t["sage_u2_b"]
    return out / tf.maximum(tf.norm(out, axis=1, keepdims=True), 1e-12)


def graph_tables(tables: FeatureTables, tower, sage=None) -> dict:
    """TensorFlow constants of the tables, the tower's history table and its user tower (a
    Keras layer), as `features` reads them; with `sage` (models.served_sage) GraphSAGE's
    query weights and item tables (`sage_<name>`; the item tables with a zero row first for
    the query's pads, `sage_item_vectors` with one last for the candidates')."""
    import numpy as np
    import tensorflow as tf

    from models.served_sage import ITEM_TABLES, sage_arrays

    net = tower.network()
    t = {"user_tower": net.users, "history_table": tf.constant(net.history_table())}
    for name in ("item_vectors", "knn_idx", "knn_sim", "sess_idx", "sess_sim", "item_stats",
                 "seg_row", "seg_lift"):
        t[name] = tf.constant(getattr(tables, name))
    t["item_tokens"] = tf.constant(tables.item_tokens)
    t["n_tokens"] = tf.constant(tower.data.item_enc.size, tf.int32)
    if tables.ease_idx is not None:
        t["ease_idx"], t["ease_sim"] = tf.constant(tables.ease_idx), tf.constant(tables.ease_sim)
    if sage is not None:
        for k, v in sage_arrays(sage).items():
            v = np.asarray(v, np.float32)
            if k in ITEM_TABLES:
                zero = np.zeros_like(v[:1])
                v = np.vstack([v, zero] if k == "item_vectors" else [zero, v])
            t[f"sage_{k}"] = tf.constant(v)
    return t
