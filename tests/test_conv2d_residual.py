"""conv2d(..., residual=r): y = activation(conv + bias + r), a residual block's join fused into the convolution.

The direct paths add r as they store y, the others in a pass over y after the convolution; either way the sum
is rounded as (conv + bias) + r, so the fused result must equal conv2d's own result plus r bit for bit, on
every path (checked by the prepared kind the shape takes) and every ISA. The C++ reference kernel is held to
the float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core

import numpy_reference as ref
from conftest import assert_float32_rounding_of, examples, rand


def unfused(x, w, b, activation=None, prepared=None, **kw):
    """The same convolution without the residual, then r added and the activation applied in float32."""
    def join(r):
        y = cnnfast.conv2d(x, w, b, prepared=prepared, **kw) + r
        return np.maximum(y, 0) if activation == "relu" else y
    return join


def check_residual(x, w, b, rng, activation=None, prepare=False, **kw):
    n = x.shape[0]
    y0 = cnnfast.conv2d(x, w, b, **kw)
    r = rand(rng, *y0.shape, low=-2, high=2)
    prepared = None
    if prepare:
        prepared = _core.conv2d_prepare(x, w, **{k: v for k, v in kw.items() if k != "algorithm"},
                                        algorithm=kw.get("algorithm", "auto"))
    expected = unfused(x, w, b, activation, prepared, **kw)(r)
    r_before = r.copy()
    y = cnnfast.conv2d(x, w, b, activation=activation, prepared=prepared, residual=r, **kw)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(r, r_before)  # the residual is only read
    # into out=, and in place into the residual itself
    out = np.full_like(y, np.nan)
    assert cnnfast.conv2d(x, w, b, activation=activation, prepared=prepared, residual=r, out=out, **kw) is out
    np.testing.assert_array_equal(out, expected)
    inplace = r.copy()
    assert cnnfast.conv2d(x, w, b, activation=activation, prepared=prepared, residual=inplace, out=inplace, **kw) is inplace
    np.testing.assert_array_equal(inplace, expected)
    assert y.shape[0] == n
    return prepared.kind if prepared is not None else None


# The direct GEMM (into y: input in place, with or without a last panel by channels as lanes, exact columns or
# by rows; or through a scratch block that is then compacted), the pixel-major and channels-as-lanes paths,
# Winograd, and the paths without anything to prepare (depthwise, a kernel covering the image, padding far
# larger than the image: im2col). The last item is the kind prepared on AVX-512 (other ISAs' tiles send some
# shapes elsewhere).
PATH_CASES = [
    pytest.param(dict(n=1, c=24, hw=20, o=40, k=1), {}, "panels", id="1x1-into-y"),
    pytest.param(dict(n=1, c=600, hw=14, o=40, k=1), {}, "panels", id="1x1-lane-tail"),
    pytest.param(dict(n=2, c=6, hw=30, o=20, k=3), dict(padding=1, algorithm="direct"), "panels", id="3x3-exact"),
    pytest.param(dict(n=2, c=6, hw=7, o=20, k=3), dict(padding=1, algorithm="direct"), "panels", id="3x3-compacted"),
    pytest.param(dict(n=1, c=5, hw=120, o=9, k=3), dict(padding=1, algorithm="direct"), "panels", id="3x3-rows"),
    pytest.param(dict(n=2, c=16, hw=17, o=24, k=3), dict(padding=(1, 2), stride=2, algorithm="direct"), "panels",
                 id="3x3-strided"),
    pytest.param(dict(n=1, c=64, hw=7, o=96, k=1), {}, "transposed", id="7x7-pixel-major"),
    pytest.param(dict(n=2, c=48, hw=17, o=96, k=3), dict(padding=1, stride=2), "transposed", id="strided-pixel-major"),
    pytest.param(dict(n=2, c=3, hw=11, o=16, k=3), dict(padding=1), "transposed", id="few-output-channels"),
    pytest.param(dict(n=2, c=32, hw=14, o=40, k=3), dict(padding=1, algorithm="winograd"), "winograd", id="winograd"),
    pytest.param(dict(n=2, c=8, hw=9, o=8, k=3, groups=8), dict(padding=1, groups=8), "none", id="depthwise"),
    pytest.param(dict(n=3, c=4, hw=5, o=10, k=5), {}, "none", id="kernel-covers-image"),
    pytest.param(dict(n=1, c=2, hw=3, o=5, k=3), dict(padding=1000, stride=16), "none", id="padding-far-larger"),
]


@pytest.mark.parametrize("shape, kw, kind", PATH_CASES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("prepare", [False, True])
def test_residual_on_every_path(isa, rng, shape, kw, kind, activation, prepare):
    x = rand(rng, shape["n"], shape["c"], shape["hw"], shape["hw"])
    w = rand(rng, shape["o"], shape["c"] // shape.get("groups", 1), shape["k"], shape["k"])
    b = rand(rng, shape["o"])
    prepared_kind = check_residual(x, w, b, rng, activation=activation, prepare=prepare, **kw)
    if prepare and isa == "avx512":
        assert prepared_kind == kind


def test_residual_blocked_k_and_threads(isa, rng, threads_restored):
    # K = 600 runs in several K blocks: the residual must be added once, after the last
    x, w, b = rand(rng, 1, 600, 9, 9), rand(rng, 50, 600, 1, 1), rand(rng, 50)
    for threads in (1, 2, 3):
        cnnfast.set_num_threads(threads)
        check_residual(x, w, b, rng, activation="relu", prepare=True)


@settings(max_examples=examples(40))
@given(n=st.integers(1, 2), c=st.integers(1, 40), hw=st.integers(1, 24), o=st.integers(1, 60),
       k=st.sampled_from([1, 2, 3, 5]), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1, 2, "same"]),
       algorithm=st.sampled_from(["auto", "direct"]), activation=st.sampled_from([None, "relu"]),
       prepare=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_residual_random_shapes(isa, n, c, hw, o, k, stride, padding, algorithm, activation, prepare, seed):
    if padding == "same" and stride != 1:
        padding = 1
    pad = (k - 1) // 2 if padding == "same" else padding
    if hw + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, n, c, hw, hw), rand(rng, o, c, k, k), rand(rng, o)
    check_residual(x, w, b, rng, activation=activation, prepare=prepare, stride=stride, padding=padding,
                   algorithm=algorithm)


@settings(max_examples=examples(30))
@given(n=st.integers(1, 2), c=st.integers(1, 6), hw=st.integers(1, 9), o=st.integers(1, 7),
       k=st.sampled_from([1, 3]), relu=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_cpp_reference_residual_matches_numpy(n, c, hw, o, k, relu, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, n, c, hw, hw), rand(rng, o, c, k, k), rand(rng, o)
    r = rand(rng, n, o, hw, hw, low=-2, high=2)
    expected = ref.conv2d(x, w, b, padding=k // 2) + r
    if relu:
        expected = np.maximum(expected, 0)
    y = _core.reference.conv2d(x, w, b, padding=k // 2, activation="relu" if relu else None, residual=r)
    terms = ref.conv2d_tolerance(x, w, b, rel=1.0) + 2.0
    assert_float32_rounding_of(y, expected, atol=1e-12 * terms, what="reference.conv2d(residual=)")


def test_residual_argument_errors(rng):
    x, w = rand(rng, 2, 3, 8, 8), rand(rng, 4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"residual has shape \(2, 4, 8, 8\) but the output has shape \(2, 4, 6, 6\)"):
        cnnfast.conv2d(x, w, residual=np.zeros((2, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"residual must be 4-D"):
        cnnfast.conv2d(x, w, residual=np.zeros((4, 6, 6), np.float32))
    with pytest.raises(TypeError, match=r"residual must be a real floating-point array"):
        cnnfast.conv2d(x, w, residual=np.zeros((2, 4, 6, 6), np.int32))
    big = np.zeros(2 * 4 * 6 * 6 + 1, np.float32)
    with pytest.raises(ValueError, match=r"out shares memory with residual"):
        cnnfast.conv2d(x, w, residual=big[:-1].reshape(2, 4, 6, 6), out=big[1:].reshape(2, 4, 6, 6))


def test_residual_float64_is_converted(rng):
    x, w = rand(rng, 1, 3, 6, 6), rand(rng, 4, 3, 3, 3)
    r = rng.standard_normal((1, 4, 4, 4))
    y = cnnfast.conv2d(x, w, residual=r)
    np.testing.assert_array_equal(y, cnnfast.conv2d(x, w) + r.astype(np.float32))


def test_residual_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x, w, b = rand(rng, 2, 16, 14, 14), rand(rng, 32, 16, 3, 3), rand(rng, 32)
    r = rand(rng, 2, 32, 14, 14)
    with torch.no_grad():
        expected = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                                          torch.from_numpy(b), padding=1) + torch.from_numpy(r))
    y = cnnfast.conv2d(x, w, b, padding=1, activation="relu", residual=r)
    np.testing.assert_allclose(y, expected.numpy(), atol=1e-4, rtol=1e-5)
