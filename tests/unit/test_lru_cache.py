"""The bounded text-encoding cache of checkpoint backends (safecfg_comfy.backends.LRUCache)."""

import pytest

from safecfg_comfy.backends import ENCODING_CACHE_SIZE, LRUCache


def test_the_least_recently_used_entry_is_dropped_first():
    cache, made = LRUCache(2), []

    def make(key):
        made.append(key)
        return key.upper()

    assert [cache.get(k, lambda k=k: make(k)) for k in ("a", "b", "a", "c")] == ["A", "B", "A", "C"]
    assert made == ["a", "b", "c"]  # "a" came from the cache the second time
    assert len(cache) == 2 and "b" not in cache and "a" in cache and "c" in cache  # "a" was used after "b"
    cache.get("b", lambda: make("b"))
    assert made[-1] == "b" and "a" not in cache  # made again; now "a" was the oldest


def test_size_zero_keeps_nothing_and_a_negative_size_is_refused():
    cache = LRUCache(0)
    assert cache.get("a", lambda: 1) == 1 and len(cache) == 0
    with pytest.raises(ValueError, match="cache size must be >= 0, got -1"):
        LRUCache(-1)


def test_the_default_bound_holds_a_full_shard_of_distinct_texts():
    assert ENCODING_CACHE_SIZE >= 3 * 16  # positives, negatives and targets of a --trajectory-batch 16 shard
