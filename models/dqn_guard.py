"""The DQN stage's deployment guard: per segment (warm, fresh), how far the stage may move
served's lists, chosen on train-side validation windows, never on the test split.

A safe policy improvement (the stage may act only where the data say, with confidence, that
it costs served's lists little). The evidence is pooled over several windows: the origins
a:b of served's windows (`ServedConfig.windows` 0.7, 0.8, 0.9 give 0.7:0.8, 0.8:0.9, 0.9:1,
as benchmarks.validate_served cuts them; the latest `DQNConfig.guard_windows`, default all).
Per window, served and the DQN are fitted on the train side's events before a, and rank
the warm and fresh cases of the events in [a, b) (`window_ndcg`). For each candidate margin
(`DQNConfig.guard_margins`, smallest first) the stage's NDCG@10 is compared with served's
case by case over the cases of all the windows together; a segment takes the smallest margin
whose ratio mean(stage) / mean(served) has the lower end of its 95% paired bootstrap
interval at or above 1 - `DQNConfig.guard_budget`, and switches the stage off (margin inf:
served's order) when none does or it has fewer than 2 users. Each window's own decision
is reported (and logged) beside the pooled one, which alone is applied. The margins then go
with the policy trained on all of the train side (QPolicy.margins, exported in dqn.json), so
the batch, the on-demand function and `recsys evaluate` apply the same ones.

    margins, report = guard_margins(train, users, items, served_config, dqn_config)
    policy, info = guarded_policy(policy, info, train, users, items, served_config, dqn_config)
    ServedDQNRecommender()       `recsys evaluate --models served_dqn`: served, the stage
                                 trained on served's beliefs (models.dqn_served), the guard
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from models.dqn import STRATEGIES, QPolicy, choose, rerank, states
from models.dqn_served import fit_on_beliefs, item_embeddings, rerank_pools, served_pools
from models.evaluation import Cases, Split, build_cases, ndcg_at_k
from models.served import ServedModel
from models.served_guard import SEGMENTS
from models.simulator import SETTINGS, SimConfig

log = logging.getLogger(__name__)


def stage_ndcg(model: ServedModel, policy, cases: Cases, margins, k: int = 10
               ) -> tuple[np.ndarray, dict[float, np.ndarray], np.ndarray, np.ndarray]:
    """Per case (warm then fresh), NDCG@k of served's list and of the stage's at each margin.

    Returns:
        (served [n], {margin: [n]}, fresh [n] bool, the cases' user ids [n] str).
    """
    ids = np.asarray(model.tower.data.items.ids).astype(str)
    emb = item_embeddings(model)
    served, staged = [], {m: [] for m in margins}
    for group, fresh in ((cases.warm, False), (cases.fresh, True)):
        if not group:
            continue
        users = [c.user_id for c in group]
        hists = model.history_indices([list(c.history) for c in group])
        truth = [frozenset(map(str, c.truth)) for c in group]
        pools = served_pools(model, users, hists, fresh=fresh)
        lists, _ = model.recommend_indices(hists, model.tower.data.user_matrix(users),
                                           model.context(users, fresh), k)
        served += _ndcg(lists, ids, truth, k)
        avail = pools.items >= 0
        q = policy.q_values(states(pools.query, pools.recent, pools.items, avail, emb, 0.0,
                                   np.zeros(len(users)), k))
        for m in margins:
            staged[m] += _ndcg(rerank(pools.items, avail, emb, pools.recent, choose(q, m), k),
                               ids, truth, k)
    fresh = np.r_[np.zeros(len(cases.warm), bool), np.ones(len(cases.fresh), bool)]
    users = np.array([str(c.user_id) for c in (*cases.warm, *cases.fresh)], dtype=object)
    return np.asarray(served), {m: np.asarray(v) for m, v in staged.items()}, fresh, users


def _ndcg(lists: np.ndarray, ids: np.ndarray, truth: list[frozenset], k: int) -> list[float]:
    return [ndcg_at_k([ids[i] for i in row if i >= 0], t, k)
            for row, t in zip(lists, truth, strict=True)]


def decide_margins(served: np.ndarray, staged: dict[float, np.ndarray], fresh: np.ndarray,
                   budget: float, n_resamples: int = 2000, seed: int = 0,
                   label: str = "pooled", users: np.ndarray | None = None
                   ) -> tuple[dict[str, float], dict]:
    """Per segment, the smallest margin whose NDCG@10 ratio to served clears the budget with
    95% confidence, or inf (the stage off).

    Args:
        served: [n] per-case NDCG@10 of served's lists.
        staged: margin -> [n] per-case NDCG@10 of the stage's lists, same cases.
        fresh: [n] bool, True for a fresh case.
        budget: the NDCG@10 share the stage may cost (0.03: within 3%).
        label: what the cases are, for the log (a window's origin, or "pooled").
        users: [n] each case's user, or None (every case its own user). Pooled windows
            hold a user's cases from several windows, which are not independent: the
            bootstrap resamples users with all their cases (the ratio of the per-user sums,
            which is the ratio of the cases' means), so a user seen in three windows does
            not narrow the interval three times.

    Returns:
        ({segment: margin, inf when off}, {segment: {"margin", "cases", "served", and per
        margin tried "ratio" and "ratio_ci"}}).
    """
    from scipy.stats import bootstrap

    def ratio(a, b, axis=-1):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(a.mean(axis) / b.mean(axis), nan=1.0, posinf=1.0)

    margins, report = {}, {}
    for segment, rows in zip(SEGMENTS, (~fresh, fresh), strict=True):
        chosen, tried = math.inf, {}
        group = (np.unique(np.asarray(users)[rows], return_inverse=True)[1]
                 if users is not None else np.arange(int(rows.sum())))
        clusters = int(group.max()) + 1 if len(group) else 0
        for m in sorted(staged) if clusters >= 2 else ():
            a = np.bincount(group, staged[m][rows], clusters)
            b = np.bincount(group, served[rows], clusters)
            if np.array_equal(a, b):
                low = high = 1.0
            else:
                ci = bootstrap((a, b), ratio, paired=True, n_resamples=n_resamples,
                               method="percentile", random_state=seed).confidence_interval
                low, high = float(ci.low), float(ci.high)
            tried[str(m)] = {"ratio": round(float(ratio(a, b)), 4),
                             "ratio_ci": [round(low, 4), round(high, 4)]}
            if low >= 1.0 - budget:
                chosen = float(m)
                break
        margins[segment] = chosen
        report[segment] = {"margin": None if math.isinf(chosen) else chosen,
                           "cases": int(rows.sum()), "users": clusters,
                           "served": round(float(served[rows].mean()), 4) if rows.any() else None,
                           "tried": tried}
        log.info("dqn guard %s %s: %s", label, segment, report[segment])
    return margins, report


def guard_origins(quantiles, n: int | None = None) -> list[tuple[float, float]]:
    """The guard's validation origins a:b, oldest first: the latest `n` (None: all) of
    served's window cutoffs `quantiles`, each ending at the next cutoff (the last at 1), as
    benchmarks.validate_served cuts them: no event is truth in two windows.

    Raises:
        ValueError: `n` is more than the windows there are.
    """
    qs = sorted(set(quantiles))
    if n is not None and n > len(qs):
        raise ValueError(f"DQNConfig.guard_windows {n}: at most the {len(qs)} windows of "
                         f"ServedConfig.windows {qs}")
    origins = list(zip(qs, [*qs[1:], 1.0], strict=True))
    return origins[-n:] if n else origins


def origin_split(train: pd.DataFrame, start: float, end: float) -> Split:
    """The events of `train` before its `start` quantile, and as test side those in [start,
    end) (end 1: all after), cut by models.served_fit.windows (its fallbacks when time cannot
    cut them, and warm cases held out when a window has almost none)."""
    from models.served_fit import windows

    return windows(train, [start] if end >= 1 else [start, end])[0]


def window_ndcg(train: pd.DataFrame, users, items, start: float, end: float, served_config,
                dqn_config, setting=None, event_weights=None
                ) -> tuple[np.ndarray, dict[float, np.ndarray], np.ndarray, np.ndarray] | None:
    """One origin's evidence: served (weighing events by `event_weights`, as fit_served) and
    the DQN fitted on the events before `start`, their per-case NDCG@10 on the cases of
    [start, end) (`stage_ndcg`), or None without a case."""
    from models.served_fit import fit_served

    split = origin_split(train, start, end)
    cases = build_cases(split)
    if not (cases.warm or cases.fresh) or split.train.empty:
        log.warning("dqn guard: no validation case at the origin %g:%g", start, end)
        return None
    t = time.perf_counter()
    model = fit_served(split.train, users, items, served_config, event_weights)
    ids, hists = history_of(model, split.train)
    kw = {} if setting is None else {"setting": setting}
    policy, _ = fit_on_beliefs(model, ids, hists, config=dqn_config, **kw)
    got = stage_ndcg(model, policy, cases, dqn_config.guard_margins)
    log.info("dqn guard %g:%g: %d warm and %d fresh cases, served and the DQN fitted and "
             "scored in %.1f s", start, end, len(cases.warm), len(cases.fresh),
             time.perf_counter() - t)
    return got


def guard_margins(train: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None,
                  served_config, dqn_config, setting=None, event_weights=None
                  ) -> tuple[dict[str, float], dict]:
    """Chooses each segment's margin on the cases of the guard's windows pooled
    (`guard_origins`, `window_ndcg`, `decide_margins`); each window's own decision is
    reported beside it.

    Args:
        train: the train side's events (all a kind or `recsys evaluate` trains on).
        served_config: models.served.ServedConfig; dqn_config: models.dqn_fit.DQNConfig.
        setting: the simulator setting of `fit_on_beliefs` (None: its default).
        event_weights: the run's event type -> weight (fit_served's; None: the defaults).

    Returns:
        (margins {segment: margin, inf: off}, report {"budget", "windows": {"a:b": {"cases",
        "seconds", segment: that window's decision}}, "cases", segment: the pooled decision});
        both segments off when no window has a case.
    """
    parts, per_window = [], {}
    for start, end in guard_origins(served_config.windows, dqn_config.guard_windows):
        name, t = f"{start:g}:{end:g}", time.perf_counter()
        got = window_ndcg(train, users, items, start, end, served_config, dqn_config, setting,
                          event_weights)
        if got is None:
            per_window[name] = {"cases": 0}
            continue
        _, decided = decide_margins(*got[:3], dqn_config.guard_budget, seed=dqn_config.seed,
                                    label=f"window {name}", users=_users(got))
        per_window[name] = {"cases": len(got[0]), "seconds": round(time.perf_counter() - t, 1),
                            **decided}
        parts.append(got)
    report = {"budget": dqn_config.guard_budget, "windows": per_window}
    if not parts:
        log.warning("dqn guard: no validation case in the windows %s; the stage is off",
                    list(per_window))
        return dict.fromkeys(SEGMENTS, math.inf), {**report, "cases": 0}
    served = np.concatenate([p[0] for p in parts])
    staged = {m: np.concatenate([p[1][m] for p in parts]) for m in parts[0][1]}
    fresh = np.concatenate([p[2] for p in parts])
    users = (np.concatenate([_users(p) for p in parts])
             if all(_users(p) is not None for p in parts) else None)
    margins, pooled = decide_margins(served, staged, fresh, dqn_config.guard_budget,
                                     seed=dqn_config.seed, label=f"pooled {list(per_window)}",
                                     users=users)
    return margins, {**report, "cases": len(served), **pooled}


def _users(evidence: tuple) -> np.ndarray | None:
    """The cases' user ids of a window's evidence (`stage_ndcg`), None when it has none."""
    return evidence[3] if len(evidence) > 3 else None


def history_of(model: ServedModel, events: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    """(user ids, each user's distinct served item indices, oldest first) of `events`."""
    ev = events.sort_values("timestamp", kind="stable")
    by_user = ev.groupby(ev["user_id"].astype(str))["item_id"].agg(list)
    return list(by_user.index), model.history_indices(
        [list(dict.fromkeys(map(str, h))) for h in by_user])


def guarded_policy(policy: QPolicy, info: dict, train, users, items, served_config,
                   dqn_config, setting: SimConfig = SETTINGS[0], event_weights=None
                   ) -> tuple[QPolicy, dict]:
    """`policy` with the per-segment margins of the deployment guard (models.dqn_guard)
    chosen on the train side's validation windows, and `info` with its report under
    "guard"; `policy` unchanged when `dqn_config.guard_budget` is None."""
    if dqn_config.guard_budget is None:
        return policy, info
    margins, report = guard_margins(train, users, items, served_config, dqn_config, setting,
                                    event_weights)
    log.info("served_dqn: the guard's margins %s", margins)
    return replace(policy, margins=margins), {**info, "guard": report}


class ServedDQNRecommender:
    """`served_dqn` of `recsys evaluate`: served, then the DQN stage trained on served's
    beliefs (see the module docstring), with the deployment guard's per-segment margins."""

    name = "served_dqn"

    def __init__(self, setting: SimConfig = SETTINGS[0], users: int = 2000, config=None):
        self.setting, self.max_users, self.dqn_config = setting, users, config

    def fit(self, train, users=None, items=None) -> ServedDQNRecommender:
        from models.dqn_config import DQNConfig
        from models.served import ServedConfig
        from models.served_fit import fit_served

        config = self.dqn_config or DQNConfig()
        self.model = m = fit_served(train, users, items)
        ids, hists = history_of(m, train)
        policy, info = fit_on_beliefs(m, ids, hists, self.setting, config, self.max_users)
        self.policy, self.info = guarded_policy(policy, info, train, users, items,
                                                ServedConfig(), config, self.setting)
        return self

    def recommend(self, user_ids, histories, k, fresh):
        m = self.model
        pools = served_pools(m, list(user_ids), m.history_indices(histories), fresh=fresh)
        I, actions = rerank_pools(self.policy, pools, item_embeddings(m), k, fresh)
        log.info("served_dqn: strategies chosen %s",
                 np.bincount(actions, minlength=len(STRATEGIES)).tolist())
        ids = m.tower.data.items.ids
        return [[str(ids[i]) for i in row if i >= 0] for row in I]
