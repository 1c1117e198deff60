"""The bundle swap: when the pointer moves, the new version is loaded once and swapped in; the
versions that experiments' arms serve besides it are loaded once each and kept beside it.

One thread loads while the others keep answering from the old version; a bundle that cannot
be read leaves the old one served (logged), and before any is loaded it is a NoBundleError
(503). The new version takes over the current item filters, mapped onto its items. An arm's
version (`other`) is loaded the same way and kept while an experiment serves it (`keep`); one
that cannot be read is logged once and tried again after FAILED_RETRY_S, its arm meanwhile
served the current version (functions/arms.py).
"""

from __future__ import annotations

import logging
import threading
import time

from functions.filters import Filters, map_filters
from functions.loaded import Loaded, NoBundleError, load_version
from infra.store import ArtifactStore

log = logging.getLogger(__name__)
FAILED_RETRY_S = 60.0  # an arm's bundle that could not be read is tried again this much later
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


class Busy(Exception):
    """Another thread is loading a version; the caller keeps what it serves for now."""


class BundleSwap:
    """Holds the served version (`loaded`), swaps the next one in, and keeps the other versions
    that arms serve (`others`, version -> Loaded).

    Args:
        store: where the bundles are.
        faiss_threads: Faiss' threads for the on-demand searches (RECSYS_FAISS_THREADS).
    """

    def __init__(self, store: ArtifactStore, faiss_threads: int):
        self.store, self.faiss_threads = store, faiss_threads
        self.loaded: Loaded | None = None
        self.others: dict[str, Loaded] = {}
        self._failed: dict[str, float] = {}  # version -> when its bundle last failed to load
        self._lock = threading.Lock()

    def to(self, version: str) -> Loaded:
        """`version` loaded and served from now on; the current one while another thread
        loads it, or if its bundle cannot be read.

        Raises:
            NoBundleError: the bundle cannot be read and nothing is loaded yet.
        """
        # One thread loads; while it does, the others keep answering from the old version.
        if not self._lock.acquire(blocking=self.loaded is None):
            return self.loaded
        try:
            old = self.loaded
            if old is not None and old.version == version:
                return old
            new = self.others.pop(version, None)  # an arm's version promoted: loaded already
            if new is None:
                try:
                    new = load_version(self.store, version, self.faiss_threads)
                except _LOAD_ERRORS as e:
                    if old is None:
                        raise NoBundleError(f"bundle {version} cannot be read from "
                                            f"{self.store.uri}: {e}") from e
                    log.error("bundle %s cannot be read (%s); still serving %s", version, e,
                              old.version)
                    return old
            new.filters = map_filters(new.item_index, old.filters if old else Filters(rev=-1))
            if old is not None:
                self.others[old.version] = old  # an arm may serve it still; `keep` decides
            self.loaded = new
            log.info("loaded bundle %s (%d items)", version, len(new.item_names))
            return new
        finally:
            self._lock.release()

    def other(self, version: str, wait: bool) -> Loaded | None:
        """`version` loaded beside the current one (once), its filters the current ones; None
        when its bundle cannot be read (logged once per FAILED_RETRY_S).

        Args:
            wait: wait for another thread's load; False raises Busy instead.
        """
        got = self.others.get(version)
        if got is not None:
            return got
        failed = self._failed.get(version)
        if failed is not None and time.monotonic() - failed < FAILED_RETRY_S:
            return None
        if not self._lock.acquire(blocking=wait):
            raise Busy(version)
        try:
            got = self.others.get(version)
            if got is None:
                got = load_version(self.store, version, self.faiss_threads)
                current = self.loaded
                got.filters = map_filters(got.item_index,
                                          current.filters if current else Filters(rev=-1))
                self.others[version] = got
                self._failed.pop(version, None)
                log.info("loaded bundle %s for an experiment's arm (%d items)", version,
                         len(got.item_names))
            return got
        except _LOAD_ERRORS as e:
            if failed is None:
                log.error("bundle %s of an experiment's arm cannot be read from %s (%s); its "
                          "users get the current version", version, self.store.uri, e)
            self._failed[version] = time.monotonic()
            return None
        finally:
            self._lock.release()

    def keep(self, versions: set[str]) -> None:
        """Drops the other versions no arm serves any more (their memory goes with them)."""
        for version in [v for v in list(self.others) if v not in versions]:
            self.others.pop(version, None)
            log.info("unloaded bundle %s: no running experiment serves it", version)
