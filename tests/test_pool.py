"""max_pool2d, avg_pool2d and global_avg_pool2d on every ISA path against the NumPy float64 reference, with
PyTorch's ceil_mode / padding / count_include_pad semantics, NaN and infinity handling, and PyTorch itself
when installed.

Tolerances: max pooling is exact (it only selects). Averages sum at most kH * kW float32 values:
|y - ref| <= 1e-6 * kH * kW * max|x| + 1e-6 * |ref|; global averages over HW values: 1e-6 * sqrt(HW) * max|x|
+ 1e-5 * |ref|."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core

import numpy_reference as ref
from conftest import assert_close, assert_float32_rounding_of, examples, rand, run_with_memory_limit


def avg_tol(x, k):
    kh, kw = ref.pair(k)
    return 1e-6 * kh * kw * (float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 0.0) + 1e-30


# --- worked example --------------------------------------------------------------------------------

POOL_4X4 = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], dtype=np.float32)


def test_max_pool_4x4_f2_s2_gives_2x2(isa):
    y = cnnfast.max_pool2d(POOL_4X4[None, None], 2, 2)
    assert y.shape == (1, 1, 2, 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[9, 2], [6, 3]])
    np.testing.assert_array_equal(cnnfast.max_pool2d(POOL_4X4[None, None], 2), y)  # stride defaults to the kernel
    np.testing.assert_array_equal(cnnfast.avg_pool2d(POOL_4X4[None, None], 2)[0, 0], [[3.75, 1.25], [3.75, 2.0]])
    # f=3, s=1 over the same matrix
    np.testing.assert_array_equal(cnnfast.max_pool2d(POOL_4X4[None, None], 3, 1)[0, 0], [[9, 9], [9, 9]])
    np.testing.assert_array_equal(cnnfast.global_avg_pool2d(POOL_4X4[None, None])[0, 0], [[43 / 16]])


# --- randomized against the NumPy reference -------------------------------------------------------


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    square = draw(st.booleans())
    if square:
        kw = kh
    stride = draw(st.sampled_from([None, 1, 2, 3, (1, 2), (2, 1), (3, 2), 6]))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 14))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, 20))
    return dict(
        n=draw(st.sampled_from([1, 2, 0])),
        c=draw(st.sampled_from([1, 3, 4, 8, 13, 17])),
        h=h,
        w=w,
        kernel_size=(kh, kw) if not square else kh,
        stride=stride,
        padding=(ph, pw) if ph != pw else ph,
        ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()),
        nan=draw(st.sampled_from([False, False, False, True])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def pool_inputs(case):
    rng = np.random.default_rng(case["seed"])
    x = rand(rng, case["n"], case["c"], case["h"], case["w"], low=-4, high=4)
    if case["nan"] and x.size:
        x.flat[rng.integers(0, x.size, size=3)] = np.nan
    return x


def pool_args(case):
    return dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"],
                ceil_mode=case["ceil_mode"])


@settings(max_examples=examples(100))
@given(case=pool_cases())
def test_max_pool2d_matches_numpy_reference(isa, case):
    x = pool_inputs(case)
    expected = ref.max_pool2d(x, **pool_args(case))
    y = cnnfast.max_pool2d(x, **pool_args(case))
    assert y.dtype == np.float32 and y.shape == expected.shape
    np.testing.assert_array_equal(y, expected.astype(np.float32))


@settings(max_examples=examples(100))
@given(case=pool_cases())
def test_avg_pool2d_matches_numpy_reference(isa, case):
    x = pool_inputs(case)
    kw = dict(pool_args(case), count_include_pad=case["count_include_pad"])
    expected = ref.avg_pool2d(x, **kw)
    y = cnnfast.avg_pool2d(x, **kw)
    assert_close(y, expected, atol=avg_tol(x, case["kernel_size"]), rtol=1e-6, what=f"avg_pool2d {x.shape} {kw}")


@settings(max_examples=examples(40))
@given(case=pool_cases())
def test_cpp_reference_pools_match_numpy_reference(case):
    x = pool_inputs(case)
    np.testing.assert_array_equal(_core.reference.max_pool2d(x, **pool_args(case)),
                                  ref.max_pool2d(x, **pool_args(case)).astype(np.float32))
    kw = dict(pool_args(case), count_include_pad=case["count_include_pad"])
    assert_float32_rounding_of(_core.reference.avg_pool2d(x, **kw), ref.avg_pool2d(x, **kw), what="reference.avg_pool2d")


# --- ceil_mode, padding, count_include_pad ----------------------------------------------------------


@pytest.mark.parametrize(
    "h,k,s,p,expected_floor,expected_ceil",
    [
        (5, 2, 2, 0, 2, 3),  # ceil keeps the last partial window
        (6, 2, 2, 0, 3, 3),
        (6, 3, 2, 1, 3, 4),  # (6 + 2 - 3) / 2 = 2.5: ceil adds a window starting at 5, inside the input
        (5, 3, 2, 1, 3, 3),  # (5 + 2 - 3) / 2 = 2 exactly: nothing to round
        (7, 3, 3, 1, 3, 3),
        (1, 1, 2, 0, 1, 1),
        (4, 4, 3, 2, 2, 2),  # ceil would add a window starting at 4, in the right padding only: dropped
        (4, 4, 3, 1, 1, 2),
        (8, 3, 3, 1, 3, 3),
        (9, 3, 4, 0, 2, 3),
    ],
)
def test_pool_output_sizes(isa, h, k, s, p, expected_floor, expected_ceil):
    x = np.zeros((1, 1, h, h), np.float32)
    for fn in (cnnfast.max_pool2d, cnnfast.avg_pool2d):
        assert fn(x, k, s, p).shape == (1, 1, expected_floor, expected_floor)
        assert fn(x, k, s, p, ceil_mode=True).shape == (1, 1, expected_ceil, expected_ceil)
    assert ref.pool_out_size(h, k, s, p, False) == expected_floor
    assert ref.pool_out_size(h, k, s, p, True) == expected_ceil


def test_avg_pool_count_include_pad_both_ways(isa):
    x = np.ones((1, 1, 3, 3), np.float32)
    incl = cnnfast.avg_pool2d(x, 3, 1, 1, count_include_pad=True)[0, 0]
    excl = cnnfast.avg_pool2d(x, 3, 1, 1, count_include_pad=False)[0, 0]
    # a corner window holds 4 of the 9 positions inside the input, an edge window 6
    np.testing.assert_allclose(incl, [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]], rtol=1e-6)
    np.testing.assert_array_equal(excl, np.ones((3, 3)))
    # ceil_mode: the part of the last window past the padded input counts in neither divisor
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    y = cnnfast.avg_pool2d(x, 2, 2, 0, ceil_mode=True, count_include_pad=True)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2] == 24.0  # a 1x1 window: divided by 1, not by 4
    np.testing.assert_allclose(y[0, 0, 0, 2], (4 + 9) / 2)
    y = cnnfast.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    # rows: windows start at -1, 1, 3; the last spans 3..5, with 5 in the padding: divisor 3 per dimension
    np.testing.assert_allclose(y[0, 0, 2, 2], (18 + 19 + 23 + 24) / 9, rtol=1e-6)
    np.testing.assert_allclose(y[0, 0, 0, 0], (0 + 1 + 5 + 6) / 9, rtol=1e-6)
    yx = cnnfast.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(yx[0, 0, 2, 2], (18 + 19 + 23 + 24) / 4, rtol=1e-6)
    np.testing.assert_allclose(yx[0, 0, 0, 0], (0 + 1 + 5 + 6) / 4, rtol=1e-6)


@pytest.mark.parametrize("k", [10**5, 3 * 10**6 + 1])
def test_pool_windows_far_larger_than_the_input(isa, k):
    # mostly padding: both kernels visit only the input, and the divisor (k * k with count_include_pad) is exact
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) + 1
    p = k // 2
    for cip in (True, False):
        expected = ref.avg_pool2d(x, k, 1, p, count_include_pad=cip)
        for fn in (cnnfast.avg_pool2d, _core.reference.avg_pool2d):
            y = fn(x, k, 1, p, count_include_pad=cip)
            assert_close(y, expected, atol=0, rtol=1e-6, what=f"k={k} count_include_pad={cip}")
    for fn in (cnnfast.max_pool2d, _core.reference.max_pool2d):
        np.testing.assert_array_equal(fn(x, k, 1, p), ref.max_pool2d(x, k, 1, p).astype(np.float32))


def test_max_pool_padding_is_never_selected(isa):
    x = np.full((1, 2, 4, 5), -7.0, np.float32)
    y = cnnfast.max_pool2d(x, 3, 1, 1)
    np.testing.assert_array_equal(y, np.full((1, 2, 4, 5), -7.0))
    y = cnnfast.max_pool2d(x, (3, 5), 2, (1, 2), ceil_mode=True)
    assert (y == -7).all()


# --- NaN and infinities ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape,k,s,p", [((8, 8), 2, 2, 0), ((8, 9), 2, 2, 0), ((9, 7), 3, 2, 1), ((6, 6), 3, 3, 0)])
def test_max_pool_propagates_nan(isa, shape, k, s, p):
    h, w = shape
    for ceil_mode in (False, True):
        for pos in [(0, 0), (h - 1, w - 1), (3, 4), (1, 0), (0, 1)]:
            x = np.arange(h * w, dtype=np.float32).reshape(1, 1, h, w)
            x[0, 0][pos] = np.nan
            y = cnnfast.max_pool2d(x, k, s, p, ceil_mode=ceil_mode)
            expected = ref.max_pool2d(x, k, s, p, ceil_mode=ceil_mode)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"NaN at {pos}")
            np.testing.assert_array_equal(y, expected.astype(np.float32))
            # the NaN wins whatever its place in the window relative to the maximum
            y_neg = cnnfast.max_pool2d(-x, k, s, p, ceil_mode=ceil_mode)
            np.testing.assert_array_equal(np.isnan(y_neg), np.isnan(expected))


def test_max_pool_window_all_nan_and_first_element_nan(isa):
    x = np.array([[np.nan, 1, 5, np.nan], [2, 3, 7, 8]], np.float32)[None, None]
    y = cnnfast.max_pool2d(x, 2, 2)
    assert np.isnan(y).all()
    x = np.full((1, 1, 4, 4), np.nan, np.float32)
    assert np.isnan(cnnfast.max_pool2d(x, 2)).all()
    assert np.isnan(cnnfast.max_pool2d(x, 3, 1, 1)).all()
    assert np.isnan(cnnfast.avg_pool2d(x, 2)).all()


def test_pool_infinities(isa):
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)
    np.testing.assert_array_equal(cnnfast.max_pool2d(x, 2), np.full((1, 1, 2, 2), -np.inf))
    np.testing.assert_array_equal(cnnfast.max_pool2d(x, 3, 1, 1), np.full((1, 1, 4, 4), -np.inf))
    np.testing.assert_array_equal(cnnfast.avg_pool2d(x, 2), np.full((1, 1, 2, 2), -np.inf))
    x[0, 0, 0, 0] = 5.0
    np.testing.assert_array_equal(cnnfast.max_pool2d(x, 2)[0, 0], [[5, -np.inf], [-np.inf, -np.inf]])
    x[0, 0, 1, 1] = np.inf
    y = cnnfast.avg_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0])  # inf + -inf
    assert cnnfast.max_pool2d(x, 2)[0, 0, 0, 0] == np.inf
    g = cnnfast.global_avg_pool2d(x)
    assert np.isnan(g).all()


# --- the 2x2 stride-2 fast path and the general path ------------------------------------------------


@pytest.mark.parametrize("h,w", [(2, 2), (4, 6), (9, 7), (8, 9), (25, 33), (112, 112), (2, 5), (5, 2), (3, 3)])
def test_max_pool_2x2_s2(isa, h, w, rng):
    x = rand(rng, 2, 3, h, w)
    for ceil_mode in (False, True):
        np.testing.assert_array_equal(cnnfast.max_pool2d(x, 2, 2, ceil_mode=ceil_mode),
                                      ref.max_pool2d(x, 2, 2, ceil_mode=ceil_mode).astype(np.float32))


# 2x2 stride-2 pooling of even planes with output rows of up to 8 floats (with AVX2 up to 32) takes the row-pair
# path: the planes back to back as one run of row pairs, split in runs of up to 64 (as many as 2048 column-pair
# maxima hold) across threads. Runs that start and end inside a plane, a value at each row's ends that must not
# leak into the next row's or plane's windows, NaN anywhere; rows just past each limit take the row path.
@pytest.mark.parametrize("n,c,h,w", [(64, 16, 10, 10), (1, 832, 14, 14), (1, 1, 2, 2), (2, 3, 4, 16), (1, 5, 14, 14),
                                     (1, 3, 6, 12), (1, 130, 2, 2), (2, 7, 22, 6), (1, 2, 2, 18), (3, 6, 28, 28),
                                     (2, 5, 30, 30), (1, 9, 56, 56), (1, 3, 64, 64), (1, 2, 8, 66), (2, 3, 12, 62)])
def test_max_pool_2x2_s2_row_pairs(isa, n, c, h, w, rng, threads_restored):
    x = rand(rng, n, c, h, w)
    x[..., 0] = 100 + rng.random((n, c, h), dtype=np.float32)
    x[..., -1] = -100
    x[..., 1::3, -1] = 200
    x[:, :, -1, :] = 300
    x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
    expected = ref.max_pool2d(x, 2, 2).astype(np.float32)
    for threads in (1, 2):
        with cnnfast.num_threads(threads):
            for ceil_mode in (False, True):
                np.testing.assert_array_equal(cnnfast.max_pool2d(x, 2, 2, ceil_mode=ceil_mode), expected)


# 2x2 and 3x3 windows with stride 1 or 2 and padding 0 or 1 take the vector-row path: loads masked to the
# input's columns, a shift by one lane for the third tap, masked stores. Widths around multiples of every
# ISA's vector (4, 8, 16 floats); the values at a row's ends must not leak into the neighbouring rows' windows.
@pytest.mark.parametrize("h,w", [(2, 2), (2, 6), (7, 7), (14, 14), (15, 8), (5, 16), (4, 17), (3, 31), (6, 32),
                                 (3, 33), (3, 40), (2, 47), (3, 49), (28, 28), (13, 65), (9, 112)])
@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 0), (3, 2, 1), (3, 1, 0), (2, 1, 0), (2, 1, 1), (2, 2, 1)])
def test_max_pool_vector_row_path(isa, h, w, k, s, p, rng):
    if min(h, w) + 2 * p < k:
        pytest.skip("the window does not fit")
    x = rand(rng, 2, 3, h, w)
    x[..., 0] = 100 + rng.random((2, 3, h), dtype=np.float32)
    x[..., -1] = -100
    x[..., 1::3, -1] = 200
    for ceil_mode in (False, True):
        expected = ref.max_pool2d(x, k, s, p, ceil_mode=ceil_mode).astype(np.float32)
        np.testing.assert_array_equal(cnnfast.max_pool2d(x, k, s, p, ceil_mode=ceil_mode), expected)
        for pos in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, 1), (1, w // 2), (0, min(w - 1, 16))]:
            xn = x.copy()
            xn[1, 2][pos] = np.nan
            y = cnnfast.max_pool2d(xn, k, s, p, ceil_mode=ceil_mode)
            expected = ref.max_pool2d(xn, k, s, p, ceil_mode=ceil_mode)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"NaN at {pos}")
            np.testing.assert_array_equal(y, expected.astype(np.float32))


# 3x3 stride-1 windows padded by 1 on planes narrower than two vectors go flat, a vector of pixels at a time
# across row ends: every plane is offset by a large amount from its neighbours so a tap that strays into the
# next row's, the previous row's or another plane's pixels changes the result.
@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (5, 1), (2, 2), (7, 7), (14, 14), (3, 31), (9, 15), (4, 16),
                                 (30, 31), (6, 8), (11, 3)])
def test_max_pool_same_3x3_small_planes(isa, h, w, rng, threads_restored):
    x = rand(rng, 3, 37, h, w)
    x += (1000 * (np.arange(3 * 37) % 3)).reshape(3, 37, 1, 1).astype(np.float32)
    x[:, ::2, :, 0] += 500
    x[:, 1::2, -1, :] -= 700
    expected = ref.max_pool2d(x, 3, 1, 1).astype(np.float32)
    for threads in (1, 2):
        cnnfast.set_num_threads(threads)
        np.testing.assert_array_equal(cnnfast.max_pool2d(x, 3, 1, 1), expected)
    xn = x.copy()
    xn[1, 5, h - 1, w - 1] = np.nan
    xn[2, 36, 0, 0] = np.nan
    y, expected = cnnfast.max_pool2d(xn, 3, 1, 1), ref.max_pool2d(xn, 3, 1, 1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(y, expected.astype(np.float32))


@pytest.mark.parametrize("c", [1, 3, 4, 8, 13, 16, 17, 33, 64])
def test_pools_channel_counts(isa, c, rng):
    x = rand(rng, 2, c, 9, 7)
    for k, s, p in [(3, 2, 1), (2, 1, 0), (3, 3, 0), ((2, 3), (1, 2), (1, 1))]:
        np.testing.assert_array_equal(cnnfast.max_pool2d(x, k, s, p), ref.max_pool2d(x, k, s, p).astype(np.float32))
        assert_close(cnnfast.avg_pool2d(x, k, s, p), ref.avg_pool2d(x, k, s, p), atol=avg_tol(x, k), rtol=1e-6)


def test_pool_edge_shapes(isa, rng):
    # N = 0, 1x1 images, kernel as large as the input, stride larger than the kernel
    for fn, rfn in ((cnnfast.max_pool2d, ref.max_pool2d), (cnnfast.avg_pool2d, ref.avg_pool2d)):
        assert fn(np.zeros((0, 3, 8, 8), np.float32), 2).shape == (0, 3, 4, 4)
        x = rand(rng, 2, 3, 1, 1)
        np.testing.assert_allclose(fn(x, 1), x)
        np.testing.assert_allclose(fn(x, 1, 3), x)
        x = rand(rng, 2, 3, 9, 7)
        assert_close(fn(x, (9, 7)), rfn(x, (9, 7)), atol=avg_tol(x, (9, 7)))
        assert fn(x, (9, 7)).shape == (2, 3, 1, 1)
        for k, s in [(1, 2), (2, 3), (2, 5), (3, (7, 2))]:
            for ceil_mode in (False, True):
                assert_close(fn(x, k, s, ceil_mode=ceil_mode), rfn(x, k, s, ceil_mode=ceil_mode), atol=avg_tol(x, k))


def test_pools_accept_float64_and_non_contiguous(isa, rng):
    x = rand(rng, 2, 3, 9, 8)
    for fn in (cnnfast.max_pool2d, cnnfast.avg_pool2d):
        expected = fn(x, 3, 2, 1)
        np.testing.assert_array_equal(fn(x.astype(np.float64), 3, 2, 1), expected)
        xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
        np.testing.assert_array_equal(fn(xt, 3, 2, 1), expected)
        np.testing.assert_array_equal(fn(np.repeat(x, 2, axis=3)[..., ::2], 3, 2, 1), expected)
    np.testing.assert_array_equal(cnnfast.global_avg_pool2d(x[:, :, ::-1]), cnnfast.global_avg_pool2d(x[:, :, ::-1].copy()))


def test_pool_thread_counts_agree(isa, rng, threads_restored):
    x = rand(rng, 2, 17, 25, 33)
    with cnnfast.num_threads(1):
        one = [cnnfast.max_pool2d(x, 3, 2, 1), cnnfast.avg_pool2d(x, 3, 2, 1), cnnfast.max_pool2d(x, 2),
               cnnfast.global_avg_pool2d(x)]
    with cnnfast.num_threads(2):
        two = [cnnfast.max_pool2d(x, 3, 2, 1), cnnfast.avg_pool2d(x, 3, 2, 1), cnnfast.max_pool2d(x, 2),
               cnnfast.global_avg_pool2d(x)]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# Inputs large enough to be split between threads, a run of planes each (one plane: one thread idle), through
# the vector-row and flat paths, whose write prefetches stop at the end of their thread's output.
@pytest.mark.parametrize("shape", [(1, 1, 200, 200), (1, 3, 112, 112), (2, 37, 28, 28), (1, 101, 14, 14)])
@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (3, 1, 1), (2, 2, 0)])
def test_max_pool_split_between_threads(isa, shape, k, s, p, rng, threads_restored):
    x = rand(rng, *shape)
    expected = ref.max_pool2d(x, k, s, p, ceil_mode=True).astype(np.float32)
    for threads in (1, 2, 3):
        cnnfast.set_num_threads(threads)
        np.testing.assert_array_equal(cnnfast.max_pool2d(x, k, s, p, ceil_mode=True), expected)


# --- global average pooling ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 9, 7), (1, 2048, 7, 7), (2, 5, 25, 33), (1, 2, 300, 301),
                                   (0, 4, 3, 3), (3, 0, 2, 2), (1, 17, 1, 13)])
def test_global_avg_pool2d(isa, shape, rng):
    x = rand(rng, *shape, low=-2, high=3)
    y = cnnfast.global_avg_pool2d(x)
    expected = ref.global_avg_pool2d(x)
    assert y.shape == shape[:2] + (1, 1) and y.dtype == np.float32
    hw = shape[2] * shape[3]
    atol = 1e-6 * math.sqrt(hw) * 3 + 1e-30
    assert_close(y, expected, atol=atol, rtol=1e-5, what=f"global_avg_pool2d {shape}")
    assert_float32_rounding_of(_core.reference.global_avg_pool2d(x), expected, atol=1e-12, what="reference")


@settings(max_examples=examples(30))
@given(n=st.integers(0, 3), c=st.integers(0, 70), h=st.integers(1, 40), w=st.integers(1, 40),
       seed=st.integers(0, 2**31 - 1))
def test_global_avg_pool2d_matches_numpy_reference(isa, n, c, h, w, seed):
    x = rand(np.random.default_rng(seed), n, c, h, w, low=-2, high=3)
    expected = ref.global_avg_pool2d(x)
    assert_close(cnnfast.global_avg_pool2d(x), expected, atol=3e-6 * math.sqrt(h * w), rtol=1e-5)
    assert_float32_rounding_of(_core.reference.global_avg_pool2d(x), expected, atol=1e-12)


def test_global_avg_pool2d_is_a_full_window_average(isa, rng):
    x = rand(rng, 2, 13, 9, 7)
    assert_close(cnnfast.global_avg_pool2d(x), ref.avg_pool2d(x, (9, 7)), atol=1e-6 * 8, rtol=1e-6)
    x[1, 4, 3, 3] = np.nan
    y = cnnfast.global_avg_pool2d(x)
    assert np.isnan(y[1, 4]).all() and np.isnan(y).sum() == 1


# Planes of up to 8 vectors are summed a vector of planes at a time (a shuffle tree); the rest one by one.
@pytest.mark.parametrize("hw", [1, 3, 15, 16, 17, 49, 128, 129])
@pytest.mark.parametrize("planes", [1, 4, 15, 16, 33, 64])
def test_global_avg_pool2d_plane_groups(isa, hw, planes, rng):
    x = rand(rng, 1, planes, 1, hw, low=-2, high=3)
    x += np.arange(planes, dtype=np.float32)[None, :, None, None] * 10  # a plane's sum says which plane it is
    assert_close(cnnfast.global_avg_pool2d(x), ref.global_avg_pool2d(x), atol=3e-6 * math.sqrt(hw) * 100, rtol=1e-5)
    x[0, planes // 2, 0, hw - 1] = np.nan
    y = cnnfast.global_avg_pool2d(x)
    assert np.isnan(y[0, planes // 2]).all() and np.isnan(y).sum() == 1


# --- PyTorch as a second opinion -----------------------------------------------------------------

TORCH_POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2, stride=2, ceil_mode=True),
    dict(kernel_size=5, stride=3, padding=2, ceil_mode=True),
    dict(kernel_size=4, stride=3, padding=2),
    dict(kernel_size=1, stride=2),
]


@pytest.mark.parametrize("case", TORCH_POOL_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("hw", [(9, 7), (25, 33), (8, 8)])
def test_pools_match_pytorch(isa, case, hw):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    x = rand(rng, 2, 5, *hw, low=-3, high=3)
    x[0, 1, 2, 3] = np.nan
    tx = torch.from_numpy(x)
    np.testing.assert_array_equal(cnnfast.max_pool2d(x, **case), F.max_pool2d(tx, **case).numpy())
    for cip in (True, False):
        expected = F.avg_pool2d(tx, count_include_pad=cip, **case).numpy()
        y = cnnfast.avg_pool2d(x, count_include_pad=cip, **case)
        assert_close(y, expected.astype(np.float64), atol=2 * avg_tol(x, case["kernel_size"]),
                     rtol=1e-6, what=f"avg_pool2d vs torch {case} count_include_pad={cip}")


def test_global_avg_pool_matches_pytorch_adaptive_avg_pool(isa):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    for shape in [(2, 64, 7, 7), (1, 3, 25, 33), (3, 1, 1, 1)]:
        x = rand(rng, *shape)
        expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), 1).numpy()
        assert_close(cnnfast.global_avg_pool2d(x), expected.astype(np.float64),
                     atol=2e-6 * math.sqrt(shape[2] * shape[3]), rtol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS")
def test_pool_kernel_wider_than_memory_allows():
    # A window of 2^34 columns over a 4x4 image, almost all of it padding: the output is 4x5 and needs nothing
    # but the input. Run under a 4 GiB address-space cap, on every ISA; the process must neither abort nor fail.
    proc = run_with_memory_limit(
        """
        import numpy as np, cnnfast
        from cnnfast import _core
        x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        k = 2**34
        for isa in _core._supported_isas():
            _core._set_isa(isa)
            y = cnnfast.max_pool2d(x, (1, k), 1, (0, k // 2))
            assert y.shape == (1, 1, 4, 5), y.shape
            assert (y == x.max(axis=3, keepdims=True)).all(), (isa, y)
            y = cnnfast.avg_pool2d(x, (1, k), 1, (0, k // 2), count_include_pad=False)
            assert np.allclose(y, x.mean(axis=3, keepdims=True)), (isa, y)
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
