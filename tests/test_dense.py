"""add (the residual add + ReLU) and linear (the fully connected layer) on every ISA path.

add is one float32 addition per element, so it must equal NumPy's float32 a + b exactly. linear sums `in`
float32 products: |y - ref| <= 1e-5 * (sqrt(in) * max|x| * max|w| + max|bias|) + 1e-5 * |ref|."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core

import numpy_reference as ref
from conftest import GEMM_TILE, assert_close, assert_float32_rounding_of, examples, rand, sentinel

# --- add -------------------------------------------------------------------------------------------


def expected_add(a, b, relu):
    with np.errstate(invalid="ignore"):
        y = a.astype(np.float32) + b.astype(np.float32)
    return np.where(y < 0, np.float32(0), y) if relu else y


SIZES = [0, 1, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, (1 << 16) - 1, 1 << 16, (1 << 16) + 17, 200_003]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("relu", [False, True])
def test_add_matches_numpy(isa, size, relu, rng):
    a, b = rand(rng, size, low=-2, high=2), rand(rng, size, low=-2, high=2)
    out = sentinel(size)
    y = cnnfast.add(a, b, relu=relu, out=out)
    assert y is out or np.shares_memory(y, out)
    np.testing.assert_array_equal(out, expected_add(a, b, relu))
    np.testing.assert_array_equal(cnnfast.add(a, b, relu), expected_add(a, b, relu))
    np.testing.assert_array_equal(_core.reference.add(a, b, relu), expected_add(a, b, relu))


@settings(max_examples=examples(40))
@given(
    shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
    relu=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_add_shapes(isa, shape, relu, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, *shape), rand(rng, *shape)
    y = cnnfast.add(a, b, relu=relu)
    assert y.shape == tuple(shape) and y.dtype == np.float32
    np.testing.assert_array_equal(y, expected_add(a, b, relu))
    np.testing.assert_array_equal(y, ref.add(a, b, relu).astype(np.float32))


def test_add_resnet_block_shape(isa, rng):
    a, b = rand(rng, 1, 256, 56, 56), rand(rng, 1, 256, 56, 56)
    out = sentinel(a.shape)
    cnnfast.add(a, b, relu=True, out=out)
    np.testing.assert_array_equal(out, expected_add(a, b, True))


def test_add_in_place_out_a_and_out_b(isa, rng):
    for size in (17, (1 << 16) + 5):
        a, b = rand(rng, 3, size), rand(rng, 3, size)
        expected = expected_add(a, b, True)
        a1 = a.copy()
        y = cnnfast.add(a1, b, relu=True, out=a1)
        assert y is a1 or np.shares_memory(y, a1)
        np.testing.assert_array_equal(a1, expected)
        np.testing.assert_array_equal(b, b.copy())
        b1 = b.copy()
        cnnfast.add(a, b1, relu=True, out=b1)
        np.testing.assert_array_equal(b1, expected)
        # all three the same array: x + x
        c = a.copy()
        cnnfast.add(c, c, out=c)
        np.testing.assert_array_equal(c, a + a)
        # an exact alias through another view object is still an exact alias
        d = a.copy()
        cnnfast.add(d, b, out=d[...])
        np.testing.assert_array_equal(d, a + b)


def test_add_partial_overlap_rejected(isa):
    buf = np.arange(20, dtype=np.float32)
    a, b = buf[0:10], np.ones(10, np.float32)
    for out in (buf[1:11], buf[5:15]):
        with pytest.raises(ValueError, match=r"out.*a"):
            cnnfast.add(a, b, out=out)
    np.testing.assert_array_equal(buf, np.arange(20))  # nothing written
    with pytest.raises(ValueError, match=r"out.*b"):
        cnnfast.add(b, a, out=buf[3:13])
    # a and b may overlap each other: only out is written
    y = cnnfast.add(buf[0:10], buf[2:12])
    np.testing.assert_array_equal(y, np.arange(10) + np.arange(2, 12))


def test_add_nan_and_inf_stay_through_relu(isa):
    a = np.array([np.nan, 1, -1, np.inf, -np.inf, np.inf, -5, 0, -0.0] + [0] * 40, np.float32)
    b = np.array([1, np.nan, np.nan, 1, 1, -np.inf, 2, 0, 0] + [0] * 40, np.float32)
    for relu in (False, True):
        y = cnnfast.add(a, b, relu=relu)
        e = expected_add(a, b, relu)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(e))
        np.testing.assert_array_equal(y, e)
    y = cnnfast.add(a, b, relu=True)
    assert np.isnan(y[:3]).all() and np.isnan(y[5]) and y[3] == np.inf and y[4] == 0 and y[6] == 0


def test_add_converts_float64_and_non_contiguous(isa, rng):
    a, b = rand(rng, 4, 9, 7), rand(rng, 4, 9, 7)
    expected = expected_add(a, b, False)
    np.testing.assert_array_equal(cnnfast.add(a.astype(np.float64), b), expected)
    np.testing.assert_array_equal(cnnfast.add(a, b.astype(np.float64)), expected)
    at = np.ascontiguousarray(a.transpose(2, 1, 0)).transpose(2, 1, 0)
    np.testing.assert_array_equal(cnnfast.add(at, b[::-1][::-1]), expected)
    np.testing.assert_array_equal(cnnfast.add(a.tolist(), b.tolist()), expected)
    np.testing.assert_array_equal(cnnfast.add(np.float32(2), np.float32(3)), np.float32(5))


def test_add_thread_counts_agree(isa, rng, threads_restored):
    a, b = rand(rng, 300_001), rand(rng, 300_001)
    with cnnfast.num_threads(1):
        one = cnnfast.add(a, b, relu=True)
    with cnnfast.num_threads(3):
        np.testing.assert_array_equal(cnnfast.add(a, b, relu=True), one)


# --- linear ----------------------------------------------------------------------------------------


def linear_tol(x, w, b=None):
    mx = float(np.max(np.abs(x))) if x.size else 0.0
    mw = float(np.max(np.abs(w))) if w.size else 0.0
    mb = float(np.max(np.abs(b))) if b is not None and b.size else 0.0
    return 1e-5 * (math.sqrt(max(w.shape[1], 1)) * mx * mw + mb) + 1e-30


def check_linear(x, w, b=None, activation=None):
    expected = ref.linear(x, w, b, activation)
    y = cnnfast.linear(x, w, b, activation=activation)
    assert y.dtype == np.float32 and y.shape == expected.shape and y.flags.c_contiguous
    assert_close(y, expected, atol=linear_tol(x, w, b), what=f"linear {x.shape} @ {w.shape}.T")
    return y


@settings(max_examples=examples(100))
@given(
    lead=st.sampled_from([(), (1,), (2,), (3,), (4,), (5,), (9,), (33,), (2, 3), (1, 1, 5), (0,), (3, 0)]),
    in_f=st.sampled_from([1, 2, 7, 16, 63, 256, 257, 300, 600]),
    out_f=st.integers(1, 70),
    bias=st.booleans(),
    relu=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_linear_matches_numpy_reference(isa, lead, in_f, out_f, bias, relu, seed):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, *lead, in_f), rand(rng, out_f, in_f)
    b = rand(rng, out_f) if bias else None
    act = "relu" if relu else None
    y = check_linear(x, w, b, act)
    assert y.shape == lead + (out_f,)
    assert_float32_rounding_of(_core.reference.linear(x, w, b, act), ref.linear(x, w, b, act),
                               atol=1e-12 * linear_tol(x, w, b) * 1e5, what="reference.linear")


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 32, 33])
def test_linear_gemv_and_gemm_paths(isa, batch, rng):
    # batch <= 32 takes passes over W (4 or 8 rows of x each, 1 to 4 rows of W at a time, so out_features
    # runs through those tails), larger batches the packed GEMM, whose columns are the output features, so
    # out_features runs through the NR tails too
    nr, mr = GEMM_TILE[isa]
    for out_f in sorted({1, 2, 3, 5, nr - 1, nr, nr + 1, 8 * nr + 1, mr + 1}):
        for in_f in (3, 256, 257, 1000):
            x, w = rand(rng, batch, in_f), rand(rng, out_f, in_f)
            check_linear(x, w, rand(rng, out_f), "relu")
            check_linear(x, w)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_linear_batch_split_across_threads(isa, threads, rng, threads_restored):
    # many rows and few output features: one N block, the batch split in whole MR panels
    with cnnfast.num_threads(threads):
        for batch, in_f, out_f in [(200, 300, 5), (37, 600, 48), (1000, 3, 1)]:
            x, w = rand(rng, batch, in_f), rand(rng, out_f, in_f)
            check_linear(x, w, rand(rng, out_f), "relu")


def test_linear_one_two_three_dimensional_x(isa, rng):
    w, b = rand(rng, 10, 7), rand(rng, 10)
    x = rand(rng, 2, 3, 7)
    y3 = check_linear(x, w, b)
    assert y3.shape == (2, 3, 10)
    y2 = check_linear(x.reshape(6, 7), w, b)
    np.testing.assert_array_equal(y3.reshape(6, 10), y2)
    y1 = check_linear(x[1, 2], w, b)
    assert y1.shape == (10,)
    np.testing.assert_allclose(y1, y3[1, 2], atol=linear_tol(x, w, b))
    assert check_linear(rand(rng, 2, 1, 3, 7), w, b).shape == (2, 1, 3, 10)


def test_linear_relu_and_bias(isa, rng):
    x, w, b = rand(rng, 9, 40), rand(rng, 30, 40), rand(rng, 30, low=-3, high=3)
    for batch in (1, 9):
        lin = check_linear(x[:batch], w, b)
        rel = check_linear(x[:batch], w, b, "relu")
        np.testing.assert_array_equal(rel, np.maximum(lin, 0))
        nob = check_linear(x[:batch], w)
        np.testing.assert_allclose(lin - nob, np.broadcast_to(b, lin.shape), atol=1e-5)


def test_linear_empty_dimensions(isa, rng):
    w = rand(rng, 5, 7)
    assert cnnfast.linear(np.zeros((0, 7), np.float32), w).shape == (0, 5)
    assert cnnfast.linear(np.zeros((3, 0, 7), np.float32), w).shape == (3, 0, 5)
    for batch in (3, 9):  # no output features
        y = cnnfast.linear(rand(rng, batch, 7), np.zeros((0, 7), np.float32), np.zeros(0, np.float32), "relu")
        assert y.shape == (batch, 0) and y.dtype == np.float32
    # no input features: the output is the bias (or zeros)
    b = rand(rng, 5)
    for batch in (1, 6):
        y = cnnfast.linear(np.zeros((batch, 0), np.float32), np.zeros((5, 0), np.float32), b)
        np.testing.assert_array_equal(y, np.broadcast_to(b, (batch, 5)))
        y = cnnfast.linear(np.zeros((batch, 0), np.float32), np.zeros((5, 0), np.float32), None, "relu")
        np.testing.assert_array_equal(y, np.zeros((batch, 5)))


def test_linear_nan_propagates(isa, rng):
    for batch in (2, 9):
        x, w = rand(rng, batch, 20), rand(rng, 6, 20)
        x[1, 3] = np.nan
        y = cnnfast.linear(x, w, activation="relu")
        assert np.isnan(y[1]).all()
        assert not np.isnan(np.delete(y, 1, axis=0)).any()


def test_linear_converts_float64_and_non_contiguous(isa, rng):
    x, w, b = rand(rng, 6, 11), rand(rng, 9, 11), rand(rng, 9)
    expected = cnnfast.linear(x, w, b)
    np.testing.assert_array_equal(cnnfast.linear(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)),
                                  expected)
    np.testing.assert_array_equal(cnnfast.linear(np.asfortranarray(x), np.asfortranarray(w), b[::-1][::-1]), expected)
    xs = np.zeros((12, 22), np.float32)
    xs[::2, ::2] = x
    np.testing.assert_array_equal(cnnfast.linear(xs[::2, ::2], w, b), expected)


def test_linear_thread_counts_agree(isa, rng, threads_restored):
    x, w, b = rand(rng, 64, 300), rand(rng, 200, 300), rand(rng, 200)
    with cnnfast.num_threads(1):
        one = [cnnfast.linear(x, w, b), cnnfast.linear(x[:3], w, b)]
    with cnnfast.num_threads(2):
        two = [cnnfast.linear(x, w, b), cnnfast.linear(x[:3], w, b)]
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)


def test_linear_matches_pytorch(isa):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    for lead, in_f, out_f in [((1,), 512, 1000), ((4,), 300, 10), ((32,), 257, 65), ((2, 5), 33, 17), ((), 9, 3)]:
        x, w, b = rand(rng, *lead, in_f), rand(rng, out_f, in_f), rand(rng, out_f)
        expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
        assert_close(cnnfast.linear(x, w, b), expected.astype(np.float64), atol=2 * linear_tol(x, w, b),
                     what=f"linear vs torch {lead} {in_f}->{out_f}")


# --- the NumPy helpers -------------------------------------------------------------------------------


def test_relu_helper():
    x = np.array([-2, -0.0, 0, 3, np.nan, -np.inf, np.inf], np.float32)
    y = cnnfast.relu(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 0, 0, 3, np.nan, 0, np.inf])
    out = np.empty_like(x)
    assert cnnfast.relu(x, out=out) is out
    np.testing.assert_array_equal(cnnfast.relu(x.astype(np.float64)), y.astype(np.float64))


def test_softmax_helper(rng):
    x = rand(rng, 3, 1000, low=-50, high=50)
    y = cnnfast.softmax(x)
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    assert_close(y, e / e.sum(axis=-1, keepdims=True), atol=1e-7, rtol=1e-5)
    np.testing.assert_allclose(y.sum(axis=-1), 1, rtol=1e-5)
    big = np.array([1e4, 1e4 + 1, -1e4], np.float32)
    np.testing.assert_allclose(cnnfast.softmax(big), [1 / (1 + np.e), np.e / (1 + np.e), 0], rtol=1e-5)
    np.testing.assert_allclose(cnnfast.softmax(x, axis=0).sum(axis=0), 1, rtol=1e-5)
    with pytest.raises(TypeError, match="softmax"):
        cnnfast.softmax(np.arange(5))
