"""`/recommend?explain=true`: a reason per listed item (models/reasons.py), from the features
the served ranker scored it with.

The user's history is what the ranker saw: for a user the nightly listed, the bundle's history
of them (history_indptr.npy / history_items.npy, read once per version by the first request
that asks for reasons), followed by their recent items (NS:hist, one more round trip) and the
request's `events`; their features, the request's (the nightly's users table is not loaded:
a warm user's segment reason needs `features`). A bundle of another kind than `served` (MF)
has no such features: its items get `new`, `trending` or `popular` when they hold, else
`taste` (the model's score). Reasons cost a feature pass over the k items; an answer without
`explain` pays nothing.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import redis

from functions.loaded import Loaded
from functions.trending import FALLBACK_WINDOW
from models.reasons import item_reasons
from models.served import ServedModel

log = logging.getLogger(__name__)
TRENDING_TOP = 100  # the trending items a `trending` reason may name


class _Histories:
    """The nightly's user histories of the versions served lately (read on first use)."""

    def __init__(self, keep: int = 2):
        self._by_version: dict[str, tuple] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def of(self, loaded: Loaded, user_id: str) -> list[int]:
        got = self._by_version.get(loaded.version)
        if got is None:
            with self._lock:
                got = self._by_version.get(loaded.version)
                if got is None:
                    got = self._read(loaded)
                    while len(self._by_version) >= self._keep:
                        self._by_version.pop(next(iter(self._by_version)))
                    self._by_version[loaded.version] = got
        users, indptr, items = got
        row = users.get(user_id)
        return [] if row is None else items[indptr[row]:indptr[row + 1]].tolist()

    @staticmethod
    def _read(loaded: Loaded) -> tuple:
        b = loaded.bundle
        try:
            users = {u: n for n, u in enumerate(json.loads(b.read("user_ids.json")))}
            return users, b.array("history_indptr.npy"), b.array("history_items.npy")
        except (OSError, KeyError, ValueError) as e:  # an older bundle: no histories
            log.warning("bundle %s: no user histories for reasons (%s)", loaded.version, e)
            return {}, np.zeros(1, np.int64), np.zeros(0, np.int64)


HISTORIES = _Histories()


def reasons(s, loaded: Loaded, q, answer) -> list[dict]:
    """One reason per item of `answer` (functions.chain.Answer) for the query `q`.

    Args:
        s: the instance's functions.serving.Serving.
    """
    ids = [i for i, _ in answer.items]
    if not ids:
        return []
    index = loaded.item_index
    trending = {i for i, _ in (s.trending.top(FALLBACK_WINDOW) or [])[:TRENDING_TOP]}
    popular = [score is None for _, score in answer.items]
    model = getattr(loaded.scorer, "model", None)
    if not isinstance(model, ServedModel):
        return [_plain(i, p, i in trending, loaded) for i, p in zip(ids, popular, strict=True)]
    recent = []
    if s.breaker.up():
        try:
            recent = s.events.history(q.user_id, s.settings.history_len)
        except redis.RedisError as e:
            s.breaker.trip(e)
    history = HISTORIES.of(loaded, q.user_id)
    history += [index[i] for i in (*recent, *q.events) if i in index]
    history = list(dict.fromkeys(history))
    fresh = q.user_id not in model.user_last
    out = item_reasons(model, np.array(history, np.int64),
                       model.user_tokens([q.features or None])[0],
                       model.context([q.user_id], fresh=fresh)[0],
                       np.array([index.get(i, -1) for i in ids], np.int64),
                       np.array([i in trending for i in ids]), np.array(popular))
    names = loaded.item_names
    for r in out:
        if "history_item" in r:
            r["history_item"] = names[r["history_item"]]
    return out


def _plain(item: str, popular: bool, trending: bool, loaded: Loaded) -> dict:
    """A reason without ranker features (an MF bundle)."""
    if trending:
        return {"reason": "trending", "feature": None, "value": None}
    if popular:
        return {"reason": "popular", "feature": None, "value": None}
    return {"reason": "taste", "feature": "score", "value": None}
