"""The ranking stage: features of (user, candidate item) pairs and an MLP that scores them.

Features come from constant per-item tables (`FeatureTables`) and the request (history, user
tokens, candidates, context). models.feature_graph defines them in TensorFlow (the ranker
SavedModel's graph, and the reference); models.features computes the same numbers as NumPy
gathers, which training, the nightly and the functions run:

    tower score (user tower · item vector) | item-kNN (asymmetric cosine) and session
    co-occurrence summed over the history and over its last items | log1p event counts (all,
    30, 14, 7, 1 days before `now`) | item age (days since first event, since last event, since
    release) | token affinity (share of the candidate's tokens in the history's) | segment
    lift (how much more the users sharing each of the user's feature tokens took the
    candidate than all users did) | context: fresh flag, log1p history length, log1p days
    since the user's last event.

The MLP ensemble (models.ranker_net.RankerNet, Keras) is trained on each case's candidate
list (by default each truth item's softmax against the list's other items outside the truth:
RankerConfig.loss) by models.ranker_fit.train_ranker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.schema import SECONDS_PER_DAY
from models.vocab import interaction_weights

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd
POP_WINDOWS = (30.0, 14.0, 7.0, 1.0)
ITEM_STATS = ("pop_all", *(f"pop_{int(d)}d" for d in POP_WINDOWS), "age_first", "age_last",
              "age_release", "mean_weight")
FEATURES = ("tower", "knn", "knn_recent", "session", "session_recent", *ITEM_STATS,
            "token_affinity", "new_since_visit", "history_pop", "segment_lift", "fresh",
            "history_len", "days_idle")
CONTEXT = ("fresh", "days_since_last_event")


@dataclass(frozen=True)
class RankerConfig:
    """Hyperparameters of the ranker.

    Attributes:
        hidden: widths of the MLP's hidden layers.
        neighbours: neighbours kept per item in the kNN and session tables (their size is
            items x neighbours; ~all of them on MovieLens 100K, fewer for big catalogs).
        knn_alpha: asymmetry of the kNN table's cosine (see `neighbour_table`); 0.7 beat the
            plain cosine (0.5) by +0.03 fresh NDCG@10 of the kNN score alone on three
            validation windows cut from the MovieLens 100K train side (0.488 vs 0.458;
            0.6: 0.478, 0.8: 0.488; warm unchanged), and lifts the kNN candidates alike.
        session_seconds: two events of a user this close in time co-occur in a session.
        epochs: passes over the training cases of each member (with `select_epochs`, the
            most). 6 sits on the plateau (epochs 3-8) of validation NDCG@10 of single
            members trained on the windows of three validation windows cut from the
            MovieLens 100K train side; picking the argmax of one member's noisy curve instead
            swung the ensemble's fresh NDCG@10 by 0.02 between seeds (0.466 vs 0.489), the
            fixed 6 by 0.0003.
        select_epochs: pick the epochs on the last part given to `train_ranker` (early
            stopping after `patience` epochs without a better NDCG@10) instead.
        patience: epochs without a better validation NDCG@10 before stopping.
        batch_size: cases per step.
        learning_rate: Adam learning rate.
        l2: L2 penalty on the MLP weights.
        members: MLPs averaged (seeds seed, seed + 1, ...); averaging steadies the ranking.
        seed: random seed.
        segment_min_users: a user feature token (a segment: gender=F, occupation=writer, ...)
            gets a lift row once this many train users carry it; rarer ones count as absent.
        segment_prior: strength (in users) of the shrinkage of a segment's item shares
            towards all users' (see `segment_lift`).
        segment_max_cells: cap on segments x items of the lift table (the largest segments
            are kept).
        out_of_pool: items from outside a case's candidate pool (and history) added to each
            training list (models.served_fit), labelled by the case's truth like the pool's,
            so that the ranker also sees, and scores sensibly, the items its retrieval would
            not give it (ServedRecommender.score ranks any item: leave-one-out with sampled
            negatives); 0 trains on the pool only. 8 (a few): on the LOO-S split of the
            MovieLens 100K train side (`python -m benchmarks.validate_loo --models "" --try
            "ranker.out_of_pool=0" --try "ranker.out_of_pool=32" --try
            "ranker.out_of_pool=64"`) served's HR@10 with every item scored alike was 0.441
            (0 and 8), 0.460 (32), 0.479 (64), with the pool first (the default) 0.543 /
            0.539 / 0.547 (0 / 32 / 64); on the three TH validation windows (`python -m
            benchmarks.validate_served --try ...`) all NDCG@10 0.3316 (0) / 0.3327 (8),
            0.3315 (0) / 0.3304 (32) / 0.3306 (64): no change beyond noise. 64 cost 0.005
            NDCG@10 with constant train timestamps (tests/evaluation/
            test_uninformative_time.py's data: 0.1302 against 0.1349 with 0 and 0.1348 with 8).
        out_of_pool_popular: share of them drawn in proportion to the items' train events
            (the rest uniformly over the catalogue).
        out_of_pool_truth: up to this many of the case's truth items that its pool missed,
            added to the list too (so that the ranker sees positives outside its pool, not
            only negatives); 0 adds none. Harmful: on the LOO-S split of the MovieLens 100K
            train side (`python -m benchmarks.validate_loo`) 2 of them beside 32 sampled
            items dropped served's HR@10 from 0.460 to 0.253 (the ranker learns that items
            unlike its pool's are the positives).
        loss: the training loss of a case's list: "listwise" (softmax cross-entropy against
            the truth spread evenly over its items) or "positive" (the mean over its truth
            items of each one's softmax against the list's non-truth items only, so that
            positives do not push each other down; a fresh case has ~30 truth items in its
            pool). "positive": on the validation windows of the MovieLens 100K train side
            (`python -m benchmarks.validate_served --try "ranker.loss='positive'"`, served
            NDCG@10 warm / fresh / all, means over the origins) 0.2046 / 0.4754 / 0.3257 ->
            0.2037 / 0.4869 / 0.3304 (seed 0, three origins), 0.1809 / 0.4719 / 0.3174 ->
            0.1878 / 0.4783 / 0.3240 (seed 1, four origins with 0.6:0.7); all higher on 5
            of the 7 origin-seed pairs (+0.006 on average, fresh +0.009, warm +0.004).
            With it, 10 epochs gave 0.1982 / 0.4940 / 0.3305 and 3 0.2057 / 0.4793 / 0.3281
            (6 kept).
    """

    hidden: tuple[int, ...] = (64, 32)
    neighbours: int = 1000
    knn_alpha: float = 0.7
    session_seconds: float = 3600.0
    epochs: int = 6
    select_epochs: bool = False
    patience: int = 5
    batch_size: int = 32
    learning_rate: float = 0.003
    l2: float = 1e-4
    members: int = 5
    seed: int = 0
    segment_min_users: int = 10
    segment_prior: float = 20.0
    segment_max_cells: int = 50_000_000
    out_of_pool: int = 8
    out_of_pool_popular: float = 0.5
    out_of_pool_truth: int = 0
    loss: str = "positive"

    def __post_init__(self) -> None:
        if self.loss not in ("listwise", "positive"):
            raise ValueError(f"RankerConfig.loss {self.loss!r}: \"listwise\" or \"positive\"")


def neighbour_table(rows: np.ndarray, cols: np.ndarray, n_items: int, m: int,
                    alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Top-m neighbours j of each item i by asymmetric cosine from (group, item) pairs:
    sim(i, j) = |G_i ∩ G_j| / (|G_i|^alpha |G_j|^(1 - alpha)), the cosine at alpha = 0.5.

    Args:
        rows: [n] group index (a user, or a user's session) per pair.
        cols: [n] item index per pair (distinct pairs).
        n_items: items; pads point at index n_items.
        m: neighbours per item.
        alpha: above 0.5 the neighbour's own popularity is damped less (i is the history
            item, j the candidate), which favours popular neighbours.

    Returns:
        (idx [n_items + 1, m] int32 with n_items as padding, sim [n_items + 1, m] float32).
    """
    import scipy.sparse as sp

    X = sp.csc_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                      shape=(int(rows.max(initial=0)) + 1, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    count = np.asarray(X.sum(axis=0)).ravel()
    idx = np.full((n_items + 1, m), n_items, np.int32)
    sim = np.zeros((n_items + 1, m), np.float32)
    k = min(m, n_items)
    block = max(1, int(2e7 // max(n_items, 1)))  # ~80 MB of dense co-occurrence at a time
    for lo in range(0, n_items, block):
        hi = min(lo + block, n_items)
        co = (X[:, lo:hi].T @ X).toarray()  # [b, n_items]
        co[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        cos = co / np.maximum(np.outer(count[lo:hi] ** alpha, count ** (1 - alpha)), 1e-12)
        top = np.argpartition(-cos, k - 1, axis=1)[:, :k] if k < n_items else np.broadcast_to(
            np.arange(n_items), (hi - lo, n_items))
        val = np.take_along_axis(cos, top, 1)
        order = np.lexsort((top, -val), axis=1)
        top, val = np.take_along_axis(top, order, 1), np.take_along_axis(val, order, 1)
        idx[lo:hi, :k] = np.where(val > 0, top, n_items)
        sim[lo:hi, :k] = np.where(val > 0, val, 0.0)
    return idx, sim


@dataclass
class FeatureTables:
    """Per-item tables of the ranking features, each with a zero padding row at index n.

    Attributes:
        item_vectors: [n + 1, d] two-tower item vectors.
        knn_idx, knn_sim: [n + 1, M] item-kNN neighbours (cosine over users).
        sess_idx, sess_sim: [n + 1, M] session co-occurrence neighbours.
        item_stats: [n + 1, 9] ITEM_STATS: pop_all, the pop windows (POP_WINDOWS: 30, 14, 7
            and 1 days), age_first, age_last, age_release, mean_weight.
        item_tokens: [n + 1, T] int32 feature tokens.
        seg_row: [user tokens] int32 row of each user feature token in seg_lift, 0 if none.
        seg_lift: [R + 1, n + 1] float32 segment lift per (segment, item); row 0 and
            column n are zeros.
        now: the timestamp the tables describe.
        ease_idx, ease_sim: [n + 1, M] EASE's item-item weights as a neighbour table
            (models.served_ease; may be negative), or None when served runs without EASE.
    """

    item_vectors: np.ndarray
    knn_idx: np.ndarray
    knn_sim: np.ndarray
    sess_idx: np.ndarray
    sess_sim: np.ndarray
    item_stats: np.ndarray
    item_tokens: np.ndarray
    seg_row: np.ndarray
    seg_lift: np.ndarray
    now: float
    ease_idx: np.ndarray | None = None
    ease_sim: np.ndarray | None = None


def build_tables(train: pd.DataFrame, tower, items: pd.DataFrame | None,
                 config: RankerConfig, event_weights: Mapping[str, float] | None = None
                 ) -> FeatureTables:
    """Tables from the train side and a trained TwoTowerModel (whose item universe they use).

    Args:
        train: interactions (user_id, item_id, timestamp).
        tower: the TwoTowerModel.
        items: the items table (`year` or `created_ts` give the release age) or None.
        config: the ranker's hyperparameters.
        event_weights: event type -> weight for the mean_weight feature (None: the schema's
            defaults; models.vocab.interaction_weights).
    """
    import pandas as pd

    vocab, n = tower.data.items, len(tower.data.items)
    now = tower.data.now
    i = vocab.lookup(train["item_id"])
    t = train["timestamp"].to_numpy(np.float64)
    u, user_ids = pd.factorize(train["user_id"].astype(str))
    keep = i >= 0
    i, t, u = i[keep], t[keep], u[keep]
    pairs = np.unique(np.stack([u, i], 1), axis=0)
    knn = neighbour_table(pairs[:, 0], pairs[:, 1], n, config.neighbours, config.knn_alpha)
    order = np.lexsort((t, u))
    gap = np.diff(t[order], prepend=-np.inf) > config.session_seconds
    session = np.cumsum(gap | (np.diff(u[order], prepend=-1) != 0))
    sess_pairs = np.unique(np.stack([session, i[order]], 1), axis=0)
    sess = neighbour_table(sess_pairs[:, 0], sess_pairs[:, 1], n, config.neighbours)
    stats = np.zeros((n + 1, len(ITEM_STATS)), np.float32)
    stats[:n, 0] = np.log1p(np.bincount(i, minlength=n))
    for c, days in enumerate(POP_WINDOWS, 1):
        recent = t >= now - days * SECONDS_PER_DAY
        stats[:n, c] = np.log1p(np.bincount(i[recent], minlength=n))
    first = pd.Series(t).groupby(i).min().reindex(range(n)).to_numpy()
    last = pd.Series(t).groupby(i).max().reindex(range(n)).to_numpy()
    release = _release_ts(vocab, items, now)
    first = np.where(np.isnan(first), np.nan_to_num(release, nan=now), first)
    w = len(POP_WINDOWS) + 1
    day = SECONDS_PER_DAY
    stats[:n, w] = np.log1p(np.maximum(now - first, 0) / day)
    stats[:n, w + 1] = np.log1p(np.maximum(now - np.nan_to_num(last, nan=now), 0) / day)
    stats[:n, w + 2] = np.log1p(np.maximum(now - np.nan_to_num(release, nan=first), 0) / day)
    weight = interaction_weights(train, event_weights)[keep]
    stats[:n, w + 3] = np.log1p(np.bincount(i, weight, n) / np.maximum(np.bincount(i, None, n), 1))
    tokens = np.vstack([tower.data.item_tokens, np.zeros_like(tower.data.item_tokens[:1])])
    vectors = np.vstack([tower.item_vectors, np.zeros_like(tower.item_vectors[:1])])
    seg = segment_lift(pairs[:, 0], pairs[:, 1], tower.data.user_matrix(list(user_ids)), n,
                       tower.data.user_enc.size, config)
    return FeatureTables(vectors, *knn, *sess, stats, tokens, *seg, now)


def segment_lift(rows: np.ndarray, cols: np.ndarray, user_tok: np.ndarray, n_items: int,
                 n_tokens: int, config: RankerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per user feature token s (a segment) and item j, log p(j | s) / p(j): how much more
    the segment's users took the item than all users did, with p(j | s) shrunk towards p(j)
    by `segment_prior` users so that small segments say little:

        p(j) = (users of j + 1) / (users + n_items)
        p(j | s) = (users of s who took j + prior p(j)) / (users of s + prior)

    Args:
        rows, cols: distinct (user index, item index) pairs.
        user_tok: [users, U] int32 feature tokens of each user index (0 pads).
        n_items: items; n_tokens: size of the user token vocabulary.

    Returns:
        (seg_row [n_tokens] int32, seg_lift [R + 1, n_items + 1] float32); see FeatureTables.
    """
    import scipy.sparse as sp

    n_users = len(user_tok)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    u_idx = np.repeat(np.arange(n_users), user_tok.shape[1])
    tok = user_tok.ravel()
    keep = tok > 0
    T = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (tok[keep], u_idx[keep])),
                      shape=(n_tokens, n_users))
    T.sum_duplicates()
    T.data[:] = 1.0
    size = np.asarray(T.sum(axis=1)).ravel()
    eligible = np.flatnonzero(size >= config.segment_min_users)
    cap = max(0, config.segment_max_cells // (n_items + 1))
    chosen = eligible[np.lexsort((eligible, -size[eligible]))][:cap]
    seg_row = np.zeros(n_tokens, np.int32)
    seg_row[chosen] = np.arange(1, len(chosen) + 1, dtype=np.int32)
    lift = np.zeros((len(chosen) + 1, n_items + 1), np.float32)
    if len(chosen) and n_users:
        p = (np.asarray(X.sum(axis=0)).ravel() + 1.0) / (n_users + n_items)
        counts = (T[chosen] @ X).toarray()
        m = config.segment_prior
        shares = (counts + m * p) / (size[chosen, None] + m)
        lift[1:, :n_items] = np.log(shares / p)
    return seg_row, lift


def _release_ts(vocab, items: pd.DataFrame | None, now: float) -> np.ndarray:
    """[n] release timestamps from `created_ts` or `year` (mid-year), NaN when unknown."""
    import pandas as pd

    out = np.full(len(vocab), np.nan)
    if items is None:
        return out
    by_id = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id")
    if "created_ts" in by_id:
        col = pd.to_numeric(by_id["created_ts"], errors="coerce")
    elif "year" in by_id:
        year = pd.to_numeric(by_id["year"], errors="coerce")
        col = (year - 1970 + 0.5) * 365.25 * SECONDS_PER_DAY
    else:
        return out
    out[:] = col.reindex(list(vocab.ids)).to_numpy(np.float64, na_value=np.nan)
    return np.minimum(out, now)


@dataclass
class RankingData:
    """Labelled candidate lists of evaluation-like cases.

    Attributes:
        X: [N, C, F] features; y: [N, C] 1 where the candidate is in the truth;
        mask: [N, C] True for real candidates; n_truth: [N] size of each case's truth.
    """

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    n_truth: np.ndarray

    @staticmethod
    def concat(parts: list[RankingData]) -> RankingData:
        return RankingData(*(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("X", "y", "mask", "n_truth")))


@dataclass
class RankerModel:
    """An ensemble of MLPs over standardised features; the score is their mean.

    Attributes:
        members: per MLP, [W0, b0, W1, b1, ..., W_out [h, 1], b_out [1]] (ReLU between),
            NumPy: what the bundle stores and models.runtimes reads.
        mean, std: [F] feature standardisation.
        epochs: epochs each member was trained.
    """

    members: list[list[np.ndarray]]
    mean: np.ndarray
    std: np.ndarray
    epochs: int

    def network(self):
        """A Keras ensemble of these weights (models.ranker_net.RankerNet; imports TensorFlow).
        Built anew on each call (a few small variables), so it follows `members`."""
        from models.ranker_net import RankerNet

        return RankerNet(self.members, self.mean, self.std)


# Candidate rows the ensemble scores at a time: its intermediates are [members, rows, hidden]
# floats (21 MB at 5 x 16,384 x 64). Unbounded, TensorFlow keeps what the largest call took:
# 512 MovieLens-1M lists at once (131,072 rows, 168 MB of them) left the nightly 0.45-0.8 GB
# larger for the rest of the run; the members' mean of a row does not depend on the chunk.
SCORE_ROWS = 1 << 14


def score(model: RankerModel, X: np.ndarray) -> np.ndarray:
    """Scores [N, C] of features X [N, C, F] (NumPy in, NumPy out), `SCORE_ROWS` at a time."""
    return net_scores(model.network(), X)


def net_scores(net, X: np.ndarray, rows: int = SCORE_ROWS) -> np.ndarray:
    """Scores [...] of features X [..., F] by a Keras RankerNet, `rows` rows at a time."""
    flat = X.reshape(-1, X.shape[-1])
    out = np.empty(len(flat), np.float32)
    for lo in range(0, len(flat), rows):
        out[lo:lo + rows] = net(flat[lo:lo + rows].astype(np.float32)).numpy()
    return out.reshape(X.shape[:-1])


def ndcg_of_scores(scores: np.ndarray, data: RankingData, k: int = 10) -> float:
    """Mean NDCG@k of candidate lists ranked by `scores` [N, C] (ties: earlier slot)."""
    return float(np.mean(ndcg_per_list(scores, data, k)))


def ndcg_per_list(scores: np.ndarray, data: RankingData, k: int = 10) -> np.ndarray:
    """[N] NDCG@k of each candidate list ranked by `scores` [N, C] (ties: earlier slot)."""
    s = np.where(data.mask, scores, -np.inf)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    gains = np.take_along_axis(data.y * data.mask, top, 1) / np.log2(np.arange(2, k + 2))
    ideal = np.array([np.sum(1 / np.log2(np.arange(2, min(k, t) + 2))) for t in data.n_truth])
    return gains.sum(1) / np.maximum(ideal, 1e-9)
