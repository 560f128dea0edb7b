"""The block cache behind cnnfast's results and scratch memory: results are ordinary, aligned, writeable
arrays; freed blocks are reused; the cache never holds more than its limit; set_cache_limit / empty_cache
work and reject bad input; arrays (and views of them) stay valid whatever happens to the cache."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import cnnfast
from cnnfast import _core

from conftest import rand


@pytest.fixture
def limit_restored():
    before = cnnfast.get_cache_limit()
    yield
    cnnfast.set_cache_limit(before)


def big_pair(rng, shape=(2, 64, 32, 32)):
    return rand(rng, *shape), rand(rng, *shape)


def test_default_limit_is_512_mib():
    from test_runtime import run_ok

    assert run_ok("import cnnfast; print(cnnfast.get_cache_limit(), cnnfast.config()['cache_limit'])") == (
        f"{512 << 20} {512 << 20}")


def test_results_are_ordinary_aligned_arrays(rng):
    a, b = big_pair(rng)
    y = cnnfast.add(a, b)
    assert y.dtype == np.float32 and y.shape == a.shape
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
    assert y.ctypes.data % 64 == 0
    np.testing.assert_array_equal(y, a + b)
    y[...] = 1.0  # writeable for real
    assert float(y.sum()) == y.size
    z = pickle.loads(pickle.dumps(y))
    np.testing.assert_array_equal(z, y)


def test_freed_results_are_reused(rng, limit_restored):
    cnnfast.set_cache_limit(64 << 20)
    a, b = big_pair(rng)
    y = cnnfast.add(a, b)
    address = y.ctypes.data
    del y
    assert cnnfast.config()["cached_bytes"] >= a.nbytes
    y2 = cnnfast.add(b, a)
    assert y2.ctypes.data == address  # the block just freed, pages already mapped
    np.testing.assert_array_equal(y2, a + b)


def test_small_scratch_is_reused(rng, limit_restored):
    # a 1x1 8 -> 8 on 4x4: its scratch blocks (under 1 KiB each, down to a 64-byte row table) are kept, and
    # the next calls take them again (its 512-byte result is NumPy's own memory)
    cnnfast.set_cache_limit(0)
    cnnfast.set_cache_limit(64 << 20)
    x, w = rand(rng, 1, 8, 4, 4), rand(rng, 8, 8, 1, 1)
    cnnfast.conv2d(x, w)
    after_one = cnnfast.config()["cached_bytes"]
    assert after_one > 0
    for _ in range(3):
        cnnfast.conv2d(x, w)
    assert cnnfast.config()["cached_bytes"] == after_one


def test_limit_zero_keeps_nothing(rng, limit_restored):
    cnnfast.set_cache_limit(0)
    assert cnnfast.get_cache_limit() == 0
    a, b = big_pair(rng)
    for _ in range(3):
        y = cnnfast.add(a, b, relu=True)
        np.testing.assert_array_equal(y, np.maximum(a + b, 0))
        del y
        assert _core._cached_bytes() == 0


def test_cache_never_exceeds_its_limit(rng, limit_restored):
    limit = 3 << 20
    cnnfast.set_cache_limit(limit)
    assert _core._cached_bytes() <= limit
    for channels in (8, 16, 32, 64, 128, 96, 48, 24):
        a = rand(rng, 1, channels, 48, 48)
        ys = [cnnfast.add(a, a) for _ in range(3)]
        del ys
        assert _core._cached_bytes() <= limit
    # a block larger than the limit is freed, not kept
    a = rand(rng, 1, 4, 512, 512)
    before = _core._cached_bytes()
    y = cnnfast.add(a, a)
    del y
    assert _core._cached_bytes() <= before


def test_empty_cache_frees_blocks_and_keeps_the_limit(rng, limit_restored):
    cnnfast.set_cache_limit(32 << 20)
    a, b = big_pair(rng)
    del a, b  # inputs come from NumPy, not the cache
    ys = [cnnfast.add(*big_pair(rng)) for _ in range(4)]
    del ys
    assert _core._cached_bytes() > 0
    cnnfast.empty_cache()
    assert _core._cached_bytes() == 0
    assert cnnfast.get_cache_limit() == 32 << 20


def test_arrays_and_views_outlive_the_cache(rng, limit_restored):
    a, b = big_pair(rng)
    y = cnnfast.conv2d(a, rand(rng, 8, 64, 3, 3), padding=1)
    expected = y.copy()
    view = y[1, 2:5]
    del y
    cnnfast.empty_cache()
    cnnfast.set_cache_limit(0)
    for _ in range(3):  # allocations that could take the block if it had been released
        cnnfast.add(a, b)
    np.testing.assert_array_equal(view, expected[1, 2:5])


def test_results_freed_on_other_threads(rng, limit_restored):
    a, b = big_pair(rng)
    results = [cnnfast.add(a, b) for _ in range(8)]
    expected = a + b

    def drop(items):
        for y in items:
            np.testing.assert_array_equal(y, expected)
        items.clear()

    threads = [threading.Thread(target=drop, args=(results[i::2],)) for i in range(2)]
    del results
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(cnnfast.add(a, b), expected)


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError),
                                      (None, TypeError)])
def test_set_cache_limit_rejects(bad, exc, limit_restored):
    before = cnnfast.get_cache_limit()
    with pytest.raises(exc, match="nbytes"):
        cnnfast.set_cache_limit(bad)
    assert cnnfast.get_cache_limit() == before


def test_private_empty_gives_the_shape(limit_restored):
    y = _core._empty((2, 3, 40, 40))
    assert y.shape == (2, 3, 40, 40) and y.dtype == np.float32 and y.flags.c_contiguous
    assert _core._empty((0, 5)).shape == (0, 5)
    with pytest.raises(ValueError, match="shape"):
        _core._empty((2, -1))
