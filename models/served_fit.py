"""Training the served pipeline (`fit_served`) and its evaluation adapter (`ServedRecommender`).

`fit_served` trains on the train side only. It cuts temporal windows at `config.windows`
(quantiles of the train events, e.g. 0.7 / 0.8 / 0.9) and walks them oldest first: the
two-tower model is fitted once on the first window's past and continued on each later
window's newer events (`TwoTowerConfig.warm_start_epochs`, `warm_start_recent`), and each
window's model ranks its cases (the users active after its cutoff) to give the ranker its
training lists. The tower is then continued on the rest of the train side, and the ranker
trained on every window's lists.

The last window doubles as the nightly quality gate's validation window: a ranker trained on
the earlier windows' lists only, with the last window's tower and tables (fitted on the
events before its cutoff), ranks all of the last window's cases; their NDCG@10 beside
popularity's (fitted on the same past) is `ServedModel.validation`. Nothing after the last
cutoff reaches that figure: the earlier windows' cases take their truth from the events
before it. One extra small ranker fit, no second pipeline.

    recsys evaluate --dataset movielens:../shared/datasets/ml-100k --models served
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from models.baselines import Popularity
from models.evaluation import Cases, Split, build_cases, evaluate_model, temporal_split
from models.features import one_blas_thread
from models.finite import require_finite
from models.histories import history_matrix
from models.ranker import RankingData, ndcg_per_list, score
from models.ranker_fit import train_ranker
from models.rules import fuse
from models.served import ServedConfig, ServedModel, fusion_column
from models.served_guard import decide, source_ndcg, source_scores
from models.tower_data import TowerData, prepare
from models.tower_fit import fit_tower
from models.two_tower import TwoTowerModel

log = logging.getLogger(__name__)


def windows(train: pd.DataFrame, quantiles, seed: int = 0) -> list[Split]:
    """The ranker's windows, oldest first: the events before each quantile of `train`, and
    after it those before the last window's cutoff (the last window: all after its own), so
    that nothing of the last window reaches an earlier one.

    When the timestamps cannot cut them (a window with no event before or none after its
    cutoff: constant timestamps, or too few distinct ones), `order_windows` cuts them by each
    user's event order instead, and the log says so. A window whose cases are almost all
    fresh gets warm cases held out without time (`with_warm_cases`)."""
    splits = [temporal_split(train, q) for q in sorted(set(quantiles))]
    if any(s.train.empty or s.test.empty for s in splits):
        log.warning("served: the train timestamps cannot cut the windows %s (%d distinct "
                    "timestamps); cutting them by each user's event order instead (held-out "
                    "users and each user's last events)", sorted(set(quantiles)),
                    train["timestamp"].nunique())
        return order_windows(train, quantiles, seed)
    end = splits[-1].cutoff
    return [with_warm_cases(s, seed) for s in
            [Split(s.train, s.test[s.test["timestamp"] < end].reset_index(drop=True), s.cutoff)
             for s in splits[:-1]] + splits[-1:]]


def with_warm_cases(split: Split, seed: int = 0, min_share: float = 0.1,
                    share: float = 0.2) -> Split:
    """`split` (a window), or, when under a share `min_share` of its cases are warm (few users
    have events on both sides of the cutoff, e.g. each user's timestamps tied at their first
    instant), `split` with warm cases made without time: each user of
    its train side with at least two distinct items and no test event has a seeded random
    share `share` of those items (at least one) moved, all their events, to the test side.
    So the tower and tables of that window never see that truth, and the guard
    (models.served_guard) can check the warm segment; the log says so."""
    cases = build_cases(split)
    n_warm, n_all = len(cases.warm), len(cases.warm) + len(cases.fresh)
    if n_warm >= min_share * n_all:
        return split
    train = split.train
    pairs = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    pairs = pairs[~pairs["user_id"].isin(set(split.test["user_id"].astype(str)))]
    pairs = pairs.sample(frac=1.0, random_state=seed)  # a seeded order within each user
    rank = pairs.groupby("user_id").cumcount().to_numpy()
    count = pairs.groupby("user_id")["item_id"].transform("size").to_numpy()
    held = pairs[(count >= 2) & (rank < np.maximum(1, np.floor(share * count)))]
    key = train["user_id"].astype(str) + "\x00" + train["item_id"].astype(str)
    out = key.isin(set(held["user_id"] + "\x00" + held["item_id"]))
    log.warning("served: a window has %d warm cases of %d; holding out %d items of "
                "%d users' train events (seeded, without time) as warm cases", n_warm, n_all,
                len(held), held["user_id"].nunique())
    return Split(train[~out.to_numpy()].reset_index(drop=True),
                 pd.concat([split.test, train[out.to_numpy()]], ignore_index=True),
                 split.cutoff)


def order_windows(train: pd.DataFrame, quantiles, seed: int = 0) -> list[Split]:
    """Windows without usable time: each event gets the pseudo-time max(p, r_u), p its
    position in its user's events (stable on timestamp, so the input's order breaks ties)
    over the user's count, r_u a seeded uniform draw per user; window q trains on the events
    of pseudo-time < q. So a share 1 - q of the users are held out whole (fresh cases, their
    first events as history) and the others keep their first share q of events (warm cases,
    the rest as truth); as with time, an earlier window's test side holds only events before
    the last window's cutoff. Every split's cutoff is the last timestamp."""
    df = train.astype({"user_id": str, "item_id": str}).reset_index(drop=True)
    order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
    df = df.iloc[order].reset_index(drop=True)
    users, _ = pd.factorize(df["user_id"])
    pos = df.groupby(users).cumcount().to_numpy() / np.bincount(users)[users]
    r_u = np.random.default_rng(seed).random(users.max(initial=-1) + 1)
    own = np.lexsort((pos, users))  # each user's events in their own order
    df, tau = df.iloc[own].reset_index(drop=True), np.maximum(pos, r_u[users])[own]
    qs, cutoff = sorted(set(quantiles)), float(df["timestamp"].max())
    return [Split(df[tau < q].reset_index(drop=True),
                  df[(tau >= q) & (tau < qs[-1] if q < qs[-1] else True)].reset_index(drop=True),
                  cutoff) for q in qs]


def latest(cases: Cases, n: int) -> tuple[int, int]:
    """How many of the latest warm and fresh cases to keep for at most `n` in all (the same
    share of each)."""
    total = len(cases.warm) + len(cases.fresh)
    if total <= n:
        return len(cases.warm), len(cases.fresh)
    return int(len(cases.warm) * n / total), int(len(cases.fresh) * n / total)


def ranking_data(model: ServedModel, cases: Cases) -> RankingData:
    """The ranker's training lists of evaluation-like cases: each case's candidates from
    `model`, their features and labels (in the case's truth), warm cases then fresh. Each
    list's last `RankerConfig.out_of_pool` columns are items from outside its pool
    (`out_of_pool`); `pool_only` drops them."""
    step, rng = model.step(), np.random.default_rng(model.config.ranker.seed)
    with one_blas_thread():
        return RankingData.concat([
            _ranking_part(model, group[lo:lo + step], fresh, rng)
            for group, fresh in ((cases.warm, False), (cases.fresh, True))
            for lo in range(0, len(group), step)])


def out_of_pool(model: ServedModel, cand: np.ndarray, histories: list[np.ndarray],
                rng: np.random.Generator, truth: list[np.ndarray] | None = None) -> np.ndarray:
    """[B, T + n] item indices outside each row's candidates `cand` [B, C] and history,
    distinct within a row (-1 pads when too few are left): up to T = `out_of_pool_truth`
    items of the row's `truth` (indices), then n = `out_of_pool` sampled ones, a share
    `out_of_pool_popular` in proportion to the items' train events + 1, the rest uniformly."""
    rc, n_items = model.config.ranker, len(model.tower.data.items)
    n, t = rc.out_of_pool, rc.out_of_pool_truth if truth is not None else 0
    out = np.full((len(cand), t + n), -1, np.int64)
    if n + t == 0:
        return out
    p = np.expm1(model.tables.item_stats[:-1, 0].astype(np.float64)) + 1.0
    n_pop = int(round(n * rc.out_of_pool_popular))
    for b, (row, h) in enumerate(zip(cand, histories, strict=True)):
        if t:
            missed = truth[b][(truth[b] >= 0) & ~np.isin(truth[b], row) & ~np.isin(truth[b], h)]
            missed = rng.permutation(np.unique(missed))[:t]
            out[b, :len(missed)] = missed
            row = np.concatenate([row, missed])
        draw = np.concatenate([rng.choice(n_items, 4 * n_pop + 8, p=p / p.sum()),
                               rng.integers(0, n_items, 4 * (n - n_pop) + 8)])
        pop_part, uni_part = draw[:4 * n_pop + 8], draw[4 * n_pop + 8:]
        picked: list[int] = []
        for part, want in ((pop_part, n_pop), (uni_part, n)):
            ok = part[~np.isin(part, row) & ~np.isin(part, h)]
            for i in pd.unique(ok):
                if len(picked) >= want:
                    break
                if i not in picked:
                    picked.append(int(i))
        out[b, t:t + len(picked)] = picked
    return out


def pool_only(data: RankingData, n_pool: int) -> RankingData:
    """`data`'s lists without their out-of-pool columns (the first `n_pool` columns)."""
    return RankingData(data.X[:, :n_pool], data.y[:, :n_pool], data.mask[:, :n_pool],
                       data.n_truth)


def _ranking_part(model: ServedModel, chunk: list, fresh: bool,
                  rng: np.random.Generator) -> RankingData:
    ids = [c.user_id for c in chunk]
    histories = model.history_indices([list(c.history) for c in chunk])
    hist = history_matrix(histories, model.config.tower.history)
    utok = model.tower.data.user_matrix(ids)
    query = model.get_runtime().user_embedding(hist, utok)
    sums = model.neighbour_sums(histories)
    sage_q = model.sage_query(hist, utok)
    cand = model.candidates(query, histories, sums, sage_q)
    truth = [model.tower.data.items.lookup(list(c.truth)) for c in chunk]
    cand = np.concatenate([cand, out_of_pool(model, cand, histories, rng, truth)], 1)
    X = model.features(hist, utok, cand, model.context(ids, fresh), query, sums, sage_q)
    y = np.stack([np.isin(row, t[t >= 0]) for row, t in zip(cand, truth, strict=True)])
    return RankingData(X, y & (cand >= 0), cand >= 0, np.array([len(c.truth) for c in chunk]))


def _tail(data: RankingData | None, n: int) -> RankingData | None:
    """The last `n` lists of `data` (None when there are none)."""
    if data is None or n == 0:
        return None
    return RankingData(data.X[-n:], data.y[-n:], data.mask[-n:], data.n_truth[-n:])


def _segments(model: ServedModel, cases: Cases) -> tuple[RankingData | None, ...]:
    """Ranking data of the warm and of the fresh cases apart (None for an empty segment)."""
    return tuple(ranking_data(model, Cases(w, f)) if w or f else None
                 for w, f in ((cases.warm, []), ([], cases.fresh)))


def _tower(data: TowerData, config: ServedConfig, cases: Cases,
           start: TwoTowerModel | None) -> TwoTowerModel:
    """One window's tower: continued from `start` when warm starts are on, else fitted from
    scratch (for `tower_epochs` epochs, or picked on `cases` when it is None)."""
    tc = config.tower
    t = time.perf_counter()
    if start is not None and tc.warm_start_epochs is not None:
        tower = fit_tower(data, tc, tc.warm_start_epochs, start=start)[0]
    elif config.tower_epochs is None and start is None:
        tower, scores = fit_tower(data, tc, tc.epochs, cases)
        log.info("served: tower epochs %d (validation NDCG@10 %s)", tower.epochs,
                 np.round(scores, 4).tolist())
    else:
        tower = fit_tower(data, tc, config.tower_epochs or start.epochs)[0]
    log.info("served: tower fitted on %d users' events in %.1f s", len(data.lengths),
             time.perf_counter() - t)
    return tower


def _with_sage(model: ServedModel, data: TowerData, train: pd.DataFrame,
               event_weights: Mapping[str, float] | None) -> ServedModel:
    """`model` with GraphSAGE fitted on the tower's inputs `data` when its config asks."""
    c = model.config
    if c.graphsage is None:
        return model
    from models.served_sage import fit_sage

    return model.with_sage(fit_sage(data, train, c.graphsage, c.graphsage_epochs,
                                    event_weights))


def fit_served(train: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None,
               config: ServedConfig = ServedConfig(),
               event_weights: Mapping[str, float] | None = None) -> ServedModel:
    """Trains the served pipeline on the train side only (see the module docstring).

    Args:
        event_weights: event type -> weight (the run's --event_weights; None: the schema's
            defaults), for the ranker's mean_weight feature and GraphSAGE's edges.

    Returns:
        The model; its `validation` is `validation`'s figure of the last window, or None.
    """
    quantiles = sorted(set(config.windows))
    splits = windows(train, quantiles)
    all_cases = [build_cases(s) for s in splits]
    if not any(c.warm or c.fresh for c in all_cases):
        raise ValueError(f"served: no ranker training case in the windows {quantiles} (no "
                         "user is active after a cutoff); train on more events or set "
                         "ServedConfig.windows to earlier quantiles")
    tower, parts = None, []
    for q in quantiles:  # each window's frames, cases and tables go once it is ranked
        split, cases = splits.pop(0), all_cases.pop(0)
        data = prepare(split.train, users, items, config.tower)
        tower = _tower(data, config, cases, tower)
        model = _with_sage(ServedModel.build(split.train, tower, items, config,
                                             event_weights=event_weights), data, split.train,
                           event_weights)
        del data
        t = time.perf_counter()
        w, f = latest(cases, config.max_cases)
        newest = Cases(cases.warm[len(cases.warm) - w:], cases.fresh[len(cases.fresh) - f:])
        if q < quantiles[-1]:
            parts += [p for p in _segments(model, newest) if p is not None]
        else:  # all of the last window's cases for the validation figure, if there is one
            warm, fresh = _segments(model, cases if parts else newest)
            sources = source_ndcg(model, cases) if parts else {}
        log.info("served: window %.2f: %d warm and %d fresh cases, ranked in %.1f s", q,
                 len(cases.warm), len(cases.fresh), time.perf_counter() - t)
        del model
    validation, fallback = validate(split, cases, [p for p in (warm, fresh) if p is not None],
                                    parts, config, sources)
    w, f = latest(cases, config.max_cases)
    ranker = train_ranker(parts + [p for p in (_tail(warm, w), _tail(fresh, f)) if p is not None],
                          config.ranker)
    del parts, warm, fresh  # the lists (~0.35 GB at MovieLens-1M size) before the final tables
    t = time.perf_counter()
    data = prepare(train, users, items, config.tower)
    tower = _tower(data, config, Cases([], []), tower)
    model = _with_sage(ServedModel.build(train, tower, items, config, ranker, event_weights),
                       data, train, event_weights)
    log.info("served: final tower and tables in %.1f s", time.perf_counter() - t)
    require_finite(model.float_arrays(), "served model", "the input's weights and timestamps "
                   "and the users and items tables")
    model.validation, model.fallback = validation, fallback
    return model


def validate(split: Split, cases: Cases, data: list[RankingData], earlier: list[RankingData],
             config: ServedConfig, sources: dict[str, np.ndarray] | None = None
             ) -> tuple[dict | None, dict[str, str]]:
    """The last window's honest figure: a ranker trained on the earlier windows' lists
    (`earlier`) ranks the last window's candidate lists (`data`, every case of `split`'s
    test side, warm then fresh); popularity is fitted on `split.train`. The lists are the
    served model's before the business rules' discovery slots (longtail_slots,
    new_item_slots) and the exposure re-rank (rerank_*), the ranker's scores fused with the
    fusion source's as served (ServedConfig.fusion_*). With `sources` (models.served_guard.
    source_ndcg of the same cases), the guard (models.served_guard.decide) compares the
    ranker with each source per segment.

    Returns:
        ({"window": cutoff quantile, "cases", "warm", "fresh", "ndcg@10",
        "popularity_ndcg@10", "guard": the guard's report}, or None when the window has no
        case or no earlier window has one (nothing to train that ranker on); the guard's
        fallback {segment: source}, empty when the ranker keeps every segment).
    """
    n_cases = len(cases.warm) + len(cases.fresh)
    if n_cases == 0 or not earlier:
        log.warning("served: no validation figure (%d cases in the last window, %d earlier "
                    "lists)", n_cases, sum(len(p.X) for p in earlier))
        return None, {}
    t = time.perf_counter()
    ranker = train_ranker(earlier, config.ranker)
    lists = pool_only(RankingData.concat(data), config.candidates)
    scores = np.where(lists.mask, score(ranker, lists.X), -np.inf)
    fresh = np.r_[np.zeros(len(cases.warm), bool), np.ones(len(cases.fresh), bool)]
    if config.fusing:  # as ServedModel.fused serves them
        scores = fuse(scores, fusion_column(lists.X, config),
                      np.where(fresh, config.fusion_fresh, config.fusion_warm), config.fusion_kind)
    per_case = ndcg_per_list(scores, lists)
    pop = evaluate_model(Popularity(), split, cases, n_resamples=1)["all"]["ndcg@10"]
    out = {"window": float(max(config.windows)), "cases": n_cases, "warm": len(cases.warm),
           "fresh": len(cases.fresh), "ndcg@10": round(float(per_case.mean()), 4),
           "popularity_ndcg@10": round(float(pop), 4)}
    fallback: dict[str, str] = {}
    if sources:
        fallback, out["guard"] = decide(per_case, sources, fresh, seed=config.ranker.seed)
        if fallback:
            log.warning("served: the guard serves %s instead of the ranker (validation "
                        "NDCG@10 %s)", fallback, out["guard"])
    log.info("served: validation %s in %.1f s", out, time.perf_counter() - t)
    return out, fallback


class ServedRecommender:
    """The `served` model of `recsys evaluate`: exactly ServedModel.recommend_indices.

    Args:
        config: the served pipeline's.
        pool_first: `score` ranks the items of the user's candidate pool above every other
            item (as the served lists do: an item outside the pool is never shown), each tier
            by its score; False scores every item alike.
    """

    name = "served"

    def __init__(self, config: ServedConfig = ServedConfig(), pool_first: bool = True):
        self.config = config
        self.pool_first = pool_first

    def fit(self, train, users=None, items=None) -> ServedRecommender:
        self.model = fit_served(train, users, items, self.config)
        return self

    def recommend(self, user_ids, histories, k, fresh):
        m = self.model
        I, _ = m.recommend_indices(m.history_indices(histories),
                                   m.tower.data.user_matrix(list(user_ids)),
                                   m.context(list(user_ids), fresh), k)
        ids = m.tower.data.items.ids
        return [[str(ids[i]) for i in row if i >= 0] for row in I]

    def candidate_pools(self, cases, ids: bool = False) -> dict[str, list[np.ndarray]]:
        """The candidate pool of each case and what each source put in it (the pool recall
        of issue 22: share of a case's truth found in `pool`, or in one source's list).

        Args:
            cases: objects with `user_id` and `history` (item ids, oldest first), e.g. the
                `warm` or `fresh` list of models.evaluation.Cases (their truth is not read).
            ids: return item ids (self.model.tower.data.items.ids) instead of indices.

        Returns:
            {source: per case a [N] int64 array of item indices (history excluded, -1 pads
            dropped), best first}: the sources of ServedModel.candidate_sources ("tower",
            "graphsage" with GraphSAGE, "knn", "ease" with EASE, "session", "popular"), each
            its whole top-N, and "pool": the ServedConfig.candidates items the ranker scores
            (the sources' union in that order, repeats dropped, the first C kept; an item of
            a source's list may miss it). With ids=True, arrays of item id strings.
        """
        from models.histories import history_matrix

        m, cases = self.model, list(cases)
        out: dict[str, list[np.ndarray]] = {}
        step = m.step()
        for lo in range(0, len(cases), step):
            chunk = cases[lo:lo + step]
            users = [str(c.user_id) for c in chunk]
            histories = m.history_indices([list(c.history) for c in chunk])
            hist = history_matrix(histories, m.config.tower.history)
            utok = m.tower.data.user_matrix(users)
            with one_blas_thread():
                query = m.get_runtime().user_embedding(hist, utok)
                sums = m.neighbour_sums(histories)
                sage_q = m.sage_query(hist, utok)
                sources = m.candidate_sources(query, histories, sums, sage_q)
                sources["pool"] = m.candidates(query, histories, sums, sage_q)
            for name, rows in sources.items():
                out.setdefault(name, []).extend(row[row >= 0] for row in rows)
        if ids:
            vocab = np.asarray(m.tower.data.items.ids).astype(str)
            out = {k: [vocab[r] for r in v] for k, v in out.items()}
        return out

    @property
    def item_ids(self) -> np.ndarray:
        """[n_items] ids of the model's item indices (those of `candidate_pools`)."""
        return self.model.tower.data.items.ids

    def score(self, user_ids, histories, candidates, fresh):
        """The ranker's scores of given items (models.evaluation_loo.ScoringRecommender): the
        features of `recommend`'s ranking at these items instead of the retrieved ones.
        A segment that the guard (models.served_guard) sends to a source is scored by that
        source (`source_scores`); the others' ranker scores are fused as the lists' are
        (ServedConfig.fusion_*, with the statistics of the user's candidate pool, which the
        ranker scores too). With `pool_first`, the items outside
        the user's candidate pool (ServedModel.candidates) are put below those inside it
        (their score minus 1e6).
        Returns: [B, C] float64, -inf for an item the model does not know."""
        m = self.model
        cand = np.stack([m.tower.data.items.lookup(c) for c in candidates])
        hists, users = m.history_indices(histories), list(user_ids)
        parts, step = [], m.step()
        source = m.fallback.get("fresh" if fresh else "warm")
        with one_blas_thread():
            for lo in range(0, len(hists), step):
                h, u, c = hists[lo:lo + step], users[lo:lo + step], cand[lo:lo + step]
                hist = history_matrix(h, m.config.tower.history)
                utok = m.tower.data.user_matrix(u)
                query = m.get_runtime().user_embedding(hist, utok)
                sums, sage_q = m.neighbour_sums(h), m.sage_query(hist, utok)
                ctx = m.context(u, fresh)
                pool = (m.candidates(query, h, sums, sage_q)
                        if self.pool_first or (m.config.fusing and not source) else None)
                if source:
                    got = source_scores(m, source, query, sums, sage_q, c)
                else:  # fused with the pool's statistics, as the lists are
                    got = m.rank(hist, utok, c, ctx, query, sums, sage_q)
                    if m.config.fusing:
                        ranked = m.rank(hist, utok, pool, ctx, query, sums, sage_q)
                        got = m.fused(c, got, ctx, query, sums, sage_q, pool=(pool, ranked))
                got = got.astype(np.float64)
                if self.pool_first:
                    inside = np.stack([np.isin(r, p[p >= 0]) for r, p in zip(c, pool,
                                                                            strict=True)])
                    got = np.where(inside, got, got - 1e6)
                parts.append(got)
        return np.concatenate(parts) if parts else np.zeros(cand.shape)
