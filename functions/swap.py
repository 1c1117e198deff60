"""The bundle swap: when the pointer moves, the new version is loaded once and swapped in.

One thread loads while the others keep answering from the old version; a bundle that cannot
be read leaves the old one served (logged), and before any is loaded it is a NoBundleError
(503). The new version takes over the current item filters, mapped onto its items.
"""

from __future__ import annotations

import logging
import threading

from functions.filters import Filters, map_filters
from functions.loaded import Loaded, NoBundleError, load_version
from infra.store import ArtifactStore

log = logging.getLogger(__name__)


class BundleSwap:
    """Holds the served version (`loaded`) and swaps the next one in.

    Args:
        store: where the bundles are.
        faiss_threads: Faiss' threads for the on-demand searches (RECSYS_FAISS_THREADS).
    """

    def __init__(self, store: ArtifactStore, faiss_threads: int):
        self.store, self.faiss_threads = store, faiss_threads
        self.loaded: Loaded | None = None
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
            try:
                new = load_version(self.store, version, self.faiss_threads)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                if old is None:
                    raise NoBundleError(f"bundle {version} cannot be read from "
                                        f"{self.store.uri}: {e}") from e
                log.error("bundle %s cannot be read (%s); still serving %s", version, e,
                          old.version)
                return old
            new.filters = map_filters(new.item_index, old.filters if old else Filters(rev=-1))
            self.loaded = new
            log.info("loaded bundle %s (%d items)", version, len(new.item_names))
            return new
        finally:
            self._lock.release()
