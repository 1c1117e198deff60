"""The serving state of one function instance: Redis, the current version and its bundle.

The version pointer is cached for `pointer_ttl` seconds; when it moves, the new version's
bundle (item ids, Faiss index, popular list) is loaded and swapped in. The user tower for
fresh users (the bundle's SavedModel) loads on the first on-demand request, so the cached
path never imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import redis

from infra.bundle import Bundle, read_bundle
from infra.redis_store import ListStore, decode_list
from infra.store import open_store
from models.export import pad_history
from models.retrieval import retrieve
from models.rules import apply_rules, fill

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Read once from the environment at import (see README: Configuration)."""

    redis_url: str
    store: str
    namespace: str = "recsys"
    api_key: str | None = None
    pointer_ttl: float = 2.0
    max_k: int = 100
    history_len: int = 50

    @classmethod
    def from_env(cls) -> Settings:
        return cls(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
                   store=os.environ.get("RECSYS_STORE", "./artifacts"),
                   namespace=os.environ.get("RECSYS_NAMESPACE", "recsys"),
                   api_key=os.environ.get("RECSYS_API_KEY") or None,
                   pointer_ttl=float(os.environ.get("RECSYS_POINTER_TTL_S", "2")),
                   max_k=int(os.environ.get("RECSYS_MAX_K", "100")))


class NoBundleError(RuntimeError):
    """No version has been published yet (or its bundle cannot be read)."""


class LiteTower:
    """User embedding of a fresh user from the item indices they touched (LiteRT)."""

    def __init__(self, model: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self._lock = threading.Lock()  # an interpreter is not thread-safe
        self._run = Interpreter(model_content=model).get_signature_runner()

    def __call__(self, item_idx: np.ndarray) -> np.ndarray:
        """Returns [1, dim + 1] query vector for [n] item indices."""
        with self._lock:
            return self._run(item_idx=pad_history(item_idx))["query"]


class Serving:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.lists = ListStore.from_url(settings.redis_url, settings.namespace,
                                        socket_timeout=0.5, socket_connect_timeout=0.5)
        self.store = open_store(settings.store)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._checked = 0.0
        self.bundle: Bundle | None = None
        self._tower: LiteTower | None = None

    def version(self) -> str:
        """The current version (pointer cached briefly); loads its bundle when it moves."""
        now = time.monotonic()
        if self._version is None or now - self._checked > self.settings.pointer_ttl:
            try:
                version = self.lists.current()
            except redis.RedisError:
                if self.bundle is None:
                    raise
                return self.bundle.version  # degraded: keep serving what is loaded
            self._checked = now
            if version is None:
                raise NoBundleError("no model version has been published yet: run "
                                    "`recsys nightly` first")
            if self.bundle is None or self.bundle.version != version:
                with self._lock:
                    if self.bundle is None or self.bundle.version != version:
                        bundle = read_bundle(self.store, version, with_users=False)
                        _ = bundle.index  # deserialise now, not inside a request later
                        self.bundle, self._tower = bundle, None
                        log.info("loaded bundle %s", version)
            self._version = version
        return self._version

    def tower(self) -> LiteTower:
        with self._lock:
            if self._tower is None:
                self._tower = LiteTower(self.bundle.read("user_tower.tflite"))
            return self._tower

    def cached(self, user_id: str, k: int) -> tuple[list, list[str]] | None:
        """The nightly list minus items the user touched since; None if there is none."""
        version = self.version()
        pipe = self.lists.r.pipeline(transaction=False)
        pipe.get(self.lists.user_key(version, user_id))
        pipe.lrange(f"{self.settings.namespace}:hist:{user_id}", 0,
                    self.settings.history_len - 1)
        raw, hist = pipe.execute()
        recent = [h.decode() for h in hist]
        if raw is None:
            return None
        items, scores = decode_list(raw)
        exclude = self._indices(recent)
        items, scores = apply_rules(items, scores, k, exclude)
        ids = self.bundle.item_ids
        return [(ids[i], float(s)) for i, s in zip(items, scores, strict=True)], recent

    def on_demand(self, history: list[str], k: int) -> list:
        """Ranks for a user known only by recent items: tower -> Faiss -> rules."""
        self.version()
        seen = self._indices(history)
        I, D = retrieve(self.bundle.index, self.tower()(seen), k, [seen])
        ids = self.bundle.item_ids
        return [(ids[i], float(s)) for i, s in zip(I[0], D[0], strict=True) if i >= 0]

    def popular(self, k: int, exclude: list[str]) -> list:
        return [(i, None) for i in fill([], self.bundle.popular, k, set(exclude))]

    def history(self, user_id: str) -> list[str]:
        return self.lists.history(user_id, self.settings.history_len)

    def _indices(self, item_ids: list[str]) -> np.ndarray:
        index = self.bundle.item_index
        return np.array([index[i] for i in item_ids if i in index], dtype=np.int64)
