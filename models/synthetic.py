"""Synthetic interactions in the project's schema, deterministic from a seed.

Users have features (age bucket, country) and a latent taste that depends partly on them;
items have a category, tags, a price bucket, a creation time and a power-law popularity.
Each event picks an item with probability proportional to popularity × exp(affinity), among
items that exist at the event's time, so a model that learns tastes beats popularity.
Some users sign up and some items appear during the period (fresh users, cold items).

    python -c "from models.synthetic import generate; print(generate(200, 100).interactions)"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.schema import SECONDS_PER_DAY, Dataset

START_TS = 1_735_689_600  # 2025-01-01T00:00:00Z
EVENT_TYPES = np.array(["view", "click", "purchase"])
COUNTRIES = np.array(["US", "GB", "DE", "FR", "IN", "BR", "JP", "NG"])
AGE_BUCKETS = np.array(["18-24", "25-34", "35-44", "45-54", "55+"])


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the generated world.

    Attributes:
        n_users: users over the whole period.
        n_items: items over the whole period.
        events_per_user: mean number of events of a user (log-normally spread).
        n_categories: item categories; tastes cluster around them.
        n_tags: tag vocabulary; each category favours a few tags.
        dim: dimension of the latent tastes.
        zipf: exponent of the power-law item popularity.
        taste: strength of the affinity term against popularity.
        days: length of the period.
        new_user_share: share of users who sign up during the period rather than at its start.
        new_item_share: share of items created during the period.
        proposals: candidates drawn per event for the resampling step.
        seed: random seed; the same seed gives the same data.
    """

    n_users: int = 1000
    n_items: int = 500
    events_per_user: float = 40.0
    n_categories: int = 12
    n_tags: int = 40
    dim: int = 8
    zipf: float = 0.9
    taste: float = 4.0
    days: int = 120
    new_user_share: float = 0.3
    new_item_share: float = 0.15
    proposals: int = 16
    seed: int = 0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class World:
    """The truth behind the events: tastes, popularity and the users' and items' features.

    Attributes:
        user_vec: [n_users, dim] unit latent tastes.
        item_vec: [n_items, dim] unit latent item vectors; affinity = user_vec @ item_vec.T.
        popularity: [n_items] power-law popularity (unnormalised).
        category, item_created: [n_items] category index and creation time of each item.
        tags: per item, its tags joined by `|`.
        age, country, signup: [n_users] age bucket and country indices, signup time.
    """

    user_vec: np.ndarray
    item_vec: np.ndarray
    popularity: np.ndarray
    category: np.ndarray
    item_created: np.ndarray
    tags: list
    age: np.ndarray
    country: np.ndarray
    signup: np.ndarray


def _world(cfg: SyntheticConfig, rng: np.random.Generator) -> World:
    end_ts = START_TS + cfg.days * SECONDS_PER_DAY
    centroids = _unit(rng.normal(size=(cfg.n_categories, cfg.dim)))
    category = rng.integers(0, cfg.n_categories, cfg.n_items)
    item_vec = _unit(centroids[category] + 0.5 * rng.normal(size=(cfg.n_items, cfg.dim)))
    popularity = 1.0 / np.arange(1, cfg.n_items + 1) ** cfg.zipf
    popularity = popularity[rng.permutation(cfg.n_items)]
    item_created = np.where(rng.random(cfg.n_items) < cfg.new_item_share,
                            rng.integers(START_TS, end_ts, cfg.n_items), START_TS - SECONDS_PER_DAY)
    cat_tags = rng.integers(0, cfg.n_tags, (cfg.n_categories, 4))
    tags = [
        "|".join(f"tag{t}" for t in sorted({*cat_tags[c][rng.permutation(4)[:2]],
                                             int(rng.integers(0, cfg.n_tags))}))
        for c in category
    ]

    age = rng.integers(0, len(AGE_BUCKETS), cfg.n_users)
    country = rng.integers(0, len(COUNTRIES), cfg.n_users)
    # Tastes: a favourite category (partly predicted by the age bucket) plus personal noise.
    fav = np.where(rng.random(cfg.n_users) < 0.5, (age * 3) % cfg.n_categories,
                   rng.integers(0, cfg.n_categories, cfg.n_users))
    user_vec = _unit(centroids[fav] + 0.6 * rng.normal(size=(cfg.n_users, cfg.dim)))
    signup = np.where(rng.random(cfg.n_users) < cfg.new_user_share,
                      rng.integers(START_TS, end_ts - SECONDS_PER_DAY, cfg.n_users), START_TS)

    return World(user_vec, item_vec, popularity, category, item_created, tags, age, country,
                 signup)


def latent_world(n_users: int = 1000, n_items: int = 500, seed: int = 0, **kwargs) -> World:
    """The latent truth `generate` draws its events from, for the same arguments.

    Simulations (benchmarks/experiments.py) let users act with probabilities from it, so the
    better of two answers is known.
    """
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, seed=seed, **kwargs)
    return _world(cfg, np.random.default_rng(cfg.seed))


def generate(n_users: int = 1000, n_items: int = 500, seed: int = 0, **kwargs) -> Dataset:
    """Generates users, items and timestamped events.

    Args:
        n_users: number of users.
        n_items: number of items.
        seed: random seed.
        **kwargs: any other field of SyntheticConfig.

    Returns:
        A Dataset whose interactions are sorted by timestamp.
    """
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, seed=seed, **kwargs)
    rng = np.random.default_rng(cfg.seed)
    end_ts = START_TS + cfg.days * SECONDS_PER_DAY
    w = _world(cfg, rng)
    category, tags, age, country = w.category, w.tags, w.age, w.country
    item_vec, popularity, item_created = w.item_vec, w.popularity, w.item_created
    user_vec, signup = w.user_vec, w.signup

    n_events = np.maximum(
        1, rng.lognormal(np.log(cfg.events_per_user) - 0.5, 1.0, cfg.n_users).astype(int))
    users = np.repeat(np.arange(cfg.n_users), n_events)
    start = signup[users]
    ts = start + (rng.random(len(users)) * (end_ts - start)).astype(np.int64)

    # Sampling-importance-resampling: propose by popularity, pick by exp(taste * affinity).
    items = np.empty(len(users), dtype=np.int64)
    p = popularity / popularity.sum()
    chunk = 200_000
    for lo in range(0, len(users), chunk):
        u, t = users[lo:lo + chunk], ts[lo:lo + chunk]
        cand = rng.choice(cfg.n_items, size=(len(u), cfg.proposals), p=p)
        logits = cfg.taste * np.einsum("nd,npd->np", user_vec[u], item_vec[cand])
        logits = np.where(item_created[cand] <= t[:, None], logits, -np.inf)
        logits += rng.gumbel(size=logits.shape)
        items[lo:lo + chunk] = cand[np.arange(len(u)), logits.argmax(axis=1)]
    affinity = np.einsum("nd,nd->n", user_vec[users], item_vec[items])
    # Stronger affinity makes deeper events (click, purchase) more likely.
    depth = rng.random(len(users)) + 0.25 * affinity
    event_type = EVENT_TYPES[np.digitize(depth, [0.75, 1.0])]
    ok = item_created[items] <= ts  # all proposals of an event may predate nothing; drop those

    interactions = pd.DataFrame({
        "user_id": (users[ok] + 1).astype(str),
        "item_id": (items[ok] + 1).astype(str),
        "timestamp": ts[ok].astype(np.int64),
        "event_type": event_type[ok],
        "weight": np.nan,
    }).sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    users_df = pd.DataFrame({
        "user_id": (np.arange(cfg.n_users) + 1).astype(str),
        "age_bucket": AGE_BUCKETS[age],
        "country": COUNTRIES[country],
        "signup_ts": signup.astype(np.int64),
    })
    items_df = pd.DataFrame({
        "item_id": (np.arange(cfg.n_items) + 1).astype(str),
        "category": [f"cat{c}" for c in category],
        "tags": tags,
        "price_bucket": rng.integers(0, 5, cfg.n_items),
        "created_ts": item_created.astype(np.int64),
    })
    return Dataset(interactions, users_df, items_df, name=f"synthetic:users={n_users},"
                   f"items={n_items},seed={seed}")
