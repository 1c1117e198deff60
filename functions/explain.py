"""`/recommend?explain=true`: a reason per listed item (models/reasons.py), from the features
the served ranker scored it with.

Each item's reason comes from what ranked it. An item of the user's nightly list: the
history and user tokens the nightly scored them with (the bundle's history_indptr.npy /
history_items.npy and user_tokens.npy, read once per version by the first request that asks
for reasons). An item the on-demand scorer added: their recent items (NS:hist) and the
request's `events` and `features`, as functions/chain.py gave them to it. An item of the
popular source: `trending` or `popular` (`new` for an item without events). The list and the
recent items are read in one more round trip. A bundle of another kind than `served` (MF)
has no ranker features: its items get `trending` or `popular` when they hold, else `taste`
(the model's score). An answer without `explain` pays nothing.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import redis

from functions.loaded import Loaded
from functions.trending import FALLBACK_WINDOW
from infra.redis.codec import decode_list_py
from models.reasons import item_reasons
from models.served import ServedModel

log = logging.getLogger(__name__)
TRENDING_TOP = 100  # the trending items a `trending` reason may name


class _Histories:
    """The nightly's user histories and user tokens of the versions served lately (read on
    first use)."""

    def __init__(self, keep: int = 2):
        self._by_version: dict[str, tuple] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def of(self, loaded: Loaded, user_id: str) -> tuple[list[int], np.ndarray | None]:
        """(the user's history as the nightly scored it, their user tokens row), or ([],
        None) for a user the version does not list."""
        got = self._by_version.get(loaded.version)
        if got is None:
            with self._lock:
                got = self._by_version.get(loaded.version)
                if got is None:
                    got = self._read(loaded)
                    while len(self._by_version) >= self._keep:
                        self._by_version.pop(next(iter(self._by_version)))
                    self._by_version[loaded.version] = got
        users, indptr, items, tokens = got
        row = users.get(user_id)
        if row is None:
            return [], None
        return items[indptr[row]:indptr[row + 1]].tolist(), (
            tokens[row] if tokens is not None else None)

    @staticmethod
    def _read(loaded: Loaded) -> tuple:
        b = loaded.bundle
        try:
            users = {u: n for n, u in enumerate(json.loads(b.read("user_ids.json")))}
            return (users, b.array("history_indptr.npy"), b.array("history_items.npy"),
                    b.array("user_tokens.npy"))
        except (OSError, KeyError, ValueError) as e:  # an older bundle: no histories
            log.warning("bundle %s: no user histories for reasons (%s)", loaded.version, e)
            return {}, np.zeros(1, np.int64), np.zeros(0, np.int64), None


HISTORIES = _Histories()


def reasons(s, loaded: Loaded, q, answer) -> list[dict]:
    """One reason per item of `answer` (functions.chain.Answer) for the query `q`, each from
    what ranked it: an item of the user's nightly list from the nightly's history and user
    tokens, an on-demand item from the recent history, the request's events and features; an
    item of the popular source is `trending` or `popular` (or `new`).

    Args:
        s: the instance's functions.serving.Serving.
    """
    ids = [i for i, _ in answer.items]
    if not ids:
        return []
    index = loaded.item_index
    trending = {i for i, _ in (s.trending.top(FALLBACK_WINDOW) or [])[:TRENDING_TOP]}
    model = getattr(loaded.scorer, "model", None)
    if not isinstance(model, ServedModel):
        return [_plain(i, score is None, i in trending)
                for i, score in answer.items]
    raw, recent = None, []
    if s.breaker.up():
        try:  # the same round trip as the cached path: the user's list and recent items
            raw, recent = s.fetch(loaded.version, q.user_id)
        except redis.RedisError as e:
            s.breaker.trip(e)
    listed = set(decode_list_py(raw)[0]) if raw else set()
    nightly, nightly_tok = HISTORIES.of(loaded, q.user_id)
    fresh = q.user_id not in model.user_last
    request_tok = model.user_tokens([q.features or None])[0]
    groups = {"cache": (nightly, nightly_tok if nightly_tok is not None else request_tok,
                        model.context([q.user_id], fresh=False)[0]),
              "on_demand": (list(dict.fromkeys(index[i] for i in (*recent, *q.events)
                                               if i in index)), request_tok,
                            model.context([q.user_id], fresh=fresh)[0])}
    out: list[dict | None] = [None] * len(ids)
    for group, (history, tok, context) in groups.items():
        at = [n for n, (i, score) in enumerate(answer.items) if score is not None
              and (index.get(i) in listed) == (group == "cache")]
        if not at:
            continue
        cand = np.array([index.get(ids[n], -1) for n in at], np.int64)
        got = item_reasons(model, np.array(history, np.int64), tok, context, cand,
                           np.array([ids[n] in trending for n in at]), np.zeros(len(at), bool))
        for n, r in zip(at, got, strict=True):
            if "history_item" in r:
                r["history_item"] = loaded.item_names[r["history_item"]]
            out[n] = r
    new = model.new_items()
    for n, i in enumerate(ids):
        if out[n] is None:  # the popular source's
            out[n] = (_plain(i, True, i in trending) if i not in index or not new[index[i]]
                      else {"reason": "new", "feature": "pop_all", "value": 0.0})
    return out


def _plain(item: str, popular: bool, trending: bool) -> dict:
    """A reason without ranker features (an MF bundle, the popular source)."""
    if trending:
        return {"reason": "trending", "feature": None, "value": None}
    if popular:
        return {"reason": "popular", "feature": None, "value": None}
    return {"reason": "taste", "feature": "score", "value": None}
