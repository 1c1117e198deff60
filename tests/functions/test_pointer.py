"""The version pointer cache (functions/pointer.py), on a counting reader and a given clock."""

from functions.pointer import PointerCache


def test_a_confirmed_read_stays_fresh_for_ttl_seconds():
    reads = []
    cache = PointerCache(lambda: reads.append(1) or ("v1", 3), ttl=2.0)
    assert not cache.fresh(100.0)  # never read
    assert cache.read() == ("v1", 3) and len(reads) == 1
    assert not cache.fresh(100.0)  # read, but not confirmed (e.g. Redis failed after)
    cache.confirm(100.0)
    assert cache.fresh(100.0) and cache.fresh(102.0)
    assert not cache.fresh(102.01)


def test_ttl_zero_reads_every_time():
    cache = PointerCache(lambda: (None, 0), ttl=0)
    cache.confirm(5.0)
    assert cache.fresh(5.0) and not cache.fresh(5.000001)
