"""Users without new activity keep their list: which lists a run recomputes, which it copies.

A user's list is carried over from the served version, copied inside Redis, when the user's
clean interactions are exactly those it was built from and it was built less than
`--list_max_age_days` ago (as Gorse's active-user TTL). Users who are new, whose
interactions changed, or whose list is too old are recomputed; 0 days recomputes everyone.

"Activity" is a fingerprint of the user's rows, not a timestamp cutoff: a late event with an
old timestamp or a row that --event_weights newly accepts or rejects also counts as a change.
Training flags (--dim, weights' values, --served_config, ...) are not seen: after changing
them, run once with --list_max_age_days 0. A change of --model is seen: every list is
recomputed.

The trade-off: a carried list was ranked by the model that built it (at most the age limit
ago); it cannot hold items added since, and items that left the catalog drop out of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infra.bundle import read_bundle
from infra.redis.builds import BuildRecords
from infra.redis.lists import ServedLists
from infra.store import ArtifactStore
from models.schema import CLEAN_SCHEMA, SECONDS_PER_DAY

log = logging.getLogger(__name__)


def user_fingerprints(clean: pd.DataFrame, user_ids) -> np.ndarray:
    """An order-independent uint64 hash of each user's clean rows.

    Args:
        clean: clean interactions (CLEAN_SCHEMA columns, exact duplicates removed).
        user_ids: [users] ids in the bundle's order.

    Returns:
        [users] uint64: the sum (mod 2^64) of the user's row hashes; 0 without rows.
    """
    rows = pd.util.hash_pandas_object(clean[CLEAN_SCHEMA.names], index=False).to_numpy()
    users = pd.Index(user_ids).get_indexer(clean["user_id"])
    out = np.zeros(len(user_ids), np.uint64)
    np.add.at(out, users[users >= 0], rows[users >= 0])
    return out


@dataclass(frozen=True)
class ListPlan:
    """Which users of the new version are recomputed and which are copied."""

    refresh: np.ndarray  # [n] int64 user indices, ascending: recomputed
    carry: np.ndarray  # [m] int64 user indices, ascending: copied from the previous version
    built_at: np.ndarray  # [users] uint32 epoch s: when each user's list was built
    fingerprints: np.ndarray  # [users] uint64: the data each list was built from
    new: int  # users not in the previous version (all if there is none usable)
    expired: int  # unchanged users recomputed because their list was too old


def plan_lists(fingerprints: np.ndarray, now: int, max_age_s: float,
               previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> ListPlan:
    """Carries a user's list over iff the user is known, unchanged and the list is young.

    Args:
        fingerprints: [users] uint64 of this run (user_fingerprints).
        now: epoch s, the build time given to recomputed lists.
        max_age_s: lists at least this old are recomputed (0: every list).
        previous: None (recompute everyone) or (rows [users] int64: each user's row in the
            previous version, -1 = new user; built_at [prev_users] uint32; fingerprints
            [prev_users] uint64).

    Returns:
        The plan; refresh and carry partition range(users).
    """
    n = len(fingerprints)
    if previous is None:
        return ListPlan(np.arange(n), np.arange(0), np.full(n, now, np.uint32), fingerprints,
                        n, 0)
    rows, prev_built, prev_fp = previous
    known = rows >= 0
    built = np.where(known, prev_built[np.where(known, rows, 0)], now).astype(np.uint32)
    unchanged = known & (prev_fp[np.where(known, rows, 0)] == fingerprints)
    young = now - built.astype(np.int64) < max_age_s
    carry = unchanged & young
    built[~carry] = now
    return ListPlan(np.flatnonzero(~carry), np.flatnonzero(carry), built, fingerprints,
                    int((~known).sum()), int((unchanged & ~young).sum()))


def _ids(store: ArtifactStore, version: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(user ids, item ids, manifest) of a committed bundle, checksums verified."""
    bundle = read_bundle(store, version, with_users=False)
    users = np.array(json.loads(bundle.read("user_ids.json")), dtype=object)
    return users, bundle.item_ids, bundle.manifest


def carry_over(lists: ServedLists, builds: BuildRecords, store: ArtifactStore,
               clean: pd.DataFrame, version: str, k: int, max_age_days: float,
               now: int) -> tuple[ListPlan, dict]:
    """Copies the lists of unchanged users from the served version into `version`.

    Runs after the bundle of `version` is committed and before its precompute; a user whose
    list the served version lacks (deleted or evicted) is moved to the recomputed ones.
    The caller records `plan.built_at` and `plan.fingerprints` (BuildRecords.put_built) before
    the flip, for the next run.

    Returns:
        (the plan, with `refresh` = what the precompute must still compute; the summary's
        `users_*` counts, `list_max_age_days` and `lists_carried_from`).
    """
    user_ids, item_ids, manifest = _ids(store, version)
    fingerprints = user_fingerprints(clean, user_ids)
    served = lists.current()
    previous = served and _previous(builds, store, served, user_ids, item_ids, k,
                                    manifest.get("model", "mf"))
    plan = plan_lists(fingerprints, now, max_age_days * SECONDS_PER_DAY,
                      previous and previous[:3])
    refresh = plan.refresh
    if plan.carry.size:
        item_map = previous[3]
        copied = lists.copy_lists(served, version, "carry", user_ids[plan.carry], item_map)
        if not copied.all():
            log.warning("%d lists of version %s are missing in Redis; recomputing them",
                        int((~copied).sum()), served)
            refresh = np.union1d(refresh, plan.carry[~copied])
            plan.built_at[plan.carry[~copied]] = now
        plan = ListPlan(refresh, plan.carry[copied], plan.built_at, fingerprints, plan.new,
                        plan.expired)
    return plan, {"users_refreshed": int(plan.refresh.size),
                  "users_carried_over": int(plan.carry.size), "users_new": plan.new,
                  "users_expired_refreshed": plan.expired,
                  "list_max_age_days": max_age_days,
                  "lists_carried_from": served if plan.carry.size else None}


def _previous(builds: BuildRecords, store: ArtifactStore, served: str, user_ids: np.ndarray,
              item_ids: np.ndarray, k: int, model: str) -> tuple | None:
    """(rows, built_at, fingerprints, item_map) of the served version, None if unusable.

    item_map is None when the served version's item indices mean the same items in the new
    one (its vocabulary is a prefix of the new one): its lists are then copied byte for byte.
    """
    built = builds.built(served)
    if built is None:
        log.info("version %s has no list build record; recomputing every list", served)
        return None
    try:
        prev_users, prev_items, manifest = _ids(store, served)
    except FileNotFoundError:
        log.info("bundle %s is not in this store; recomputing every list", served)
        return None
    if manifest.get("k") != k or not len(prev_users) or len(prev_users) != len(built[0]):
        log.info("version %s has another --k or record; recomputing every list", served)
        return None
    if manifest.get("model", "mf") != model:  # another ranking: no list is kept
        log.info("version %s was built by --model %s; recomputing every list", served,
                 manifest.get("model", "mf"))
        return None
    item_map = pd.Index(item_ids).get_indexer(prev_items)
    if np.array_equal(item_map, np.arange(len(prev_items))):
        item_map = None
    return pd.Index(prev_users).get_indexer(user_ids), *built, item_map
