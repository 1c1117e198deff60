"""The ranking features in TensorFlow: the graph the ranker SavedModel carries, and the
reference models.features' NumPy gathers are checked against (see models.ranker for what
each feature means).

    graph_tables(tables, tower) -> t     the FeatureTables as constants, the tower's history
                                         table and its user tower (a Keras layer)
    features(t, hist, user_tok, cand, context, recent) -> [B, C, len(FEATURES)]
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
        [B, C, len(FEATURES)] float32.
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
    return tf.stack(cols, -1)


def graph_tables(tables: FeatureTables, tower) -> dict:
    """TensorFlow constants of the tables, the tower's history table and its user tower (a
    Keras layer), as `features` reads them."""
    import tensorflow as tf

    net = tower.network()
    t = {"user_tower": net.users, "history_table": tf.constant(net.history_table())}
    for name in ("item_vectors", "knn_idx", "knn_sim", "sess_idx", "sess_sim", "item_stats",
                 "seg_row", "seg_lift"):
        t[name] = tf.constant(getattr(tables, name))
    t["item_tokens"] = tf.constant(tables.item_tokens)
    t["n_tokens"] = tf.constant(tower.data.item_enc.size, tf.int32)
    return t
