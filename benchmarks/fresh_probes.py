"""Probes of served's fresh-user and long-tail gaps (issue 22) that did not become defaults:
the figures of docs/EVALUATION_RESULTS.md, "Probes that moved nothing", rerunnable. Only the
train side of the protocol's split is read (as benchmarks.validate_served reads it).

    python -m benchmarks.fresh_probes --dataset movielens:../shared/datasets/ml-100k \\
        [--probes ranker,neighbours,tail] [--json F]

- ranker: on each fit's own validation lists (fit_served on the train side cut at each
  --starts quantile; a ranker trained on the earlier windows' lists ranks the last window's
  pools, scores fused as served fuses them: models.served_fit.validate's figure), served's
  MLP ensemble against the same MLP with the fresh lists counted twice or four times, a
  fresh-only MLP for the fresh cases, and, when LightGBM is installed (`pip install
  lightgbm`; not a dependency of the project), gradient-boosted trees on the same features
  (LambdaMART and XE-NDCG objectives, two sizes).
- neighbours: on the validation origins of benchmarks.validate_served, item-kNN (cosine) and
  served's kNN table read alone (the asymmetric cosine co / (n_i^0.7 n_j^0.3)) against
  session-based user kNN (the train users whose items overlap a case's history most, their
  items summed by that overlap / (|history|^0.5 |user|^beta)) and RP3beta (the item-user-item
  random walk's transition probabilities, each raised to alpha, the target item's divided by
  its train users^beta).
- tail: served's exposure re-rank with the close-enough long-tail item drawn at random
  (Gumbel noise on the z-scored tower affinity) instead of the most affine one, and with
  more slots / a wider margin, on the same origins (one fit per origin, re-scored).
Each prints one line per variant and origin, then the means (NDCG@10 warm / fresh / all;
tail: and long-tail coverage@10, coverage@10).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from unittest import mock

import numpy as np
import scipy.sparse as sp

import models.served as served_module
import models.served_fit as served_fit
from benchmarks.output import write_json
from benchmarks.validate_served import ORIGINS, window
from models.baselines import ItemKNN, ScoredRecommender, id_multi_hot
from models.evaluation import (
    build_cases,
    evaluate_model,
    recommend_cases,
    score_lists,
    temporal_split,
)
from models.ranker import FEATURES, RankingData, ndcg_per_list, score
from models.ranker_fit import train_ranker
from models.rules import fuse
from models.served import ServedConfig, fusion_column
from models.served_fit import ServedRecommender, pool_only

log = logging.getLogger(__name__)


def _lists_of_fit(train, dataset, config: ServedConfig):
    """fit_served on `train`, returning what its validation ranked: (n warm cases, the last
    window's lists, the earlier windows' training lists), or None without a validation."""
    seen = []
    real = served_fit.validate

    def record(split, cases, data, earlier, cfg, sources=None):
        seen.append((len(cases.warm), data, earlier))
        return real(split, cases, data, earlier, cfg, sources)

    with mock.patch.object(served_fit, "validate", record):
        served_fit.fit_served(train, dataset.users, dataset.items, config)
    n_warm, data, earlier = seen[-1]
    return (n_warm, data, earlier) if data and earlier else None


def _subset(d: RankingData, rows: np.ndarray) -> RankingData:
    return RankingData(d.X[rows], d.y[rows], d.mask[rows], d.n_truth[rows])


def _gbdt(earlier: RankingData, X: np.ndarray, mask: np.ndarray, params: dict, rounds: int):
    import lightgbm

    m = earlier.mask
    booster = lightgbm.train(
        {"verbose": -1, "num_threads": 2, "seed": 0, "feature_fraction": 0.8,
         "bagging_fraction": 0.8, "bagging_freq": 1, **params},
        lightgbm.Dataset(earlier.X[m], earlier.y[m].astype(int), group=m.sum(1)[m.any(1)]),
        num_boost_round=rounds)
    out = np.zeros(mask.shape, np.float32)
    out[mask] = booster.predict(X[mask])
    return out


GBDT = {
    "gbdt lambdarank 31 leaves": ({"objective": "lambdarank", "learning_rate": 0.05,
                                   "num_leaves": 31, "min_data_in_leaf": 100,
                                   "lambdarank_truncation_level": 20}, 300),
    "gbdt lambdarank 7 leaves": ({"objective": "lambdarank", "learning_rate": 0.03,
                                  "num_leaves": 7, "min_data_in_leaf": 300, "lambda_l2": 10.0,
                                  "lambdarank_truncation_level": 40}, 150),
    "gbdt xendcg 31 leaves": ({"objective": "rank_xendcg", "learning_rate": 0.05,
                               "num_leaves": 31, "min_data_in_leaf": 100}, 300),
    "gbdt xendcg 7 leaves": ({"objective": "rank_xendcg", "learning_rate": 0.03,
                              "num_leaves": 7, "min_data_in_leaf": 300, "lambda_l2": 10.0}, 150),
}


def ranker_probe(dataset, starts: Sequence[float], config: ServedConfig = ServedConfig()
                 ) -> dict[str, list[tuple[float, float, float]]]:
    """{variant: [(warm, fresh, all NDCG@10) per start]} on each fit's validation lists."""
    try:
        import lightgbm  # noqa: F401
        gbdt = GBDT
    except ImportError:
        log.warning("ranker probe: LightGBM is not installed, the trees are left out")
        gbdt = {}
    train = temporal_split(dataset.interactions).train
    fresh_col = FEATURES.index("fresh")
    out: dict[str, list] = {}
    for start in starts:
        got = _lists_of_fit(train if start >= 1 else window(train, start, 1.0).train,
                            dataset, config)
        if got is None:
            continue
        n_warm, data, earlier = got
        lists = pool_only(RankingData.concat(data), config.candidates)
        fresh = np.arange(len(lists.X)) >= n_warm
        past = RankingData.concat(earlier)
        past_fresh = _subset(past, past.X[:, 0, fresh_col] > 0.5)
        mlp = score(train_ranker([past], config.ranker), lists.X)
        variants = {"mlp (served)": mlp}
        if len(past_fresh.X):
            fresh_only = score(train_ranker([past_fresh], config.ranker), lists.X)
            variants |= {
                "mlp, fresh lists x2": score(train_ranker([past, past_fresh], config.ranker),
                                             lists.X),
                "mlp, fresh lists x4": score(train_ranker([past] + [past_fresh] * 3,
                                                          config.ranker), lists.X),
                "mlp + fresh-only mlp": np.where(fresh[:, None], fresh_only, mlp)}
        variants |= {name: _gbdt(past, lists.X, lists.mask, *spec) for name, spec in gbdt.items()}
        source = fusion_column(lists.X, config)
        weight = np.where(fresh, config.fusion_fresh, config.fusion_warm)
        variants["fusion source alone"] = source
        for name, s in variants.items():
            fused = fuse(np.where(lists.mask, s, -np.inf), source, weight, config.fusion_kind)
            per = ndcg_per_list(fused, lists)
            row = (float(per[~fresh].mean()), float(per[fresh].mean()), float(per.mean()))
            out.setdefault(name, []).append(row)
            print(f"{start:>5} {name:>28}", " ".join(f"{x:.4f}" for x in row), flush=True)
    return out


class SessionKNN(ScoredRecommender):
    """User-based kNN over a case's history (session kNN): the k train users of largest
    overlap / (|history|^0.5 |user|^beta), their items summed by that similarity."""

    name = "sknn"
    config_class = dict

    def __init__(self, k: int = 300, beta: float = 0.5):
        self.k, self.beta = k, beta

    def fit(self, train, users=None, items=None) -> SessionKNN:
        self.user_items = self.fit_catalog(train)[0].astype(np.float32).tocsr()
        self.sizes = np.maximum(np.asarray(self.user_items.sum(1)).ravel(), 1)
        return self

    def scores(self, histories, fresh):
        h = sp.csr_matrix(id_multi_hot(self.catalog, histories)).astype(np.float32)
        sim = (h @ self.user_items.T).toarray()
        sim /= np.sqrt(np.maximum(np.asarray(h.sum(1)), 1)) * self.sizes[None, :] ** self.beta
        if self.k < sim.shape[1]:
            kth = -np.partition(-sim, self.k - 1, axis=1)[:, self.k - 1:self.k]
            sim = np.where(sim >= kth, sim, 0.0)
        return (sp.csr_matrix(sim) @ self.user_items).toarray()


def _origins(dataset, origins):
    train = temporal_split(dataset.interactions).train
    for start, end in origins:
        split = window(train, start, end)
        yield f"{start}:{end}", split, build_cases(split)


class ItemWalk(ScoredRecommender):
    """Item-item scores of a dense [items, items] table summed over the history: the
    asymmetric cosine co / (n_i^asym n_j^(1 - asym)) when `asym` is given (served's kNN
    table, models.ranker.neighbour_table), else RP3beta (P(i -> u)^alpha P(u -> j)^alpha
    summed over users, divided by n_j^beta). Dense: a probe for catalogues of a few thousand."""

    name = "item_walk"
    config_class = dict

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, asym: float | None = None):
        self.alpha, self.beta, self.asym = alpha, beta, asym

    def fit(self, train, users=None, items=None) -> ItemWalk:
        x = self.fit_catalog(train)[0].astype(np.float64).tocsr()
        per_user = np.maximum(np.asarray(x.sum(1)).ravel(), 1)
        per_item = np.maximum(np.asarray(x.sum(0)).ravel(), 1)
        if self.asym is not None:
            table = (x.T @ x).toarray() / (per_item[:, None] ** self.asym
                                            * per_item[None, :] ** (1 - self.asym))
        else:
            to_user = (sp.diags(1 / per_item) @ x.T).power(self.alpha)
            to_item = (sp.diags(1 / per_user) @ x).power(self.alpha)
            table = (to_user @ to_item).toarray() / per_item[None, :] ** self.beta
        np.fill_diagonal(table, 0.0)
        self.table = table
        return self

    def scores(self, histories, fresh):
        return id_multi_hot(self.catalog, histories) @ self.table


def neighbours_probe(dataset, origins=ORIGINS) -> dict[str, list[tuple[float, float, float]]]:
    """{model: [(warm, fresh, all NDCG@10) per origin]}: item-kNN, served's kNN table,
    session kNN and RP3beta."""
    models = {"item_knn": ItemKNN, "served's knn table (asym 0.7)": lambda: ItemWalk(asym=0.7),
              **{f"sknn k={k} beta={b}": (lambda k=k, b=b: SessionKNN(k, b))
                 for k in (100, 300) for b in (0.5, 0.8)},
              **{f"rp3beta alpha={a} beta={b}": (lambda a=a, b=b: ItemWalk(a, b))
                 for a in (0.5, 1.0) for b in (0.0, 0.3, 0.5)}}
    out: dict[str, list] = {}
    for origin, split, cases in _origins(dataset, origins):
        for name, make in models.items():
            m = evaluate_model(make(), split, cases, n_resamples=1)
            row = tuple(float(m[s]["ndcg@10"]) for s in ("warm", "fresh", "all"))
            out.setdefault(name, []).append(row)
            print(f"{origin:>8} {name:>30}", " ".join(f"{x:.4f}" for x in row), flush=True)
    return out


TAIL = ((0.0, 1, 1.0), (3.0, 1, 1.0), (100.0, 1, 1.0), (0.0, 0, 1.0), (0.0, 2, 1.0),
        (3.0, 2, 1.0), (0.0, 1, 1.5), (3.0, 1, 1.5))


def tail_probe(dataset, origins=ORIGINS, settings=TAIL) -> dict[str, list[tuple]]:
    """{"noise N slots S margin M": [(warm, fresh, all NDCG@10, long-tail cov., cov.)]}:
    the exposure re-rank's tail item drawn with Gumbel noise of scale N on its z-scored
    tower affinity (0: served's choice), S slots, margin M; one served fit per origin."""
    noise = {"scale": 0.0}
    real = served_module.rerank

    def noisy(I, S, log_pop, tail, beta=0.0, slots=0, margin=0.0, top=10, affinity=None,
              **kw):
        if noise["scale"] and affinity is not None:
            a = np.asarray(affinity, np.float64)
            a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-9)
            gumbel = -np.log(-np.log(np.random.default_rng(len(I)).random(a.shape)))
            affinity = (a + noise["scale"] * gumbel).astype(np.float32)
        return real(I, S, log_pop, tail, beta, slots, margin, top, affinity, **kw)

    out: dict[str, list] = {}
    with mock.patch.object(served_module, "rerank", noisy):
        for origin, split, cases in _origins(dataset, origins):
            model = ServedRecommender(ServedConfig())
            evaluate_model(model, split, cases, users=dataset.users, items=dataset.items,
                           n_resamples=1)
            for scale, slots, margin in settings:
                noise["scale"] = scale
                model.model.config = dataclasses.replace(model.config, rerank_slots=slots,
                                                         rerank_margin=margin)
                m = score_lists(cases, recommend_cases(model, cases.warm),
                                recommend_cases(model, cases.fresh), split.train, n_resamples=1)
                row = (*(float(m[s]["ndcg@10"]) for s in ("warm", "fresh", "all")),
                       float(m["longtail_coverage@10"]), float(m["coverage@10"]))
                name = f"noise {scale:g} slots {slots} margin {margin:g}"
                out.setdefault(name, []).append(row)
                print(f"{origin:>8} {name:>30}", " ".join(f"{x:.4f}" for x in row), flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--probes", default="ranker,neighbours,tail")
    parser.add_argument("--starts", default="1.0,0.9,0.8",
                        help="the ranker probe's train-side cuts (quantiles)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from infra.datasets import load_dataset

    names = args.probes.split(",")
    for name in names:
        if name not in ("ranker", "neighbours", "tail"):
            parser.error(f"--probes: {name!r} is not one of ranker, neighbours, tail")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    dataset = load_dataset(args.dataset)
    probes = {"ranker": lambda: ranker_probe(dataset, [float(s) for s in
                                                       args.starts.split(",")]),
              "neighbours": lambda: neighbours_probe(dataset), "tail": lambda: tail_probe(dataset)}
    report = {}
    for name in names:
        report[name] = probes[name]()
        print(f"{name}: means over the origins")
        for label, rows in report[name].items():
            print(f"  {label:>30}", " ".join(f"{x:.4f}" for x in np.mean(rows, 0)))
    write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
