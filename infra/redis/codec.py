"""The bytes of one served list (the value of NS:v:VER:u:USER), without Redis.

A list of K entries is K little-endian int32 item indices, then K float16 scores: 6 bytes per
entry, K = len(value) // 6. Indices are positions in `item_ids.json` of the same version's
bundle; empty slots (-1) are dropped, so K may be less than the run's --k, or 0.
"""

from __future__ import annotations

import struct

import numpy as np


def encode_list(items: np.ndarray, scores: np.ndarray) -> bytes:
    """Packs [k] item indices (int32) and [k] scores (float16): 6 bytes per entry."""
    return items.astype("<i4").tobytes() + scores.astype("<f2").tobytes()


def encode_lists(items: np.ndarray, scores: np.ndarray) -> list[bytes]:
    """encode_list for each row of [n, k] items (-1 = none) and scores, vectorised."""
    n, k = items.shape
    packed = np.concatenate([items.astype("<i4").view(np.uint8).reshape(n, 4 * k),
                             scores.astype("<f2").view(np.uint8).reshape(n, 2 * k)], axis=1)
    full = items[:, -1] >= 0 if k else np.ones(n, bool)
    out = [row.tobytes() for row in packed]
    for r in np.flatnonzero(~full):  # lists shorter than k (-1 padded): pack their prefix
        keep = items[r] >= 0
        out[r] = encode_list(items[r][keep], scores[r][keep])
    return out


def decode_list(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of encode_list: returns ([k] int32 items, [k] float32 scores)."""
    k = len(data) // 6
    items = np.frombuffer(data, "<i4", count=k)
    scores = np.frombuffer(data, "<f2", count=k, offset=4 * k).astype(np.float32)
    return items, scores


_LAYOUTS: dict[int, struct.Struct] = {}


def decode_list_py(data: bytes) -> tuple[list[int], list[float]]:
    """decode_list as Python lists, without NumPy: the serving hot path (one struct call)."""
    k = len(data) // 6
    layout = _LAYOUTS.get(k)
    if layout is None:
        layout = _LAYOUTS[k] = struct.Struct(f"<{k}i{k}e")
    values = layout.unpack_from(data)
    return list(values[:k]), list(values[k:])


_HEADS: dict[int, tuple[struct.Struct, struct.Struct]] = {}


def decode_head_py(data: bytes, n: int) -> tuple[list[int], list[float]]:
    """The first n entries of decode_list_py (all of them when the list is shorter): what a
    page of k items needs, without unpacking the whole list (the usual list holds 100)."""
    k = len(data) // 6
    if n >= k:
        return decode_list_py(data)
    layouts = _HEADS.get(n)
    if layouts is None:
        layouts = _HEADS[n] = struct.Struct(f"<{n}i"), struct.Struct(f"<{n}e")
    return list(layouts[0].unpack_from(data)), list(layouts[1].unpack_from(data, 4 * k))


def remap_lists(values: list[bytes], item_map: np.ndarray) -> list[bytes]:
    """Re-indexes encoded lists into another item vocabulary, scores untouched.

    Args:
        values: encoded lists (encode_list) indexing the old vocabulary.
        item_map: [old_items] int: each old item's index in the new vocabulary, -1 = gone
            (dropped from the list, which gets shorter).
    """
    out = []
    for data in values:
        k = len(data) // 6
        items = item_map[np.frombuffer(data, "<i4", count=k)]
        keep = items >= 0
        out.append(items[keep].astype("<i4").tobytes()
                   + np.frombuffer(data, "<f2", count=k, offset=4 * k)[keep].tobytes())
    return out
