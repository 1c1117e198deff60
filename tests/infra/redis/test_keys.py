"""The key layout (infra/redis/keys.py): names, version checks and escaped patterns."""

import pytest

from infra.redis.keys import Keys, check_version, glob_escape


def test_keys_follow_the_documented_layout():
    keys = Keys("ns")
    assert (keys.current, keys.versions, keys.started, keys.events) == (
        "ns:current", "ns:versions", "ns:started", "ns:events")
    assert (keys.items_unavailable, keys.items_category, keys.items_rev) == (
        "ns:items:unavailable", "ns:items:category", "ns:items:rev")
    assert (keys.user("v1", "a:b"), keys.shards("v1"), keys.meta("v1"), keys.built("v1"),
            keys.hist("a:b")) == ("ns:v:v1:u:a:b", "ns:v:v1:shards", "ns:v:v1:meta",
                                  "ns:v:v1:built", "ns:hist:a:b")


def test_glob_escape_and_version_pattern():
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    assert Keys("n*s").version_patterns("v1.2_3-x") == ["n\\*s:v:v1.2_3-x:*"]
    assert check_version("20250101T000000Z-1a2b") == "20250101T000000Z-1a2b"
    for bad in ("v1:*", "*", "", "-v", "v" * 65, None):
        with pytest.raises(ValueError, match="malformed version"):
            Keys().version_patterns(bad)


def test_a_pattern_matches_only_its_version_keys(redis_client):
    for key in ("t:v:v1:u:a", "t:v:v1:shards", "t:v:v10:u:a", "t:v:v1x:u:a", "t:hist:v1"):
        redis_client.set(key, "1")
    found = sorted(redis_client.scan_iter(*Keys("t").version_patterns("v1"), count=1000))
    assert found == [b"t:v:v1:shards", b"t:v:v1:u:a"]
