"""The versioned model bundle in the artifact store.

Layout under `bundles/<version>/`: the files every kind writes (item_ids.json, user_ids.json,
item_vectors.npy, popular.json), the kind's own files (models/kinds/: MF's user vectors, seen
items, Faiss index and LiteRT tower; served's histories, user tokens and served/ folder), and
manifest.json, written last with the kind (`model`) and the sha256 and size of every other file.
A bundle without a manifest (an interrupted export) is ignored by readers.

Bundles are written by models.kinds.write_bundle through a BundleWriter, and read back as a
Bundle whose kind's scorers (models.kinds.get(manifest["model"])) load what they need.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infra.store import ArtifactStore
from models.finite import NonFiniteError, count_non_finite

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def bundle_prefix(version: str) -> str:
    return f"bundles/{version}"


def new_version() -> str:
    """A sortable, unique version name: UTC time plus 4 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(2).hex()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


class BundleWriter:
    """Collects files, then commits them with the manifest last (models.kinds.BundleWriter)."""

    def __init__(self, store: ArtifactStore, version: str):
        self.store, self.version, self.files = store, version, {}

    def put(self, name: str, data: bytes) -> None:
        self.store.put_bytes(f"{bundle_prefix(self.version)}/{name}", data)
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def put_json(self, name: str, obj) -> None:
        self.put(name, json.dumps(obj).encode())

    def put_array(self, name: str, a: np.ndarray) -> None:
        """Writes `a` as .npy; a float array holding NaN or inf is refused (NonFiniteError):
        such vectors serve empty or arbitrary lists."""
        if n := count_non_finite(a):
            raise NonFiniteError(f"bundle {self.version}: {name} has {n} non-finite (NaN or inf) "
                                 f"value(s) of {a.size}; the bundle is not committed. Check "
                                 "the training input's weights and values")
        self.put(name, _npy(a))

    def put_dir(self, name: str, local_dir: str) -> None:
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                self.put(f"{name}/{path.relative_to(local_dir)}", path.read_bytes())

    def commit(self, meta: dict) -> dict:
        manifest = {"version": self.version, "created_at": time.time(), **meta,
                    "files": self.files}
        self.store.put_bytes(f"{bundle_prefix(self.version)}/{MANIFEST}",
                             json.dumps(manifest, indent=1).encode())
        return manifest


@dataclass
class Bundle:
    """A bundle read back from the store, checksums verified (models.kinds.BundleReader)."""

    version: str
    manifest: dict
    item_ids: np.ndarray  # [num_items] object
    user_ids: np.ndarray  # [num_users] object (empty when read without users)
    item_vectors: np.ndarray  # [num_items, d]
    popular: list[str]
    store: ArtifactStore
    _item_index: dict | None = field(default=None, repr=False)

    @property
    def item_index(self) -> dict[str, int]:
        if self._item_index is None:
            self._item_index = {k: n for n, k in enumerate(self.item_ids)}
        return self._item_index

    def array(self, name: str) -> np.ndarray:
        """A verified .npy file of the bundle."""
        return np.load(io.BytesIO(self.read(name)), allow_pickle=False)

    def extract(self, folder: str, dest: str, names: list[str] | None = None) -> str:
        """Writes the verified files under `folder/` of the bundle into the local `dest`.

        Args:
            folder: a folder of the bundle, e.g. "served".
            dest: local directory; created.
            names: paths inside `folder` to write (None: all of them).

        Returns:
            dest.
        """
        prefix = folder.rstrip("/") + "/"
        wanted = [n for n in self.manifest["files"] if n.startswith(prefix)]
        if names is not None:
            missing = sorted({prefix + n for n in names} - set(wanted))
            if missing:
                raise KeyError(f"bundle {self.version} has no {missing}")
            wanted = [prefix + n for n in names]
        for name in wanted:
            path = Path(dest) / name[len(prefix):]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.read(name))
        return dest

    def read(self, name: str) -> bytes:
        data = self.store.get_bytes(f"{bundle_prefix(self.version)}/{name}")
        expected = self.manifest["files"][name]["sha256"]
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError(f"bundle {self.version}: checksum mismatch for {name}")
        return data


def read_bundle(store: ArtifactStore, version: str, with_users: bool = True) -> Bundle:
    """Reads and verifies a committed bundle; FileNotFoundError if it has no manifest."""
    manifest = json.loads(store.get_bytes(f"{bundle_prefix(version)}/{MANIFEST}"))
    b = Bundle(version, manifest, np.array([]), np.array([]), np.zeros((0, 0)), [], store)
    b.item_ids = np.array(json.loads(b.read("item_ids.json")), dtype=object)
    b.item_vectors = b.array("item_vectors.npy")
    b.popular = json.loads(b.read("popular.json"))
    if with_users:
        b.user_ids = np.array(json.loads(b.read("user_ids.json")), dtype=object)
    return b


def list_bundles(store: ArtifactStore) -> list[str]:
    """Committed bundle versions (those with a manifest), oldest first."""
    return sorted({k.split("/")[1] for k in store.list("bundles")
                   if k.endswith("/" + MANIFEST)})
