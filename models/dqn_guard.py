"""The DQN stage's deployment guard: per segment (warm, fresh), how far the stage may move
served's lists, chosen on a train-side validation window, never on the test split.

A safe policy improvement (the stage may act only where the data say, with confidence, that
it costs served's lists little): served and the DQN are fitted on the train side's events
before the cutoff of served's last window (`ServedConfig.windows`, models.served_fit.windows,
the window served's own guard and quality gate use), and rank that window's warm and fresh
cases. For each candidate margin (`DQNConfig.guard_margins`, smallest first) the stage's
NDCG@10 is compared with served's case by case; a segment takes the smallest margin whose
ratio mean(stage) / mean(served) has the lower end of its 95% paired bootstrap interval at
or above 1 - `DQNConfig.guard_budget`, and switches the stage off (margin inf: served's
order) when none does or it has fewer than 2 cases. The margins then go with the policy
trained on all of the train side (QPolicy.margins, exported in dqn.json), so the batch, the
on-demand function and `recsys evaluate` apply the same ones.

    margins, report = guard_margins(train, users, items, served_config, dqn_config)
    policy, info = guarded_policy(policy, info, train, users, items, served_config, dqn_config)
    ServedDQNRecommender()       `recsys evaluate --models served_dqn`: served, the stage
                                 trained on served's beliefs (models.dqn_served), the guard
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import pandas as pd

from models.dqn import STRATEGIES, QPolicy, choose, rerank, states
from models.dqn_served import fit_on_beliefs, item_embeddings, rerank_pools, served_pools
from models.evaluation import Cases, build_cases, ndcg_at_k
from models.served import ServedModel
from models.served_guard import SEGMENTS
from models.simulator import SETTINGS, SimConfig

log = logging.getLogger(__name__)


def stage_ndcg(model: ServedModel, policy, cases: Cases, margins, k: int = 10
               ) -> tuple[np.ndarray, dict[float, np.ndarray], np.ndarray]:
    """Per case (warm then fresh), NDCG@k of served's list and of the stage's at each margin.

    Returns:
        (served [n], {margin: [n]}, fresh [n] bool).
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
    return np.asarray(served), {m: np.asarray(v) for m, v in staged.items()}, fresh


def _ndcg(lists: np.ndarray, ids: np.ndarray, truth: list[frozenset], k: int) -> list[float]:
    return [ndcg_at_k([ids[i] for i in row if i >= 0], t, k)
            for row, t in zip(lists, truth, strict=True)]


def decide_margins(served: np.ndarray, staged: dict[float, np.ndarray], fresh: np.ndarray,
                   budget: float, n_resamples: int = 2000, seed: int = 0
                   ) -> tuple[dict[str, float], dict]:
    """Per segment, the smallest margin whose NDCG@10 ratio to served clears the budget with
    95% confidence, or inf (the stage off).

    Args:
        served: [n] per-case NDCG@10 of served's lists.
        staged: margin -> [n] per-case NDCG@10 of the stage's lists, same cases.
        fresh: [n] bool, True for a fresh case.
        budget: the NDCG@10 share the stage may cost (0.03: within 3%).

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
        for m in sorted(staged) if rows.sum() >= 2 else ():
            a, b = staged[m][rows], served[rows]
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
                           "cases": int(rows.sum()),
                           "served": round(float(served[rows].mean()), 4) if rows.any() else None,
                           "tried": tried}
        log.info("dqn guard %s: %s", segment, report[segment])
    return margins, report


def guard_margins(train: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None,
                  served_config, dqn_config, setting=None) -> tuple[dict[str, float], dict]:
    """Fits served and the DQN on the events before the validation window's cutoff and
    chooses each segment's margin on that window's cases (`decide_margins`).

    Args:
        train: the train side's events (all a kind or `recsys evaluate` trains on).
        served_config: models.served.ServedConfig; dqn_config: models.dqn_fit.DQNConfig.
        setting: the simulator setting of `fit_on_beliefs` (None: its default).

    Returns:
        (margins {segment: margin, inf: off}, report {"window", "budget", segment: ...});
        both segments off when the window has no case.
    """
    from models.served_fit import fit_served, windows

    q = max(served_config.windows)
    split = windows(train, [q])[0]
    cases = build_cases(split)
    if not (cases.warm or cases.fresh) or split.train.empty:
        log.warning("dqn guard: no validation case at the window %.2f; the stage is off", q)
        return dict.fromkeys(SEGMENTS, math.inf), {"window": q, "cases": 0}
    model = fit_served(split.train, users, items, served_config)
    ids, hists = history_of(model, split.train)
    kw = {} if setting is None else {"setting": setting}
    policy, _ = fit_on_beliefs(model, ids, hists, config=dqn_config, **kw)
    served, staged, fresh = stage_ndcg(model, policy, cases, dqn_config.guard_margins)
    margins, report = decide_margins(served, staged, fresh, dqn_config.guard_budget,
                                     seed=dqn_config.seed)
    return margins, {"window": q, "budget": dqn_config.guard_budget, **report}


def history_of(model: ServedModel, events: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    """(user ids, each user's distinct served item indices, oldest first) of `events`."""
    ev = events.sort_values("timestamp", kind="stable")
    by_user = ev.groupby(ev["user_id"].astype(str))["item_id"].agg(list)
    return list(by_user.index), model.history_indices(
        [list(dict.fromkeys(map(str, h))) for h in by_user])


def guarded_policy(policy: QPolicy, info: dict, train, users, items, served_config,
                   dqn_config, setting: SimConfig = SETTINGS[0]) -> tuple[QPolicy, dict]:
    """`policy` with the per-segment margins of the deployment guard (models.dqn_guard)
    chosen on the train side's validation window, and `info` with its report under
    "guard"; `policy` unchanged when `dqn_config.guard_budget` is None."""
    if dqn_config.guard_budget is None:
        return policy, info
    margins, report = guard_margins(train, users, items, served_config, dqn_config, setting)
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
