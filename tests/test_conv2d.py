"""conv2d on every ISA path against the NumPy float64 reference (tests/numpy_reference.py), the C++ reference
against NumPy, the worked edge-detection examples, the GEMM tails, the 1x1, depthwise and K-blocked paths,
and PyTorch as a second opinion when it is installed.

Tolerance of the direct path: |y - ref| <= 1e-5 * (sqrt(K) * max|x| * max|w| + max|bias|) + 1e-5 * |ref|,
K = C/groups * kH * kW (float32 products summed in float32; the error grows like sqrt(K) for random data).
Winograd F(4x4, 3x3) (algorithm='winograd', or 'auto' on 3x3 stride-1 layers with >= 32 channels in and out)
is held to its documented error: 4e-6 * max|x| * max|w| * C * 9 (+ 1e-6 * max|bias|) + 1e-5 * |ref|."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core

import numpy_reference as ref
from conftest import GEMM_TILE, assert_close, assert_float32_rounding_of, examples, rand, run_with_memory_limit, sentinel

# --- worked examples ------------------------------------------------------------------------------

EDGE_IMAGE = np.array([[10, 10, 10, 0, 0, 0]] * 6, dtype=np.float32)  # bright left half
VERTICAL_EDGE = np.array([[1, 0, -1]] * 3, dtype=np.float32)
HORIZONTAL_EDGE = VERTICAL_EDGE.T.copy()


def test_edge_detection_6x6_gives_4x4(isa):
    y = cnnfast.conv2d(EDGE_IMAGE[None, None], VERTICAL_EDGE[None, None])
    assert y.shape == (1, 1, 4, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[0, 30, 30, 0]] * 4)


def test_edge_detection_padding_1_gives_6x6(isa):
    y = cnnfast.conv2d(EDGE_IMAGE[None, None], VERTICAL_EDGE[None, None], padding=1)
    assert y.shape == (1, 1, 6, 6)
    # the zero border turns the left edge of the image into an edge too; the first and last rows see 2 rows
    border = [-20, 0, 20, 20, 0, 0]
    inner = [-30, 0, 30, 30, 0, 0]
    np.testing.assert_array_equal(y[0, 0], [border] + [inner] * 4 + [border])
    np.testing.assert_array_equal(y, cnnfast.conv2d(EDGE_IMAGE[None, None], VERTICAL_EDGE[None, None], padding="same"))


def test_stride_2_example(isa):
    # 7x7 input, 3x3 filter, stride 2: floor((7 - 3) / 2) + 1 = 3
    x = np.array(
        [
            [2, 3, 7, 4, 6, 2, 9],
            [6, 6, 9, 8, 7, 4, 3],
            [3, 4, 8, 3, 8, 9, 7],
            [7, 8, 3, 6, 6, 3, 4],
            [4, 2, 1, 8, 3, 4, 6],
            [3, 2, 4, 1, 9, 8, 3],
            [0, 1, 3, 9, 2, 1, 4],
        ],
        dtype=np.float32,
    )
    w = np.array([[3, 4, 4], [1, 0, 2], [-1, 0, 3]], dtype=np.float32)
    y = cnnfast.conv2d(x[None, None], w[None, None], stride=2)
    assert y.shape == (1, 1, 3, 3)
    # top left: 2*3 + 3*4 + 7*4 + 6*1 + 6*0 + 9*2 + 3*-1 + 4*0 + 8*3 = 91
    np.testing.assert_array_equal(y[0, 0], [[91, 100, 88], [69, 91, 117], [44, 72, 74]])
    np.testing.assert_array_equal(y, ref.conv2d_loops(x[None, None], w[None, None], stride=2))
    # the edge image with stride 2: rows and columns 0 and 2 of the 4x4 result
    y = cnnfast.conv2d(EDGE_IMAGE[None, None], VERTICAL_EDGE[None, None], stride=2)
    np.testing.assert_array_equal(y[0, 0], [[0, 30], [0, 30]])


def test_6x6x3_with_two_3x3x3_filters_gives_4x4x2(isa):
    x = np.stack([EDGE_IMAGE, EDGE_IMAGE.T, np.zeros((6, 6), np.float32)])[None]  # (1, 3, 6, 6)
    w = np.zeros((2, 3, 3, 3), dtype=np.float32)
    w[0, 0] = VERTICAL_EDGE  # vertical edges of channel 0 only
    w[1, :] = HORIZONTAL_EDGE  # horizontal edges summed over all channels
    y = cnnfast.conv2d(x, w)
    assert y.shape == (1, 2, 4, 4)
    np.testing.assert_array_equal(y[0, 0], [[0, 30, 30, 0]] * 4)
    np.testing.assert_array_equal(y[0, 1], np.array([[0, 30, 30, 0]] * 4).T)
    y = cnnfast.conv2d(x, w, bias=np.array([1, -100], np.float32), activation="relu")
    np.testing.assert_array_equal(y[0, 0], [[1, 31, 31, 1]] * 4)
    np.testing.assert_array_equal(y[0, 1], np.zeros((4, 4)))


# --- randomized against the NumPy reference -------------------------------------------------------


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "dense", "grouped", "depthwise", "depthwise2"]))
    if kind == "dense":
        g, cg, og = 1, draw(st.integers(1, 9)), draw(st.integers(1, 19))
    elif kind == "grouped":
        g, cg, og = draw(st.integers(2, 4)), draw(st.integers(2, 5)), draw(st.integers(1, 6))
    else:
        g, cg, og = draw(st.integers(2, 17)), 1, 1 if kind == "depthwise" else 2
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (1, 3), (2, 1)]))
    sh, sw = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (3, 3), (1, 2), (2, 3), (4, 4), (3, 4), (5, 5)]))
    pad_kinds = ["int", "pair", "valid"] + (["same", "same"] if (sh, sw) == (1, 1) else [])
    pk = draw(st.sampled_from(pad_kinds))
    if pk == "int":
        padding = draw(st.integers(0, 2))
    elif pk == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    else:
        padding = pk
    pt, pb, pl, pr = ref.conv2d_padding(padding, (kh, kw), (dh, dw))
    min_h = max(1, dh * (kh - 1) + 1 - pt - pb)
    min_w = max(1, dw * (kw - 1) + 1 - pl - pr)
    h = min_h + draw(st.integers(0, 14))
    w = min_w + draw(st.integers(0, 20))
    return dict(
        n=draw(st.sampled_from([1, 1, 2, 0])),
        c=g * cg,
        o=g * og,
        h=h,
        w=w,
        kh=kh,
        kw=kw,
        stride=(sh, sw) if sh != sw else sh,
        padding=padding,
        dilation=(dh, dw) if dh != dw else dh,
        groups=g,
        bias=draw(st.booleans()),
        relu=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def make_conv_inputs(case):
    rng = np.random.default_rng(case["seed"])
    x = rand(rng, case["n"], case["c"], case["h"], case["w"])
    wt = rand(rng, case["o"], case["c"] // case["groups"], case["kh"], case["kw"])
    b = rand(rng, case["o"]) if case["bias"] else None
    return x, wt, b


def conv_kwargs(case):
    return dict(
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
        activation="relu" if case["relu"] else None,
    )


def check_conv(x, w, b=None, **kw):
    """Runs conv2d into a NaN-filled out= and without out=, and compares both with the NumPy reference. The
    tolerance is the direct path's, or Winograd's where conv2d may take that path (see module docstring)."""
    expected = ref.conv2d(x, w, b, **{k: v for k, v in kw.items() if k != "algorithm"})
    out = sentinel(expected.shape)
    y = cnnfast.conv2d(x, w, b, out=out, **kw)
    assert y is out or np.shares_memory(y, out)
    atol = ref.conv2d_tolerance(x, w, b)
    params = {k: kw[k] for k in ("stride", "dilation", "groups") if k in kw}
    algorithm = kw.get("algorithm", "auto")
    if algorithm == "winograd" or (algorithm == "auto" and ref.auto_uses_winograd(x.shape, w.shape, **params)):
        atol = max(atol, ref.winograd_tolerance(x, w, b))
    assert not np.isnan(out).any(), "conv2d left elements of out unwritten"
    assert_close(out, expected, atol=atol, what=f"conv2d {x.shape} * {w.shape} {kw}")
    y2 = cnnfast.conv2d(x, w, b, **kw)
    assert y2.dtype == np.float32 and y2.flags.c_contiguous
    np.testing.assert_array_equal(y2, out)
    return out


@settings(max_examples=examples(150))
@given(case=conv_cases())
def test_conv2d_matches_numpy_reference(isa, case):
    x, w, b = make_conv_inputs(case)
    check_conv(x, w, b, **conv_kwargs(case))


@settings(max_examples=examples(60))
@given(case=conv_cases())
def test_cpp_reference_matches_numpy_reference(case):
    x, w, b = make_conv_inputs(case)
    kw = conv_kwargs(case)
    expected = ref.conv2d(x, w, b, **kw)
    y = _core.reference.conv2d(x, w, b, **kw)
    terms = ref.conv2d_tolerance(x, w, b, rel=1.0)
    assert_float32_rounding_of(y, expected, atol=1e-12 * terms, what="reference.conv2d")


# --- few output channels on small images: the channels as vector lanes, runs of pixels as register rows ----
# (one or two vectors of output channels; runs of up to 24 pixels, the last run of a row moved back to end at
# the row's end; read in place when stride 1 and no top/left padding, else from the zero-padded phase copy)


@settings(max_examples=examples(60))
@given(n=st.integers(1, 3), c=st.integers(1, 12), hw=st.integers(1, 30), o=st.integers(1, 32),
       k=st.sampled_from([1, 2, 3, 5]), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1, 2, "same"]),
       dilation=st.sampled_from([1, 2]), bias=st.booleans(), relu=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_conv2d_few_output_channels(isa, n, c, hw, o, k, stride, padding, dilation, bias, relu, seed):
    if padding == "same" and stride != 1:
        padding = 1
    pad = (k // 2) * dilation if padding == "same" else padding
    if hw + 2 * pad < dilation * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x, w = rand(rng, n, c, hw, hw + 3), rand(rng, o, c, k, k)
    b = rand(rng, o) if bias else None
    check_conv(x, w, b, stride=stride, padding=padding, dilation=dilation, activation="relu" if relu else None)


@pytest.mark.parametrize("shape", [
    (64, 6, 14, 14, 16, 5, 0),   # LeNet-5's C3
    (2, 16, 28, 28, 32, 5, 2),   # Inception's 5x5 reduce branch
    (3, 4, 9, 30, 16, 3, 1),     # rows of 30: runs of 10
    (1, 5, 7, 25, 24, 3, 0),     # runs of 23 pixels: moved back at the row's end
    (2, 3, 5, 4, 8, 2, 0),       # rows narrower than any run but 2 and 3
    (4, 1, 32, 32, 6, 5, 0),     # LeNet-5's C1: with AVX2 runs of 8, stored transposed
    (2, 2, 6, 16, 5, 3, 1),      # rows of 16: two such runs
    (3, 3, 8, 19, 7, 3, 1),      # rows of 19: runs of 8 (AVX2), the last moved back
])
def test_conv2d_few_output_channels_shapes(isa, shape, rng):
    n, c, h, w_, o, k, p = shape
    x, w = rand(rng, n, c, h, w_), rand(rng, o, c, k, k)
    y = check_conv(x, w, rand(rng, o), padding=p, activation="relu")
    assert (y >= 0).all()
    # the direct path, prepared or not: the same bits ('auto' may take Winograd with prepared weights)
    prepared = _core.conv2d_prepare(x, w, (1, 1), (p, p), (1, 1), 1, "direct")
    np.testing.assert_array_equal(_core.conv2d(x, w, None, (1, 1), (p, p), (1, 1), 1, None, None, "direct", prepared),
                                  _core.conv2d(x, w, None, (1, 1), (p, p), (1, 1), 1, None, None, "direct"))


# --- shapes that hit the GEMM tiles: output pixels around NR, output channels around MR ------------


def tail_sizes(isa_name):
    nr, mr = GEMM_TILE[isa_name]
    pixels = sorted({1, nr - 1, nr, nr + 1, 3 * nr, 8 * nr + 2})  # 8 * NR is the N block
    channels = sorted({1, mr - 1, mr, mr + 1, 2 * mr + 1, 3, 13, 17, 33})
    return pixels, channels


@pytest.mark.parametrize("ksize", [1, 3])
def test_conv2d_gemm_tails(isa, ksize, rng):
    pixels, channels = tail_sizes(isa)
    for p in pixels:
        # one row of p pixels, and (when p factors) a block of rows narrower than a tile, so panels span rows
        shapes = {(1, p)} | {(p // d, d) for d in (5, 7) if p % d == 0}
        for h, w in sorted(shapes):
            for o in channels:
                c = 3 if ksize == 3 else 4
                x = rand(rng, 1, c, h, w)
                wt = rand(rng, o, c, ksize, ksize)
                check_conv(x, wt, rand(rng, o), padding=ksize // 2)


@pytest.mark.parametrize("c", [1, 3, 4, 8, 13, 16, 17, 33, 64])
def test_conv2d_channel_counts_odd_sizes(isa, c, rng):
    for h, w in [(9, 7), (25, 33)]:
        x = rand(rng, 2, c, h, w)
        for o in (1, 8, 17):
            check_conv(x, rand(rng, o, c, 3, 3), rand(rng, o), padding=1)
        check_conv(x, rand(rng, 16, c, 3, 3), None, stride=2, dilation=2, activation="relu")


# --- the special paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("c,o", [(1, 1), (3, 8), (16, 17), (64, 33), (600, 20), (257, 9)])
def test_conv2d_1x1_fast_path(isa, c, o, rng):
    # 1x1, stride 1, no padding: the input is the GEMM's B matrix as it is (K = c, > 256 blocks K)
    for h, w in [(1, 1), (9, 7), (7, 7)]:
        x = rand(rng, 2, c, h, w)
        check_conv(x, rand(rng, o, c, 1, 1), rand(rng, o))
        check_conv(x, rand(rng, o, c, 1, 1), None, activation="relu")
    # neighbours of the fast path that must not take it
    x = rand(rng, 1, c, 9, 7)
    check_conv(x, rand(rng, o, c, 1, 1), stride=2)
    check_conv(x, rand(rng, o, c, 1, 1), padding=1)


@pytest.mark.parametrize(
    "c,kh,kw",
    [(24, 5, 5), (600, 1, 1), (67, 3, 3), (256, 1, 1), (257, 1, 1), (128, 1, 2), (29, 3, 3)],
    ids=lambda v: str(v),
)
def test_conv2d_blocked_accumulation(isa, c, kh, kw, rng):
    # K = c * kh * kw around and above KC = 256: 600, 600, 603, 256, 257, 256, 261
    x = rand(rng, 1, c, 11, 13)
    for o in (5, 9):
        check_conv(x, rand(rng, o, c, kh, kw), rand(rng, o), padding=(kh // 2, kw // 2), activation="relu")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_output_channels_split_across_threads(isa, threads, rng, threads_restored):
    # few pixels and many output channels: the work is split along the output channels, in whole MR panels,
    # while K = 300 * 9 runs through eleven K blocks
    x = rand(rng, 1, 300, 5, 5)
    with cnnfast.num_threads(threads):
        for o in (200, 201, 37):
            check_conv(x, rand(rng, o, 300, 3, 3), rand(rng, o), padding=1)
        check_conv(x[:, :64], rand(rng, 130, 64, 1, 1), None, activation="relu")
        check_conv(rand(rng, 1, 64, 7, 7), rand(rng, 96, 16, 3, 3), rand(rng, 96), groups=4, padding=1)


@pytest.mark.parametrize("threads", [2, 3])
def test_conv2d_7x7_outputs_split_by_pixels_and_channels(isa, threads, rng, threads_restored):
    # 7x7 outputs (the pixel-major path's seven pixel panels) with weights of up to 2 MiB: the threads share
    # the (pixel panel, channel vector) units, so a thread's run may start or end inside a panel, with part of
    # its channels; the same bits as one thread
    for c, o, k, s, hw in ((64, 128, 1, 1, 7), (96, 40, 1, 1, 7), (32, 200, 3, 1, 7), (48, 72, 3, 2, 14)):
        x, w, b = rand(rng, 1, c, hw, hw), rand(rng, o, c, k, k), rand(rng, o)
        with cnnfast.num_threads(1):
            one = cnnfast.conv2d(x, w, b, stride=s, padding=k // 2)
        with cnnfast.num_threads(threads):
            y = check_conv(x, w, b, stride=s, padding=k // 2)
        assert y.shape == (1, o, 7, 7)
        np.testing.assert_array_equal(y, one)


@pytest.mark.parametrize("threads", [2, 3])
def test_conv2d_few_tasks_either_order(isa, threads, rng, threads_restored):
    # 28x28 outputs (784 pixels: N blocks of unequal size) with two or more M chunks: at two threads the tasks
    # are numbered N block fastest, which evens out the threads' shares (split_gemm); the same bits as one
    # thread either way
    for c, o, k in ((16, 32, 5), (192, 96, 1), (128, 200, 1), (16, 8, 3)):
        x, w, b = rand(rng, 1, c, 28, 28), rand(rng, o, c, k, k), rand(rng, o)
        with cnnfast.num_threads(1):
            one = cnnfast.conv2d(x, w, b, padding=k // 2, algorithm="direct")
        with cnnfast.num_threads(threads):
            y = check_conv(x, w, b, padding=k // 2, algorithm="direct")
        np.testing.assert_array_equal(y, one)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_row_blocks(isa, threads, rng, threads_restored):
    # outputs whose rows are a whole number of vectors, read from a wider phase copy, go in blocks of whole
    # rows, several blocks of unequal size: 7x7/2 on 64x64 (the stem's shape: 32 rows of 32 in blocks of 10
    # and 11) and on 64x50, 5x5/2 with 29 rows
    for h, w_, k in ((64, 64, 7), (64, 50, 7), (58, 64, 5)):
        x, w, b = rand(rng, 1, 3, h, w_), rand(rng, 24, 3, k, k), rand(rng, 24)
        with cnnfast.num_threads(1):
            one = cnnfast.conv2d(x, w, b, stride=2, padding=k // 2)
        with cnnfast.num_threads(threads):
            y = check_conv(x, w, b, stride=2, padding=k // 2, activation="relu")
            np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, stride=2, padding=k // 2), one)
        np.testing.assert_array_equal(y, np.maximum(one, 0))


@pytest.mark.parametrize("c", [1, 3, 4, 8, 13, 16, 17, 33, 64])
@pytest.mark.parametrize("mult", [1, 2])
def test_conv2d_depthwise(isa, c, mult, rng):
    x = rand(rng, 2, c, 9, 7)
    for k, stride, pad, dil in [(3, 1, 1, 1), (3, 2, 1, 1), (5, 1, "same", 2), (4, 1, "same", 1), (1, 1, 0, 1),
                                (7, 3, 0, 1), (3, (1, 2), (2, 0), (2, 1))]:
        check_conv(x, rand(rng, c * mult, 1, k, k), rand(rng, c * mult), stride=stride, padding=pad, dilation=dil,
                   groups=c)
    check_conv(x, rand(rng, c * mult, 1, 3, 3), None, padding=1, groups=c, activation="relu")


@pytest.mark.parametrize("groups,c,o", [(2, 4, 6), (3, 9, 3), (4, 16, 32), (2, 34, 34), (8, 64, 16)])
def test_conv2d_groups(isa, groups, c, o, rng):
    x = rand(rng, 2, c, 9, 7)
    check_conv(x, rand(rng, o, c // groups, 3, 3), rand(rng, o), padding=1, groups=groups)
    check_conv(x, rand(rng, o, c // groups, 2, 3), None, stride=2, dilation=(2, 1), groups=groups)
    check_conv(x, rand(rng, o, c // groups, 1, 1), rand(rng, o), groups=groups)  # grouped 1x1: the fast path per group


@pytest.mark.parametrize("k", [(2, 2), (4, 4), (2, 3), (1, 4), (6, 5)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv2d_same_even_kernels(isa, k, dilation, rng):
    x, w, b = rand(rng, 1, 3, 9, 7), rand(rng, 5, 3, *k), rand(rng, 5)
    y = check_conv(x, w, b, padding="same", dilation=dilation)
    assert y.shape == (1, 5, 9, 7)
    # PyTorch puts the extra row/column of an odd total padding at the end: the same as padding the input by
    # (total // 2, total - total // 2) explicitly and convolving without padding
    th, tw = dilation * (k[0] - 1), dilation * (k[1] - 1)
    xp = np.pad(x, ((0, 0), (0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2)))
    assert_close(y, cnnfast.conv2d(xp, w, b, dilation=dilation).astype(np.float64),
                 atol=ref.conv2d_tolerance(x, w, b), what="same vs explicit padding")


def test_conv2d_valid_is_padding_0(isa, rng):
    x, w = rand(rng, 2, 3, 9, 7), rand(rng, 4, 3, 3, 2)
    y = check_conv(x, w, padding="valid")
    np.testing.assert_array_equal(y, cnnfast.conv2d(x, w, padding=0))
    assert y.shape == (2, 4, 7, 6)


def test_conv2d_batch_zero(isa, rng):
    w = rand(rng, 4, 3, 3, 3)
    for x in (np.zeros((0, 3, 9, 7), np.float32), np.zeros((0, 3, 1, 1), np.float32)):
        pad = 1
        y = cnnfast.conv2d(x, w, rand(rng, 4), padding=pad)
        assert y.shape == (0, 4, x.shape[2], x.shape[3]) and y.dtype == np.float32
        out = np.empty((0, 4, x.shape[2], x.shape[3]), np.float32)
        assert cnnfast.conv2d(x, w, padding=pad, out=out).shape == out.shape
    assert _core.reference.conv2d(np.zeros((0, 3, 5, 5), np.float32), w).shape == (0, 4, 3, 3)


def test_conv2d_1x1_images(isa, rng):
    x = rand(rng, 3, 5, 1, 1)
    check_conv(x, rand(rng, 7, 5, 1, 1), rand(rng, 7))  # the 1x1 fast path with one pixel
    check_conv(x, rand(rng, 7, 5, 3, 3), rand(rng, 7), padding=1)  # only the centre tap is inside
    check_conv(x, rand(rng, 7, 5, 2, 2), None, padding="same")
    check_conv(x, rand(rng, 5, 1, 3, 3), None, padding=1, groups=5)


def test_conv2d_kernel_as_large_as_input(isa, rng):
    for h, w in [(9, 7), (5, 5), (1, 6)]:
        x = rand(rng, 2, 4, h, w)
        y = check_conv(x, rand(rng, 6, 4, h, w), rand(rng, 6))
        assert y.shape == (2, 6, 1, 1)
        check_conv(x, rand(rng, 4, 1, h, w), None, groups=4)  # depthwise, one output pixel
        check_conv(x, rand(rng, 6, 4, h, w), None, padding=1)  # a 3x3 output, mostly padding
    # with dilation the effective kernel is (k - 1) * d + 1 = the input size
    x = rand(rng, 1, 3, 9, 7)
    assert check_conv(x, rand(rng, 2, 3, 5, 4), dilation=2).shape == (1, 2, 1, 1)


def test_conv2d_stride_larger_than_kernel(isa, rng):
    x = rand(rng, 2, 3, 25, 33)
    for k, s in [(1, 2), (1, 5), (2, 3), (3, 4), (3, (7, 2)), (2, 33)]:
        check_conv(x, rand(rng, 8, 3, k, k), rand(rng, 8), stride=s)
        check_conv(x, rand(rng, 3, 1, k, k), None, stride=s, groups=3, padding=1)


@pytest.mark.parametrize("stride", [2, 4, (1, 2), (3, 4)])
def test_conv2d_wide_strided_rows(isa, rng, stride):
    # wide rows through the padded, phase-split copy, with every left padding; filters that read only some of
    # the phases (1x1, or dilation 2 with stride 4), whose other phases are not copied: stale scratch memory
    # from the calls before would show in the result if any were read
    for w in (61, 64, 67, 130, 227):
        for pad in (0, 1, 2, 3, 5):
            x = rand(rng, 1, 3, 7, w)
            kw = 11 if w == 227 else 5
            check_conv(x, rand(rng, 8, 3, 3, kw), rand(rng, 8), stride=stride, padding=(1, pad))
            check_conv(x, rand(rng, 2, 3, 1, kw), None, stride=stride, padding=(0, pad), activation="relu")
            check_conv(x, rand(rng, 8, 3, 1, 1), rand(rng, 8), stride=stride, padding=(0, pad))
            check_conv(x, rand(rng, 4, 3, 2, 2), None, stride=stride, padding=(1, pad), dilation=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_exact_columns(isa, rng, threads_restored, threads):
    # output rows of at least a vector but not a whole number of them: the GEMM's columns are y's pixels, and
    # the vectors that cross the end of a row take their last lanes from the next row of the padded copy;
    # widths around 4, 8 and 16 lanes, K = 576 in two K blocks, 20 channels (a partial tile of rows); strides
    # 2 and 4 (AlexNet's 11x11) with 40 channels, too many for the channels-as-lanes path
    cnnfast.set_num_threads(threads)
    for ow in (4, 5, 7, 9, 12, 15, 16, 17, 20, 27, 33, 47, 55):
        x = rand(rng, 2, 64, 6, ow)
        w = rand(rng, 20, 64, 3, 3)
        check_conv(x, w, rand(rng, 20), padding=1, algorithm="direct")
        check_conv(x, w, None, padding=(0, 1), algorithm="direct", activation="relu")
        xs = rand(rng, 1, 3, 9, 2 * ow + 1)
        check_conv(xs, rand(rng, 40, 3, 3, 3), rand(rng, 40), stride=2, padding=1)
        check_conv(rand(rng, 1, 3, 11, 4 * ow + 7), rand(rng, 40, 3, 11, 11), rand(rng, 40), stride=4)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_exact_columns_of_whole_vectors(isa, rng, threads_restored, threads):
    # output rows of whole vectors but not whole GEMM panels (ResNet-50's 7x7/2 stem: 112 = 48 + 48 + 16;
    # VGG-16's first layer: 224): on AVX-512 a panel's vectors start in different rows, read without a mask;
    # a last panel short of the end, batch 2, a residual, and the same bits prepared or not
    cnnfast.set_num_threads(threads)
    for ow, k, stride in ((16, 3, 1), (32, 3, 2), (64, 3, 1), (112, 7, 2), (80, 5, 1)):
        pad = k // 2
        x = rand(rng, 2, 3, 5 * stride, ow * stride)
        w, b = rand(rng, 20, 3, k, k), rand(rng, 20)
        y = check_conv(x, w, b, stride=stride, padding=pad, algorithm="direct")
        prepared = _core.conv2d_prepare(x, w, stride, pad, 1, 1, "direct")
        np.testing.assert_array_equal(
            cnnfast.conv2d(x, w, b, stride=stride, padding=pad, algorithm="direct", prepared=prepared), y)
        residual = rand(rng, *y.shape)
        with_residual = cnnfast.conv2d(x, w, b, stride=stride, padding=pad, algorithm="direct",
                                       activation="relu", residual=residual, prepared=prepared)
        expected = np.maximum(ref.conv2d(x, w, b, stride=stride, padding=pad) + residual, 0)
        assert_close(with_residual, expected, atol=ref.conv2d_tolerance(x, w, b) + 1e-6,
                     what=f"{x.shape} * {w.shape} + residual")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_shifted_images(isa, rng, threads_restored, threads):
    # strided layers of 64 output channels or more whose output rows are not whole vectors: the direct path
    # reads one copy of the input per row phase and column tap, in the output's pixel order (3x3/2 like
    # ResNet-50's, 4x4/2, a dilated 3x3/2, stride 2 across only, rows shorter than a vector, uneven padding;
    # K blocks of 108 or 128 rows, whose B panels are copied before use),
    # batch 2, the same bits prepared or not, and a residual with ReLU
    cnnfast.set_num_threads(threads)
    for (h, w_), k, stride, dil, pad, oc in (((56, 56), 3, 2, 1, 1, 64), ((30, 45), 3, 2, 1, 1, 72),
                                             ((40, 36), 4, 2, 1, (1, 2), 64), ((33, 41), 3, 2, 2, 2, 80),
                                             ((9, 60), 3, (1, 2), 1, 1, 64), ((14, 14), 3, 2, 1, 1, 96)):
        x = rand(rng, 2, 24, h, w_)
        w, b = rand(rng, oc, 24, k, k), rand(rng, oc)
        kw = dict(stride=stride, padding=pad, dilation=dil, algorithm="direct")
        y = check_conv(x, w, b, **kw)
        prepared = _core.conv2d_prepare(x, w, stride, pad, dil, 1, "direct")
        if prepared.kind == "panels":
            np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, prepared=prepared, **kw), y)
        residual = rand(rng, *y.shape)
        with_residual = cnnfast.conv2d(x, w, b, activation="relu", residual=residual, **kw)
        expected = np.maximum(ref.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil) + residual, 0)
        assert_close(with_residual, expected, atol=ref.conv2d_tolerance(x, w, b) + 1e-6,
                     what=f"{x.shape} * {w.shape} + residual")


def test_conv2d_stride2_rows_split_once(isa, rng):
    # column stride 2: each input row is split into its even and odd columns once, and every phase or shifted
    # image row copied from those halves; rows of fewer than a vector of columns, odd widths, padding of 0-3
    # (a tap's first column left of the halves), dilation 2, and rows too wide for the split's buffer (over 2048
    # columns: the per-image gather instead)
    for (h, w_), k, pad, dil, oc in (((7, 7), 3, 1, 1, 64), ((6, 13), 3, 0, 1, 16), ((9, 17), 5, 3, 1, 64),
                                     ((8, 19), 3, 2, 2, 64), ((5, 27), 2, 1, 1, 8), ((3, 4301), 3, 1, 1, 64),
                                     ((3, 4301), 3, 1, 1, 8)):
        x = rand(rng, 1, 3, h, w_)
        check_conv(x, rand(rng, oc, 3, k, k), rand(rng, oc), stride=2, padding=pad, dilation=dil, algorithm="direct")


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_out_channel_slice(isa, rng, threads_restored, threads):
    # out a channel slice of a larger array (an Inception module's output): each image contiguous, the
    # images further apart. The direct and Winograd paths store there themselves, the others (depthwise, a
    # kernel covering the whole image, a residual) through a packed buffer: the same bits as into a new
    # array either way, prepared or not, and the channels around the slice untouched
    cnnfast.set_num_threads(threads)
    cases = (  # (n, c, h, w), (oc, kh, kw), kwargs
        ((3, 24, 14, 14), (40, 1, 1), {}),
        ((2, 16, 28, 28), (32, 3, 3), dict(padding=1)),
        ((2, 64, 14, 14), (64, 3, 3), dict(padding=1, algorithm="winograd")),
        ((2, 24, 30, 45), (72, 3, 3), dict(padding=1, stride=2)),
        ((2, 8, 9, 9), (8, 3, 3), dict(padding=1, groups=8)),
        ((3, 6, 5, 5), (10, 5, 5), {}),
    )
    for (n, c, h, w_), (oc, kh, kw_), kw in cases:
        x = rand(rng, n, c, h, w_)
        w, b = rand(rng, oc, c // kw.get("groups", 1), kh, kw_), rand(rng, oc)
        expected = cnnfast.conv2d(x, w, b, activation="relu", **kw)
        residual = rand(rng, *expected.shape)
        with_residual = cnnfast.conv2d(x, w, b, activation="relu", residual=residual, **kw)
        prepared = _core.conv2d_prepare(x, w, kw.get("stride", 1), kw.get("padding", 0), 1, kw.get("groups", 1),
                                        kw.get("algorithm", "auto"))
        expected_prepared = cnnfast.conv2d(x, w, b, activation="relu", prepared=prepared, **kw)
        for extra, want in (({}, expected), (dict(prepared=prepared), expected_prepared),
                            (dict(residual=residual), with_residual)):
            big = sentinel((n, oc + 7, *expected.shape[2:]))
            out = big[:, 3:3 + oc]
            y = cnnfast.conv2d(x, w, b, activation="relu", out=out, **kw, **extra)
            assert y is out
            what = f"{x.shape} * {w.shape} {kw} {sorted(extra)}"
            np.testing.assert_array_equal(out, want, err_msg=what)
            assert np.isnan(big[:, :3]).all() and np.isnan(big[:, 3 + oc:]).all(), what
        big = sentinel((n, oc + 7, *expected.shape[2:]))
        _core.reference.conv2d(x, w, b, activation="relu", out=big[:, 2:2 + oc], **kw)
        assert_close(big[:, 2:2 + oc], _core.reference.conv2d(x, w, b, activation="relu", **kw), atol=0)


def test_conv2d_out_layouts_it_refuses(rng):
    x, w = rand(rng, 2, 4, 6, 6), rand(rng, 5, 4, 3, 3)
    big = np.zeros((2, 9, 4, 4), np.float32)
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous array"):
        cnnfast.conv2d(x, w, out=big[:, 2:7, ::-1])  # rows reversed within an image
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous array"):
        cnnfast.conv2d(x, w, out=np.zeros((2, 5, 4, 8), np.float32)[..., ::2])
    overlapping = np.lib.stride_tricks.as_strided(np.zeros(200, np.float32), (2, 5, 4, 4), (16 * 4, 64, 16, 4))
    with pytest.raises(ValueError, match="C-contiguous"):  # images overlapping one another
        cnnfast.conv2d(x, w, out=overlapping)
    readonly = big[:, 2:7]
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        cnnfast.conv2d(x, w, out=readonly)
    # a channel slice whose images lie over x's memory
    mem = np.zeros(2 * 9 * 36, np.float32)
    x_in = mem[:2 * 4 * 36].reshape(2, 4, 6, 6)
    with pytest.raises(ValueError, match="out shares memory with x"):
        cnnfast.conv2d(x_in, rand(rng, 5, 4, 1, 1), out=mem.reshape(2, 9, 6, 6)[:, 4:9])


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_lane_tail(isa, rng, threads_restored, threads):
    # 1x1 convolutions whose pixels leave a last GEMM panel of 1 to 8 columns (14x14: 196 = 4 x 48 + 4 with
    # AVX-512, 8 x 24 + 4 with AVX2). That panel is computed with the output channels as lanes (AVX-512: up
    # to 8 columns, AVX2: up to 4), several micro-panels of them at a time when the weights are prepared (four;
    # AVX2: pairs of micro-panels as whole vectors, 4 to 12 micro-panels at a time, then two or four), one at a
    # time otherwise: channel counts that leave partial groups and partial micro-panels, K in one and in two
    # blocks, and the same bits prepared or not
    cnnfast.set_num_threads(threads)
    for h, w_ in ((14, 14), (13, 8), (97, 1), (11, 9), (6, 17), (5, 10), (7, 7)):
        for c in (24, 600):
            x = rand(rng, 2, c, h, w_)
            for o in (8, 20, 40, 72):
                w, b = rand(rng, o, c, 1, 1), rand(rng, o)
                y = check_conv(x, w, b)
                prepared = _core.conv2d_prepare(x, w, 1, 0, 1, 1, "auto")
                y_prepared = cnnfast.conv2d(x, w, b, prepared=prepared)
                if prepared.kind == "panels":
                    np.testing.assert_array_equal(y_prepared, y)
                else:
                    assert_close(y_prepared, y, atol=ref.conv2d_tolerance(x, w, b), what=f"{x.shape} * {w.shape}")
                relu = cnnfast.conv2d(x, w, b, activation="relu", prepared=prepared)
                np.testing.assert_array_equal(relu, np.maximum(y_prepared, 0))


def test_conv2d_resident_k_blocks(isa, rng, threads_restored):
    # more than four micro-panels of output channels and K > 160: K blocks of at most 128, the B panel kept
    # while the micro-panels pass over it when the weights are packed whole (prepared, or packed by the call).
    # Shapes: 1x1 on 14x14 with a lane tail (K = 200, 520), 7x7 (pixel-major when prepared), a stride-2 3x3
    # (grid columns through a scratch block, K = 24 * 9), and 72 / 75 channels (partial micro-panels). The
    # bits are the same at one, two and three threads, prepared or not.
    cases = [((1, 200, 14, 14), (72, 200, 1, 1), 1, 0), ((2, 520, 14, 14), (75, 520, 1, 1), 1, 0),
             ((1, 200, 7, 7), (96, 200, 1, 1), 1, 0), ((1, 24, 20, 20), (72, 24, 3, 3), 2, 1),
             ((1, 24, 14, 14), (72, 24, 3, 3), 1, 1)]
    for xs, ws, stride, pad in cases:
        x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
        with cnnfast.num_threads(1):
            one = check_conv(x, w, b, stride=stride, padding=pad, algorithm="direct")
        prepared = _core.conv2d_prepare(x, w, stride, pad, 1, 1, "direct")
        for threads in (1, 2, 3):
            with cnnfast.num_threads(threads):
                np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, stride=stride, padding=pad, algorithm="direct"),
                                              one, err_msg=f"{xs} * {ws}, {threads} threads")
                np.testing.assert_array_equal(
                    cnnfast.conv2d(x, w, b, stride=stride, padding=pad, algorithm="direct", prepared=prepared), one,
                    err_msg=f"{xs} * {ws} prepared ({prepared.kind}), {threads} threads")


def test_conv2d_copied_b_panels(isa, rng, threads_restored):
    # 1x1 layers read their input in place, and copy B's panels before the micro-panels pass over them, one at
    # a time where K > 160 and there are more than four micro-panels, else a K block's panels at once (K up to
    # 160). Planes a multiple of 1 KiB (16x16, 32x32) and one column wider (other panel boundaries, another
    # partial last panel: 16x16 has 256 = 5 x 48 + 16 columns, 16x17 272 = 5 x 48 + 32), a batch of two, a
    # residual: the same bits on both, and at one, two and three threads, prepared or not.
    cases = [((1, 200, 16, 16), (72, 200, 1, 1)), ((2, 264, 32, 32), (40, 264, 1, 1)),
             ((1, 96, 32, 32), (72, 96, 1, 1)), ((2, 40, 16, 16), (24, 40, 1, 1)), ((1, 300, 16, 16), (16, 300, 1, 1))]
    for xs, ws in cases:
        x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
        with cnnfast.num_threads(1):
            one = check_conv(x, w, b, algorithm="direct")
            res = rand(rng, *one.shape)
            one_res = cnnfast.conv2d(x, w, b, activation="relu", algorithm="direct", residual=res)
        # the same layer on planes of another size (rows of 17 / 33 pixels, the extra column dropped)
        wide = np.zeros(xs[:3] + (xs[3] + 1,), np.float32)
        wide[..., :-1] = x
        with cnnfast.num_threads(1):
            np.testing.assert_array_equal(cnnfast.conv2d(wide, w, b, algorithm="direct")[..., :-1], one,
                                          err_msg=f"{xs} * {ws} against planes of another size")
        assert_close(one_res, np.maximum(one + res, 0), atol=ref.conv2d_tolerance(x, w, b) + 1e-6,
                     what=f"{xs} * {ws} + residual")
        assert_same_bits_over_threads(x, w, b, res, one, one_res, stride=1)


def assert_same_bits_over_threads(x, w, b, res, one, one_res, stride):
    """The direct path at one, two and three threads, prepared or not, with and without a residual: the same
    bits as `one` and `one_res` (computed on one thread)."""
    prepared = _core.conv2d_prepare(x, w, stride, 0, 1, 1, "direct")
    what = f"{x.shape} * {w.shape} stride {stride}"
    for threads in (1, 2, 3):
        with cnnfast.num_threads(threads):
            for p in (None, prepared):
                np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, stride=stride, algorithm="direct", prepared=p),
                                              one, err_msg=f"{what}, {threads} threads, prepared={p is not None}")
                np.testing.assert_array_equal(
                    cnnfast.conv2d(x, w, b, stride=stride, activation="relu", algorithm="direct", prepared=p,
                                   residual=res),
                    one_res, err_msg=f"{what} + residual, {threads} threads, prepared={p is not None}")


def test_conv2d_strided_1x1_copied_b_panels(isa, rng, threads_restored):
    # strided 1x1 layers read B's rows from their phase image, a channel's phase apart, and copy the panels as
    # the layers read in place do: even and odd sizes (a partial last panel), K in one block and in several,
    # a residual; against the reference, and the same bits at one, two and three threads, prepared or not.
    cases = [((1, 72, 56, 56), (80, 72, 1, 1)), ((2, 200, 27, 27), (48, 200, 1, 1)), ((1, 300, 14, 15), (40, 300, 1, 1))]
    for xs, ws in cases:
        x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
        with cnnfast.num_threads(1):
            one = check_conv(x, w, b, stride=2, algorithm="direct")
            res = rand(rng, *one.shape)
            one_res = cnnfast.conv2d(x, w, b, stride=2, activation="relu", algorithm="direct", residual=res)
        assert_close(one_res, np.maximum(one + res, 0), atol=ref.conv2d_tolerance(x, w, b) + 1e-6,
                     what=f"{xs} * {ws} stride 2 + residual")
        assert_same_bits_over_threads(x, w, b, res, one, one_res, stride=2)


def test_conv2d_whole_m_over_more_n_blocks(isa, rng, threads_restored):
    # too few N blocks for the threads and several micro-panels of output channels: the split takes all the
    # channels over more, smaller N blocks (a multiple of the threads) instead of channel chunks. Shapes: 1x1
    # on 56x56 (66 panels: 9 blocks, 10 at two threads, 12 at three) and 28x28 (17 panels), a batch of two
    # (outer = 2), a stride-2 3x3 (columns in the output's order); with a residual. Same bits at 1-3 threads.
    cases = [((1, 40, 56, 56), (64, 40, 1, 1), 1, 0), ((1, 48, 28, 28), (128, 48, 1, 1), 1, 0),
             ((2, 24, 28, 28), (96, 24, 1, 1), 1, 0), ((1, 16, 56, 56), (64, 16, 3, 3), 2, 1)]
    for xs, ws, stride, pad in cases:
        x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
        with cnnfast.num_threads(1):
            one = check_conv(x, w, b, stride=stride, padding=pad, algorithm="direct")
            res = rand(rng, *one.shape)
            one_res = cnnfast.conv2d(x, w, b, stride=stride, padding=pad, activation="relu", algorithm="direct",
                                     residual=res)
        assert_close(one_res, np.maximum(one + res, 0), atol=ref.conv2d_tolerance(x, w, b) + 1e-6,
                     what=f"{xs} * {ws} + residual")
        prepared = _core.conv2d_prepare(x, w, stride, pad, 1, 1, "direct")
        for threads in (2, 3):
            with cnnfast.num_threads(threads):
                for p in (None, prepared):
                    np.testing.assert_array_equal(
                        cnnfast.conv2d(x, w, b, stride=stride, padding=pad, algorithm="direct", prepared=p), one,
                        err_msg=f"{xs} * {ws}, {threads} threads, prepared={p is not None}")
                    np.testing.assert_array_equal(
                        cnnfast.conv2d(x, w, b, stride=stride, padding=pad, activation="relu", algorithm="direct",
                                       prepared=p, residual=res), one_res,
                        err_msg=f"{xs} * {ws} + residual, {threads} threads, prepared={p is not None}")


def test_conv2d_asymmetric_parameters(isa, rng):
    x = rand(rng, 1, 5, 25, 33)
    check_conv(x, rand(rng, 9, 5, 3, 5), rand(rng, 9), stride=(1, 2), padding=(0, 2), dilation=(2, 1))
    check_conv(x, rand(rng, 9, 5, 1, 7), None, stride=(3, 1), padding=(4, 0), dilation=(1, 3))
    check_conv(x, rand(rng, 9, 5, 2, 1), None, padding=[1, 0], stride=[2, 3], dilation=[3, 2])


def test_conv2d_relu_and_bias(isa, rng):
    x, w, b = rand(rng, 2, 6, 9, 7), rand(rng, 10, 6, 3, 3), rand(rng, 10, low=-3, high=3)
    y_lin = check_conv(x, w, b, padding=1)
    y_relu = check_conv(x, w, b, padding=1, activation="relu")
    np.testing.assert_array_equal(y_relu, np.maximum(y_lin, 0))
    assert (y_relu == 0).any() and (y_relu > 0).any()
    no_bias = cnnfast.conv2d(x, w, None, padding=1)
    np.testing.assert_allclose(y_lin - no_bias, np.broadcast_to(b[None, :, None, None], y_lin.shape), atol=1e-5)


def test_conv2d_nan_propagates(isa, rng):
    x, w = rand(rng, 1, 4, 9, 7), rand(rng, 8, 4, 3, 3)
    x[0, 2, 4, 3] = np.nan
    for kw in (dict(padding=1), dict(padding=1, activation="relu"), dict(stride=2), dict(groups=4, padding=1)):
        wt = w if kw.get("groups", 1) == 1 else rand(rng, 4, 1, 3, 3)
        y = cnnfast.conv2d(x, wt, **kw)
        expected = ref.conv2d(x, wt, **kw)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=str(kw))
        assert np.isnan(y).any()


def test_conv2d_infinite_inputs(isa, rng):
    x, w = np.abs(rand(rng, 1, 3, 9, 7)), np.abs(rand(rng, 4, 3, 3, 3)) + 0.1
    x[0, 1, 0, 0] = np.inf
    y = cnnfast.conv2d(x, w)
    expected = ref.conv2d(x, w)
    np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))
    assert np.isinf(y[0, :, 0, 0]).all()


def test_conv2d_thread_counts_agree(isa, rng, threads_restored):
    x, w, b = rand(rng, 2, 16, 25, 33), rand(rng, 24, 16, 3, 3), rand(rng, 24)
    with cnnfast.num_threads(1):
        one = cnnfast.conv2d(x, w, b, padding=1)
        one_dw = cnnfast.conv2d(x, w[:16, :1], None, padding=1, groups=16)
    for n in (2, 3, 5):
        with cnnfast.num_threads(n):
            np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, padding=1), one)
            np.testing.assert_array_equal(cnnfast.conv2d(x, w[:16, :1], None, padding=1, groups=16), one_dw)


def test_conv2d_isas_agree(rng):
    """The paths differ only in rounding; each is within the reference tolerance of the others."""
    x, w, b = rand(rng, 2, 13, 25, 33), rand(rng, 17, 13, 3, 3), rand(rng, 17)
    before = _core._current_isa()
    try:
        results = {}
        for name in _core._supported_isas():
            _core._set_isa(name)
            results[name] = cnnfast.conv2d(x, w, b, padding=1)
    finally:
        _core._set_isa(before)
    for name, y in results.items():
        assert_close(y, results["generic"], atol=ref.conv2d_tolerance(x, w, b), what=name)


def test_conv2d_accepts_float64_and_non_contiguous(isa, rng):
    x, w, b = rand(rng, 2, 3, 9, 7), rand(rng, 4, 3, 3, 3), rand(rng, 4)
    expected = cnnfast.conv2d(x, w, b, padding=1)
    np.testing.assert_array_equal(
        cnnfast.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=1), expected
    )
    # the same values through strided and transposed views
    xs = np.zeros((2, 6, 9, 14), np.float32)
    xs[:, ::2, :, ::2] = x
    wt = np.ascontiguousarray(w.transpose(1, 0, 3, 2)).transpose(1, 0, 3, 2)
    bs = np.repeat(b, 2)[::2]
    assert not xs[:, ::2, :, ::2].flags.c_contiguous and not wt.flags.c_contiguous
    np.testing.assert_array_equal(cnnfast.conv2d(xs[:, ::2, :, ::2], wt, bs, padding=1), expected)
    np.testing.assert_array_equal(cnnfast.conv2d(x.astype(np.float16), w, b, padding=1),
                                  cnnfast.conv2d(x.astype(np.float16).astype(np.float32), w, b, padding=1))
    # nested lists are arrays too
    np.testing.assert_array_equal(cnnfast.conv2d(x.tolist(), w.tolist(), b.tolist(), padding=1), expected)


def test_conv2d_misaligned_float32_input(isa, rng):
    x, w = rand(rng, 1, 3, 9, 7), rand(rng, 5, 3, 3, 3)
    buf = np.zeros(x.nbytes + 1, np.uint8)
    xm = np.frombuffer(buf.data, dtype=np.float32, count=x.size, offset=1).reshape(x.shape)
    xm[...] = x
    assert not xm.flags.aligned
    expected = cnnfast.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(cnnfast.conv2d(xm, w, padding=1), expected)
    obuf = np.zeros(expected.nbytes + 1, np.uint8)
    out = np.frombuffer(obuf.data, dtype=np.float32, count=expected.size, offset=1).reshape(expected.shape)
    cnnfast.conv2d(x, w, padding=1, out=out)
    np.testing.assert_array_equal(out, expected)


def test_conv2d_does_not_modify_inputs_and_returns_new_array(isa, rng):
    x, w, b = rand(rng, 1, 3, 9, 7), rand(rng, 5, 3, 3, 3), rand(rng, 5)
    copies = x.copy(), w.copy(), b.copy()
    y = cnnfast.conv2d(x, w, b, padding=1, activation="relu")
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    assert not np.shares_memory(y, x)


def test_conv2d_workspace_released(isa, rng):
    x, w = rand(rng, 1, 24, 25, 33), rand(rng, 16, 24, 5, 5)
    _core._workspace_reset_peak()
    cnnfast.conv2d(x, w, padding=2)
    assert _core._workspace_in_use() == 0
    assert _core._workspace_peak() > 0
    # a bad call after the checks must not leak either
    with pytest.raises(ValueError):
        cnnfast.conv2d(x, w, out=np.empty((1, 16, 1, 1), np.float32))
    assert _core._workspace_in_use() == 0


# --- PyTorch as a second opinion -----------------------------------------------------------------

TORCH_CASES = [
    dict(x=(2, 3, 25, 33), w=(8, 3, 3, 3), stride=1, padding=1),
    dict(x=(2, 16, 9, 7), w=(16, 1, 3, 3), stride=1, padding=1, groups=16),
    dict(x=(1, 8, 9, 7), w=(16, 1, 5, 5), stride=2, padding=2, groups=8),
    dict(x=(1, 6, 25, 33), w=(9, 2, 3, 3), stride=(2, 1), padding=(1, 0), dilation=(2, 3), groups=3),
    dict(x=(1, 4, 9, 7), w=(5, 4, 2, 2), padding="same"),
    dict(x=(1, 4, 9, 7), w=(5, 4, 4, 3), padding="same", dilation=2),
    dict(x=(2, 5, 9, 7), w=(7, 5, 1, 1)),
    dict(x=(1, 24, 11, 13), w=(9, 24, 5, 5), padding=2),
    dict(x=(1, 3, 25, 33), w=(4, 3, 3, 3), stride=3, padding="valid"),
    dict(x=(1, 3, 9, 7), w=(4, 3, 9, 7)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: f"{c['x']}*{c['w']}")
def test_conv2d_matches_pytorch(isa, case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    kw = {k: v for k, v in case.items() if k not in ("x", "w")}
    x, w, b = rand(rng, *case["x"]), rand(rng, *case["w"]), rand(rng, case["w"][0])
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kw).numpy()
    y = cnnfast.conv2d(x, w, b, **kw)
    # both are float32 computations: twice the reference tolerance
    assert_close(y, expected.astype(np.float64), atol=2 * ref.conv2d_tolerance(x, w, b), what=f"vs torch {case}")
    y = cnnfast.conv2d(x, w, b, activation="relu", **kw)
    assert_close(y, np.maximum(expected, 0).astype(np.float64), atol=2 * ref.conv2d_tolerance(x, w, b))


# --- the algorithms: direct GEMM and Winograd F(4x4, 3x3) ------------------------------------------


@st.composite
def winograd_cases(draw):
    pk = draw(st.sampled_from(["same", "valid", "int", "pair"]))
    padding = {"same": "same", "valid": "valid", "int": draw(st.integers(0, 2)),
               "pair": (draw(st.integers(0, 2)), draw(st.integers(0, 2)))}[pk]
    pt, pb, pl, pr = ref.conv2d_padding(padding, (3, 3), (1, 1))
    return dict(
        n=draw(st.sampled_from([1, 1, 2, 3, 0])),
        c=draw(st.sampled_from([1, 2, 3, 4, 8, 13, 16, 17, 31, 32, 33, 64, 300])),
        o=draw(st.sampled_from([1, 3, 4, 8, 9, 16, 17, 24, 25, 32, 33, 47, 48, 49, 64, 97])),
        # output sizes 1..4 above a multiple of the 4x4 tile
        h=max(1, 3 - pt - pb) + draw(st.integers(0, 21)),
        w=max(1, 3 - pl - pr) + draw(st.integers(0, 21)),
        padding=padding,
        bias=draw(st.booleans()),
        relu=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=examples(60))
@given(case=winograd_cases(), algorithm=st.sampled_from(["winograd", "direct", "auto"]))
def test_conv2d_algorithms_match_numpy_reference(isa, case, algorithm):
    rng = np.random.default_rng(case["seed"])
    if case["n"] * case["c"] * case["h"] * case["w"] > 400_000:
        case["h"], case["w"] = min(case["h"], 9), min(case["w"], 9)
    x = rand(rng, case["n"], case["c"], case["h"], case["w"])
    w = rand(rng, case["o"], case["c"], 3, 3)
    b = rand(rng, case["o"]) if case["bias"] else None
    check_conv(x, w, b, padding=case["padding"], activation="relu" if case["relu"] else None, algorithm=algorithm)


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (4, 4), (5, 5), (6, 7), (8, 9), (25, 33), (56, 56)])
def test_conv2d_winograd_tiles(isa, hw, rng):
    # output sizes at, below and above multiples of the 4x4 output tile, one tile to many
    x = rand(rng, 2, 32, *hw)
    for o in (32, 49):
        check_conv(x, rand(rng, o, 32, 3, 3), rand(rng, o), padding=1, algorithm="winograd", activation="relu")
        check_conv(x, rand(rng, o, 32, 3, 3), None, padding="same", algorithm="auto")


def test_conv2d_winograd_large_layer(isa, rng):
    # a VGG-like layer: channels past one K block, tiles in several blocks
    x, w, b = rand(rng, 1, 300, 28, 28), rand(rng, 96, 300, 3, 3), rand(rng, 96)
    y_w = check_conv(x, w, b, padding=1, algorithm="winograd")
    y_d = check_conv(x, w, b, padding=1, algorithm="direct")
    y_a = check_conv(x, w, b, padding=1)
    np.testing.assert_array_equal(y_a, y_w)  # 'auto' takes Winograd here
    assert_close(y_w, y_d.astype(np.float64), atol=ref.winograd_tolerance(x, w, b) + ref.conv2d_tolerance(x, w, b))


def test_conv2d_winograd_nan_and_batch_zero(isa, rng):
    x, w = rand(rng, 1, 32, 9, 7), rand(rng, 32, 32, 3, 3)
    x[0, 5, 4, 3] = np.nan
    y = cnnfast.conv2d(x, w, padding=1, algorithm="winograd")
    expected = ref.conv2d(x, w, padding=1)
    # Winograd mixes a whole 6x6 input tile into every output of its 4x4 tile, so a NaN may reach outputs
    # beyond its 3x3 neighbourhood, but only within the tiles whose input holds it: input row 4 feeds output
    # tile rows 0 and 1 (output rows 0-7), never row 8
    assert np.isnan(y[np.isnan(expected)]).all()
    assert np.isfinite(y[:, :, 8, :]).all()
    assert cnnfast.conv2d(np.zeros((0, 32, 9, 7), np.float32), w, padding=1, algorithm="winograd").shape == (0, 32, 9, 7)


def test_conv2d_algorithm_thread_counts_agree(isa, rng, threads_restored):
    x, w, b = rand(rng, 2, 40, 25, 33), rand(rng, 48, 40, 3, 3), rand(rng, 48)
    for algorithm in ("winograd", "direct"):
        with cnnfast.num_threads(1):
            one = cnnfast.conv2d(x, w, b, padding=1, algorithm=algorithm)
        for n in (2, 3):
            with cnnfast.num_threads(n):
                np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, padding=1, algorithm=algorithm), one)


def test_conv2d_reference_ignores_the_algorithm(rng):
    x, w = rand(rng, 1, 4, 9, 7), rand(rng, 5, 4, 3, 3)
    expected = _core.reference.conv2d(x, w, padding=1)
    for algorithm in ("direct", "winograd", "auto"):
        np.testing.assert_array_equal(_core.reference.conv2d(x, w, padding=1, algorithm=algorithm), expected)


# --- padding far larger than the input -----------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS")
def test_conv2d_padding_far_larger_than_the_input():
    # A 3x3 output needs no memory to speak of, whatever the padding: with stride 10^4 and padding 3*10^4 on an
    # 8x8 image only output (3, 3) sees the input. Run under a 4 GiB address-space cap, on every ISA.
    proc = run_with_memory_limit(
        """
        import numpy as np, cnnfast
        from cnnfast import _core
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
        for isa in _core._supported_isas():
            _core._set_isa(isa)
            for w in (rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32),
                      rng.uniform(-1, 1, (4, 3, 1, 1)).astype(np.float32)):
                y = cnnfast.conv2d(x, w, padding=3 * 10**4, stride=10**4)
                assert y.shape == (2, 4, 7, 7), y.shape
                centre = cnnfast.conv2d(x[:, :, : w.shape[2], : w.shape[3]], w)[:, :, 0, 0]
                assert np.allclose(y[:, :, 3, 3], centre, atol=1e-5), isa
                y[:, :, 3, 3] = 0
                assert not y.any(), isa
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_conv2d_phase_slabs(isa, rng, threads_restored):
    # a layer of several taps whose phase images pass 512 KiB per thread builds them a slab of K blocks at a time
    # (only the channels those rows read) just before the GEMM uses them: the same K blocks, so the same bits as
    # building them whole, which a third thread's larger budget does for these shapes. ResNet-50's 3x3/2 (fewer
    # channels; shifted images, K blocks of 116 rows that end inside a channel's nine) and a 3x3/2 to 32 output
    # channels (phase images, exact columns); a batch of two, a residual with ReLU.
    cases = [((2, 64, 56, 56), (64, 64, 3, 3)), ((1, 96, 56, 56), (32, 96, 3, 3))]
    for xs, ws in cases:
        x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
        kw = dict(stride=2, padding=1, algorithm="direct")
        with cnnfast.num_threads(1):
            one = check_conv(x, w, b, **kw)
        residual = rand(rng, *one.shape)
        expected = np.maximum(one + residual, 0)
        prepared = _core.conv2d_prepare(x, w, 2, 1, 1, 1, "direct")
        for threads in (1, 2, 3):
            with cnnfast.num_threads(threads):
                np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, **kw), one, err_msg=f"{xs} * {ws}, {threads} threads")
                np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, prepared=prepared, **kw), one,
                                              err_msg=f"{xs} * {ws} prepared ({prepared.kind}), {threads} threads")
                np.testing.assert_array_equal(cnnfast.conv2d(x, w, b, activation="relu", residual=residual, **kw),
                                              expected, err_msg=f"{xs} * {ws} + residual, {threads} threads")
