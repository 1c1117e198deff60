"""Build records: what a nightly run recorded about the version it built.

The run's summary (NS:v:VER:meta: bundle, users, items, gate, seconds, ...) is written just
before the flip; `recsys versions` lists it and the next run's quality gate and shrink check
compare against the served version's. The list build record (NS:v:VER:built) holds, per user
of the bundle's user_ids.json, when their list was built and a fingerprint of their data: the
next run's list carry-over (batch/carry_over.py) keeps the lists whose data did not change.
Both are keys of the version, so they go with it (expiry, drop of a failed run).
"""

from __future__ import annotations

import json

import numpy as np

from infra.redis.keys import Namespaced, mark_started

BUILT = np.dtype([("built_at", "<u4"), ("fingerprint", "<u8")])  # 12 bytes per user


class BuildRecords(Namespaced):
    """A version's run summary and per-user list build record.

    Contract: what put_* wrote, the getters return unchanged (None when nothing was written);
    a malformed version is refused before any key, and every write joins the started record
    first (keys.mark_started), so a failed run's records are dropped with its lists.
    """

    def put_summary(self, version: str, summary: dict) -> None:
        """Records the run summary of `version` (JSON)."""
        mark_started(self.r, self.keys, version)
        self.r.set(self.keys.meta(version), json.dumps(summary))

    def summary(self, version: str) -> dict | None:
        """The run summary of `version`, None if unrecorded."""
        raw = self.r.get(self.keys.meta(version))
        return json.loads(raw) if raw else None

    def put_built(self, version: str, built_at: np.ndarray, fingerprints: np.ndarray) -> None:
        """Records each user's list build time and data fingerprint (bundle user order).

        Args:
            built_at: [users] epoch seconds (uint32).
            fingerprints: [users] uint64.
        """
        record = np.empty(len(built_at), BUILT)
        record["built_at"], record["fingerprint"] = built_at, fingerprints
        mark_started(self.r, self.keys, version)
        self.r.set(self.keys.built(version), record.tobytes())

    def built(self, version: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(built_at [users] uint32 epoch s, fingerprints [users] uint64), None if unrecorded."""
        raw = self.r.get(self.keys.built(version))
        if raw is None:
            return None
        record = np.frombuffer(raw, BUILT)
        return record["built_at"].astype(np.uint32), record["fingerprint"].astype(np.uint64)
