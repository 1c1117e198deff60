"""The served model's guard: it never ships a ranking worse than one of its own inputs.

On the last validation window of models.served_fit (a ranker trained on the earlier
windows' lists ranks the last window's cases), each segment (warm, fresh) compares the
ranker's NDCG@10 with that of each candidate source's own order (ServedModel.
candidate_sources: tower, knn, session, popular; ease and graphsage when on), case by case.
When a source is ahead beyond noise (the lower end of the 95% bootstrap interval of the
per-case difference source - ranker is above 0), that segment's lists come from the best
such source (`ServedModel.fallback`, honoured by recommend_indices on both serving paths);
otherwise the ranker's. `decide` is also what models.tower_fit and models.mf use against
popularity.
"""

from __future__ import annotations

import logging

import numpy as np

from models.evaluation import Cases, ndcg_at_k
from models.features import one_blas_thread
from models.histories import history_matrix

log = logging.getLogger(__name__)
SEGMENTS = ("warm", "fresh")


def source_ndcg(model, cases: Cases) -> dict[str, np.ndarray]:
    """Per candidate source of `model` (a ServedModel), [n_cases] NDCG@10 of its own top 10
    for each case (warm then fresh, as models.served_fit.ranking_data orders them)."""
    ids = np.asarray(model.tower.data.items.ids).astype(str)
    out: dict[str, list[float]] = {}
    step = model.step()
    for group in (cases.warm, cases.fresh):
        for lo in range(0, len(group), step):
            chunk = group[lo:lo + step]
            histories = model.history_indices([list(c.history) for c in chunk])
            hist = history_matrix(histories, model.config.tower.history)
            utok = model.tower.data.user_matrix([c.user_id for c in chunk])
            with one_blas_thread():
                query = model.get_runtime().user_embedding(hist, utok)
                sage_q = model.sage_query(hist, utok)
                sources = model.candidate_sources(query, histories, None, sage_q)
            for name, rows in sources.items():
                out.setdefault(name, []).extend(
                    ndcg_at_k([ids[i] for i in row[:10] if i >= 0],
                              frozenset(map(str, c.truth)))
                    for row, c in zip(rows, chunk, strict=True))
    return {name: np.asarray(v) for name, v in out.items()}


def decide(model_ndcg: np.ndarray, alternatives: dict[str, np.ndarray], fresh: np.ndarray,
           name: str = "ranker", n_resamples: int = 1000, seed: int = 0
           ) -> tuple[dict[str, str], dict]:
    """Per segment, the alternative to use instead of the model, if one beats it beyond noise.

    Args:
        model_ndcg: [N] per-case NDCG@10 of the model's ranking.
        alternatives: name -> [N] per-case NDCG@10 of each alternative, same cases.
        fresh: [N] bool, True for a fresh case.
        name: the model's name in the report.

    Returns:
        (fallback {segment: alternative} for the segments that fall back; report {segment:
        {"use", name, alternative: NDCG@10 ..., "best", "interval": the 95% bootstrap
        interval of best - model, "cases"}}).
    """
    from scipy.stats import bootstrap

    fallback, report = {}, {}
    for segment, rows in zip(SEGMENTS, (~fresh, fresh), strict=True):
        if rows.sum() < 2:
            continue
        means = {a: float(v[rows].mean()) for a, v in alternatives.items()}
        best = max(means, key=means.get)
        diff = alternatives[best][rows] - model_ndcg[rows]
        if np.ptp(diff) == 0:
            low = high = float(diff[0])
        else:
            ci = bootstrap((diff,), np.mean, n_resamples=n_resamples, method="percentile",
                           random_state=seed).confidence_interval
            low, high = float(ci.low), float(ci.high)
        use = best if low > 0 else name
        if use != name:
            fallback[segment] = best
        report[segment] = {"use": use, name: round(float(model_ndcg[rows].mean()), 4),
                           **{a: round(m, 4) for a, m in means.items()}, "best": best,
                           "interval": [round(low, 4), round(high, 4)],
                           "cases": int(rows.sum())}
        log.info("guard %s %s: %s", name, segment, report[segment])
    return fallback, report


def fallen_rows(model, context: np.ndarray) -> np.ndarray:
    """[B] bool: the rows (by their context's fresh flag) whose segment `model.fallback` sends
    to a candidate source the model has (the rows `guarded` rewrites)."""
    names = {"tower", "knn", "session", "popular"}  # candidate_sources', with its options:
    if model.sage is not None:
        names.add("graphsage")
    if "ease" in model.neighbour_names():
        names.add("ease")
    fresh = context[:, 0] > 0.5
    out = np.zeros(len(context), bool)
    for segment, source in model.fallback.items():
        if source in names:
            out |= fresh if segment == "fresh" else ~fresh
    return out


def guarded(model, cand: np.ndarray, scores: np.ndarray, context: np.ndarray,
            query: np.ndarray, histories: list[np.ndarray], sums: tuple | None,
            sage_q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The candidates [B, C] and ranker scores [B, C] of ServedModel._recommend_step, with
    the rows of a segment that `model.fallback` sends to a source led by that source's own
    list in its order (scores above every ranker score), then the rest of the candidates by
    the ranker's scores (so that a short source still fills the list). A source the model no
    longer has (a changed config) leaves the ranker's rows."""
    rows = np.flatnonzero(fallen_rows(model, context))
    if not len(rows):
        return cand, scores
    segment = np.where(context[:, 0] > 0.5, "fresh", "warm")
    sources = model.candidate_sources(query, histories, sums, sage_q)
    cand, scores = cand.copy(), scores.copy()
    width = cand.shape[1]
    for b in rows:
        src = sources[model.fallback[segment[b]]][b]
        src = src[src >= 0][:width]
        rest = (cand[b] >= 0) & ~np.isin(cand[b], src)
        top = float(scores[b, rest].max(initial=0.0))
        row = np.concatenate([src, cand[b, rest]])[:width]
        val = np.concatenate([top + np.arange(len(src), 0, -1), scores[b, rest]])[:width]
        cand[b], scores[b] = -1, -np.inf
        cand[b, :len(row)], scores[b, :len(row)] = row, val
    return cand, scores


def source_scores(model, name: str, query: np.ndarray, sums: tuple, sage_q, cand: np.ndarray
                  ) -> np.ndarray:
    """[B, C] float32 scores of the items `cand` [B, C] (-1 pads: -inf) by the candidate
    source `name` of `model`, in its own order: the tower's (and GraphSAGE's) inner product,
    the summed kNN / session / EASE similarities over the whole history, the popular source's
    7-day events (+ all events / 100). What ServedRecommender.score gives a segment that the
    guard sends to a source."""
    from models.ranker import ITEM_STATS

    c = np.where(cand < 0, len(model.tower.data.items), cand).astype(np.int64)
    rows = np.arange(len(cand))[:, None]
    tables = dict(zip(model.neighbour_names(), sums, strict=True))
    if name in ("tower", "graphsage"):
        vectors = model.tables.item_vectors if name == "tower" else np.vstack(
            [model.sage.item_vectors, np.zeros_like(model.sage.item_vectors[:1])])
        out = np.einsum("bcd,bd->bc", vectors[c], query if name == "tower" else sage_q)
    elif name == "popular":
        stats = model.tables.item_stats
        out = (stats[:, ITEM_STATS.index("pop_7d")] + stats[:, 0] / 100)[c]
    else:
        out = tables["sess" if name == "session" else name][rows, 2, c]
    return np.where(cand >= 0, out, -np.inf).astype(np.float32)


def popularity_guard(fitted, split, name: str) -> tuple[dict[str, str], dict]:
    """The guard of a single model (`mf`, `two_tower`) against popularity: `fitted`, a
    recommender fitted on `split.train`, and popularity fitted there too, each rank the
    cases of `split`'s test side (models.evaluation.build_cases); `decide` per segment.

    Returns:
        `decide`'s (fallback {segment: "popularity"}, report); both empty without cases.
    """
    from models.baselines import Popularity
    from models.evaluation import build_cases, recommend_cases

    cases = build_cases(split)
    every = cases.warm + cases.fresh
    if not every:
        return {}, {}
    popularity = Popularity().fit(split.train)

    def per_case(model) -> np.ndarray:
        lists = recommend_cases(model, cases.warm) + recommend_cases(model, cases.fresh)
        return np.array([ndcg_at_k(r, c.truth) for r, c in zip(lists, every, strict=True)])

    fresh = np.array([c.fresh for c in every])
    return decide(per_case(fitted), {"popularity": per_case(popularity)}, fresh, name=name)


class PopularityFallback:
    """What a recommender with a popularity guard serves: `recommend` and `score` of the
    segments in `fallback` come from popularity fitted on the whole train side."""

    def __init__(self, train, fallback: dict[str, str]):
        from models.baselines import Popularity

        self.fallback = fallback
        self.popularity = Popularity().fit(train) if fallback else None

    def handles(self, fresh: bool) -> bool:
        return ("fresh" if fresh else "warm") in self.fallback
