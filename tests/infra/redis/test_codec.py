"""The bytes of a served list (infra/redis/codec.py)."""

import numpy as np

from infra.redis.codec import (
    decode_head_py,
    decode_list,
    decode_list_py,
    encode_list,
    encode_lists,
    remap_lists,
)


def test_encoding_round_trip_is_six_bytes_per_entry():
    items = np.array([5, 0, 123456], np.int32)
    scores = np.array([1.5, -0.25, 3.0], np.float32)
    raw = encode_list(items, scores)
    assert len(raw) == 18
    got_i, got_s = decode_list(raw)
    assert got_i.tolist() == [5, 0, 123456] and got_s.tolist() == [1.5, -0.25, 3.0]
    assert decode_list_py(raw) == ([5, 0, 123456], [1.5, -0.25, 3.0])
    assert decode_list_py(b"") == ([], [])


def test_vectorised_encoding_equals_the_single_list_one():
    items = np.array([[3, 1, 2], [4, -1, -1], [-1, -1, -1]])
    scores = np.array([[0.5, 0.25, 0.125], [1.0, 0, 0], [0, 0, 0]], np.float32)
    assert encode_lists(items, scores) == [
        encode_list(items[0], scores[0]), encode_list(items[1][:1], scores[1][:1]), b""]


def test_remap_drops_gone_items_and_keeps_scores():
    raw = encode_list(np.array([2, 0, 1]), np.array([3.0, 2.0, 1.0]))
    # Item 0 left the catalog, a new item took index 0: 1 -> 2, 2 -> 1, 0 -> dropped.
    (got,) = remap_lists([raw], np.array([-1, 2, 1]))
    assert decode_list_py(got) == ([1, 2], [3.0, 1.0])
    assert remap_lists([b""], np.array([-1, 2, 1])) == [b""]


def test_the_head_of_a_list_is_the_prefix_of_the_whole():
    rng = np.random.default_rng(1)
    for k in (0, 1, 7, 100):
        data = encode_list(rng.integers(0, 1000, k).astype(np.int32),
                           rng.random(k).astype(np.float32))
        items, scores = decode_list_py(data)
        for n in (0, 1, 5, k, k + 3):
            got = decode_head_py(data, n)
            assert got == (items[:n], scores[:n]) if n < k else got == (items, scores)
