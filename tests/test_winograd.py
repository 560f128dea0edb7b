"""Winograd F(4x4, 3x3) and F(4x4, 5x5), F(2x2, 3x3) and F(2x2, 5x5) (calls of few tiles, where fewer
transformed filters pay), F(6x6, 3x3) (AVX2, large images) and, on stride phases, F(5x5, 2x2), F(7x7, 2x2)
and F(5x5, 4x4): every ISA path against the float64 reference, with the documented error bound."""

import numpy as np
import pytest
from conftest import examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core

# Documented bound: max |winograd - exact| <= 4e-6 * max|x| * max|w| * C * kh * kw on random data (typical
# values are 1e-8 to 2e-7; the worst seen, with one input channel, 2e-6; see README).
BOUND = 4e-6


def exact(x, w, b, padding):
    return _core.reference.conv2d(x, w, b, padding=padding)


CASES = [
    # n, c, h, w, o, padding (3x3 kernels)
    (1, 1, 1, 1, 1, 1),
    (1, 3, 9, 7, 5, 1),
    (2, 17, 13, 11, 33, 1),
    (1, 64, 14, 14, 64, 1),
    (1, 40, 5, 6, 50, 0),
    (2, 300, 8, 9, 70, 1),  # channels past one K block
    (1, 512, 7, 7, 64, 1),  # a 7x7 image of few channel pairs: F(4x4, 3x3) where 512-bit FMAs are split
    (1, 512, 7, 7, 512, 1),  # ResNet-50's last stage at batch 1: F(2x2, 3x3)
    (1, 400, 5, 6, 400, 0),  # F(2x2, 3x3), no padding
    (2, 350, 5, 3, 380, 1),  # F(2x2, 3x3), channels past one K block, output channels past a vector
    (2, 350, 9, 7, 380, 1),  # F(4x4, 3x3) on filters that stream (prefetched, tile panels grouped)
    (1, 8, 4, 4, 100, 1),  # output channels past one NR panel
    (3, 16, 25, 33, 16, 1),
    (1, 16, 3, 3, 8, 0),  # a single output pixel
    (1, 16, 6, 70, 8, 1),  # tile rows longer than one staging segment
    (1, 1000, 36, 36, 16, 1),  # tile blocks that end inside a tile row
]

CASES_5X5 = [
    # n, c, h, w, o, padding: F(4x4, 5x5), or F(2x2, 5x5) where the cost model picks it (wino_tile)
    (1, 1, 1, 1, 1, 2),  # F(2x2): one tile
    (1, 1, 12, 12, 4, 2),  # one input channel: the largest relative error seen
    (1, 3, 9, 7, 5, 2),
    (2, 17, 13, 11, 33, 2),
    (1, 40, 5, 6, 50, 0),  # F(2x2)
    (2, 300, 8, 9, 70, 2),  # channels past one K block
    (1, 8, 4, 4, 100, 2),  # output channels past one NR panel; one 4x4 tile
    (1, 300, 4, 4, 250, 2),  # F(2x2): a 4x4 output, filters too many to stream for one tile of F(4x4)
    (1, 16, 5, 5, 8, 0),  # a single output pixel
    (1, 48, 9, 70, 16, 2),  # tile rows longer than one staging segment
    (1, 1000, 14, 14, 16, 2),  # tile blocks that end inside a tile row
    (1, 192, 28, 28, 32, 2),  # Inception's 5x5 branch
    (3, 24, 14, 14, 20, 2),  # 4 x 4 tiles an image, the last row and column partial
    (2, 300, 6, 6, 250, 2),  # F(2x2): 3 x 3 tiles an image, side by side and one by one across rows and images
]


@pytest.mark.parametrize("case", [c + (3,) for c in CASES] + [c + (5,) for c in CASES_5X5])
def test_winograd_error_bound(isa, case):
    n, c, h, w, o, p, k = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    y = np.full((n, o, h + 2 * p - k + 1, w + 2 * p - k + 1), np.nan, np.float32)
    cnnfast.conv2d(x, wt, b, padding=p, algorithm="winograd", out=y)
    ref = exact(x, wt, b, p)
    scale = np.abs(x).max() * np.abs(wt).max() * c * k * k
    assert not np.isnan(y).any()
    assert np.abs(y - ref).max() <= BOUND * scale


# (n, c, h, w, o): 3x3 calls that take F(6x6, 3x3) with prepared filters on AVX2 (and F(4x4, 3x3) elsewhere)
CASES_6X6 = [
    (1, 1, 60, 60, 4),  # one input channel: the largest relative error seen
    (1, 3, 36, 37, 5),  # the last tile column partial
    (2, 17, 30, 31, 33),  # two images; output channels past a vector
    (1, 16, 12, 12, 130),  # 4 tiles; output channels past several GEMM panels
    (1, 64, 56, 56, 64),  # ResNet-50's first stage
]


@pytest.mark.parametrize("case", CASES_6X6)
def test_winograd_6x6_error_bound(isa, case):
    n, c, h, w, o = case
    rng = np.random.default_rng(sum(case) + 6)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    prepared = _core.conv2d_prepare(x, wt, 1, 1, 1, 1, "winograd")
    nr = {"avx512": 48, "avx2": 24, "generic": 8}[prepared.isa]
    points = 64 if prepared.isa == "avx2" else 36
    assert prepared.nbytes == points * -(-o // nr) * nr * c * 4
    y = _core.conv2d(x, wt, b, 1, 1, 1, 1, "relu", None, "winograd", prepared)
    ref = np.maximum(exact(x, wt, b, 1), 0)
    assert np.abs(y - ref).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * c * 9


@settings(max_examples=examples(40))
@given(n=st.integers(1, 3), c=st.integers(1, 40), h=st.integers(1, 23), w=st.integers(1, 23),
       o=st.integers(1, 60), k=st.sampled_from([3, 5]), pad=st.integers(0, 2), bias=st.booleans(),
       relu=st.booleans(), seed=st.integers(0, 2**16))
def test_winograd_random_shapes(isa, n, c, h, w, o, k, pad, bias, relu, seed):
    assume(h + 2 * pad >= k and w + 2 * pad >= k)  # no output pixel: input checks reject it (tested elsewhere)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    y = cnnfast.conv2d(x, wt, b, padding=pad, activation="relu" if relu else None, algorithm="winograd")
    ref = exact(x, wt, b, pad)
    if relu:
        ref = np.maximum(ref, 0)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * c * k * k


def test_winograd_fused_relu_and_same_padding(isa):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 10, 12), dtype=np.float32)
    wt = rng.standard_normal((48, 32, 3, 3), dtype=np.float32)
    y = cnnfast.conv2d(x, wt, padding="same", activation="relu", algorithm="winograd")
    ref = np.maximum(exact(x, wt, None, 1), 0)
    assert np.abs(y - ref).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * 32 * 9


# (n, c, h, o, k): tile counts just above and below 32 tiles a thread, where each thread takes whole tile
# blocks of its own instead of the team sharing each block; 600 input channels without prepared filters
# split the output channels into blocks, each thread's tile blocks then done once per output block
OWN_BLOCK_CASES = [(1, 32, 32, 40, 3), (1, 32, 28, 40, 3), (2, 24, 30, 50, 3), (1, 600, 40, 100, 3),
                   (3, 40, 17, 30, 5), (1, 64, 25, 20, 3)]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("case", OWN_BLOCK_CASES)
def test_winograd_same_bits_on_any_thread_count(isa, threads_restored, threads, case):
    # however the tiles are split into blocks and the blocks between threads, each output comes from the
    # same sums in the same order: the bits of one thread
    n, c, h, o, k = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, h + 3), dtype=np.float32)
    wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    p = k // 2
    prepared = _core.conv2d_prepare(x, wt, 1, p, 1, 1, "winograd")
    cnnfast.set_num_threads(1)
    one = cnnfast.conv2d(x, wt, b, padding=p, algorithm="winograd")
    one_prepared = _core.conv2d(x, wt, b, 1, p, 1, 1, None, None, "winograd", prepared)
    cnnfast.set_num_threads(threads)
    many = cnnfast.conv2d(x, wt, b, padding=p, algorithm="winograd")
    many_prepared = _core.conv2d(x, wt, b, 1, p, 1, 1, None, None, "winograd", prepared)
    np.testing.assert_array_equal(many, one)
    # (prepared, the cost model may pick another tile size: F(6x6, 3x3) on AVX2)
    np.testing.assert_array_equal(many_prepared, one_prepared)
    if threads == 2 and c * o < 10_000:  # (the float64 reference is slow on the 600-channel case)
        assert np.abs(one - exact(x, wt, b, p)).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * c * k * k


# (n, c, h, w, o, k): o leaves a last GEMM panel of a few output channels (with AVX2 up to 8 of a panel of 24,
# as with Inception's 5x5 16 -> 32 and every layer of 128 or 512 out, which the tiles then take two micro-
# panels at a time); odd and even counts of tile panels, tiles past the last pair
LAST_PANEL_CASES = [(1, 16, 28, 28, 32, 5), (1, 24, 9, 11, 8, 3), (2, 20, 13, 10, 56, 3), (1, 64, 15, 15, 128, 3),
                    (1, 7, 6, 21, 4, 5), (3, 10, 5, 7, 36, 3)]


@pytest.mark.parametrize("case", LAST_PANEL_CASES)
def test_winograd_last_panel_of_few_channels_same_bits(isa, case):
    # an output channel's sums do not depend on how many channels share its GEMM panel: the first o channels
    # computed alone (a last panel of a few) and among enough more to fill whole panels give the same bits
    n, c, h, w, o, k = case
    rng = np.random.default_rng(sum(case))
    full = -(-o // 48) * 48 + 48  # whole panels on every path (48, 24 or 8 channels a panel)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((full, c, k, k), dtype=np.float32)
    b = rng.standard_normal(full).astype(np.float32)
    p = k // 2
    alone = cnnfast.conv2d(x, wt[:o], b[:o], padding=p, algorithm="winograd")
    among = cnnfast.conv2d(x, wt, b, padding=p, algorithm="winograd")
    np.testing.assert_array_equal(alone, among[:, :o])
    assert np.abs(alone - exact(x, wt[:o], b[:o], p)).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * c * k * k


@pytest.mark.parametrize("k", [3, 5])
def test_auto_picks_a_path_that_agrees_with_direct(k):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 64, 16, 16), dtype=np.float32)
    wt = rng.standard_normal((64, 64, k, k), dtype=np.float32)
    direct = cnnfast.conv2d(x, wt, padding=k // 2, algorithm="direct")
    auto = cnnfast.conv2d(x, wt, padding=k // 2)
    assert np.abs(auto - direct).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * 64 * k * k


# (n, c, h, o, k, padding) -> whether 'auto' with prepared weights takes Winograd (see winograd_profitable): its
# GEMMs take the output channels as vector lanes, so few output channels stay direct
@pytest.mark.parametrize("case,winograd", [
    ((1, 192, 28, 32, 5, 2), True),    # Inception's 5x5 on the module's input
    ((1, 16, 28, 32, 5, 2), True),     # 5x5 from 16 channels in and out on 7x7 and larger outputs
    ((1, 16, 14, 48, 5, 2), True),
    ((1, 16, 7, 32, 5, 2), True),
    ((1, 192, 28, 16, 5, 2), True),
    ((1, 8, 14, 16, 5, 2), False),     # fewer channels in: direct
    ((64, 6, 14, 16, 5, 0), False),    # LeNet-5's C3
    ((64, 16, 5, 120, 5, 0), False),   # LeNet-5's C5: a 1x1 output, a fully connected layer
    ((1, 64, 5, 64, 5, 2), False),     # outputs under 7x7
    ((1, 32, 56, 16, 3, 1), False),    # 16 output channels from few channels: direct
    ((1, 64, 28, 16, 3, 1), True),     # ... from 64 on 28x28 and larger: Winograd
    ((1, 16, 7, 32, 3, 1), False),     # 32 from few channels on a small image: direct
    ((1, 64, 7, 32, 3, 1), True),      # ... from 64: Winograd
    ((1, 16, 28, 32, 3, 1), True),     # ... on a larger image: Winograd
    ((1, 16, 14, 48, 3, 1), True),     # a whole panel of output channels
    ((1, 512, 7, 512, 3, 1), True),
])
def test_auto_takes_winograd_where_it_was_measured_to_pay(case, winograd):
    n, c, h, o, k, pad = case
    x = np.zeros((n, c, h, h), np.float32)
    wt = np.zeros((o, c, k, k), np.float32)
    prepared = _core.conv2d_prepare(x, wt, 1, pad, 1, 1, "auto")
    if isinstance(winograd, tuple):  # on those ISAs' paths only
        winograd = prepared.isa in winograd
    assert (prepared.kind == "winograd") == winograd, prepared.kind


# (n, c, h, o[, k]) -> points per transformed filter: 16 for F(2x2, 3x3), 36 for F(4x4, 3x3) and F(2x2, 5x5),
# 64 for F(6x6, 3x3) and F(4x4, 5x5), as measured best on one thread with prepared filters (see wino_tile in winograd_body.h);
# (split, full, avx2): on AVX-512 cores that split 512-bit FMAs in two (and on the generic path), on AVX-512
# cores that do not, and on the AVX2 path
@pytest.mark.parametrize("case,points", [
    ((1, 512, 7, 512), (16, 16, 16)),   # ResNet-50's last stage at batch 1: 4 tiles of 4x4, filters from memory
    ((2, 512, 7, 512), (36, 36, 36)),   # ... at batch 2
    ((1, 512, 14, 512), (36, 36, 36)),  # VGG-16's last stage: 36 MiB of filters, streamed
    ((1, 128, 12, 128), (36, 36, 64)),  # 9 tiles of 4x4 or 4 of 6x6: F(6x6, 3x3) on AVX2
    ((1, 64, 56, 64), (36, 36, 64)),    # ResNet-50's first stage: F(6x6, 3x3) on AVX2
    ((1, 128, 28, 128), (36, 36, 36)),  # 25 tiles of 6x6 against 49 of 4x4: F(4x4, 3x3)
    ((1, 256, 56, 256), (36, 36, 36)),  # F(6x6, 3x3)'s filters would pass 16 MiB: F(4x4, 3x3)
    ((1, 256, 7, 256), (36, 16, 36)),   # filters that stay in cache alone, not in a network on a full-width core
    ((8, 160, 7, 320), (36, 36, 36)),   # GoogLeNet's 5a at batch 8
    ((1, 512, 2, 512), (16, 16, 16)),   # one tile of either size: F(2x2) has the fewer points
    ((1, 192, 28, 32, 5), (64, 64, 64)),  # 5x5: F(4x4, 5x5), 2.25x fewer multiplies than F(2x2, 5x5)
    ((1, 64, 7, 64, 5), (64, 64, 64)),
    ((1, 300, 4, 250, 5), (36, 36, 36)),  # one tile of 4x4, 19 MB of filters: F(2x2, 5x5)
])
def test_tile_size_follows_the_cost_model(case, points):
    n, c, h, o, k = case + (3,) * (len(case) == 4)
    x = np.zeros((n, c, h, h), np.float32)
    w = np.zeros((o, c, k, k), np.float32)
    prepared = _core.conv2d_prepare(x, w, 1, k // 2, 1, 1, "winograd")
    assert prepared.kind == "winograd"
    full = prepared.isa == "avx512" and _core._full_width_avx512()
    points = points[2 if prepared.isa == "avx2" else 1 if full else 0]
    nr = {"avx512": 48, "avx2": 24, "generic": 8}[prepared.isa]  # output channels per GEMM panel
    assert prepared.nbytes == points * -(-o // nr) * nr * c * 4


@pytest.mark.parametrize(
    "kwargs", [dict(stride=2), dict(dilation=2), dict(groups=2)], ids=["stride", "dilation", "groups"]
)
def test_winograd_rejects_shapes_it_cannot_compute(kwargs):
    x = np.zeros((1, 4, 8, 8), np.float32)
    wt = np.zeros((4, 4 // kwargs.get("groups", 1), 3, 3), np.float32)
    with pytest.raises(ValueError, match="algorithm='winograd'"):
        cnnfast.conv2d(x, wt, padding=1, algorithm="winograd", **kwargs)


@pytest.mark.parametrize("kernel", [(7, 7), (5, 3), (1, 1)])
def test_winograd_rejects_other_kernel_sizes(kernel):
    x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"3x3 or 5x5 kernel.*got kernel %dx%d" % kernel):
        cnnfast.conv2d(x, np.zeros((4, 4) + kernel, np.float32), algorithm="winograd")


def test_winograd_rejects_unknown_algorithms():
    x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="algorithm"):
        cnnfast.conv2d(x, np.zeros((4, 4, 3, 3), np.float32), algorithm="fft")


@pytest.mark.parametrize("k", [3, 5])
def test_winograd_matches_torch(k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 64, 20, 20), dtype=np.float32)
    wt = rng.standard_normal((32, 64, k, k), dtype=np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    y = cnnfast.conv2d(x, wt, b, padding=k // 2, algorithm="winograd")
    t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), padding=k // 2).numpy()
    assert np.abs(y - t).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * 64 * k * k


# n, c, h, o, k, stride, padding (images h x h + 5): strided layers whose taps split over the stride phases into
# 3x3 ones (F(4x4, 3x3)) or, at stride 2, 2x2 ones (F(7x7, 2x2) or F(5x5, 2x2)) or 4x4 ones (F(5x5, 4x4))
PHASE_CASES = [
    (1, 3, 227, 96, 11, 4, 0),  # AlexNet's first layer
    (2, 3, 64, 20, 11, 4, 2),
    (1, 2, 61, 16, 12, 4, 0),  # 13x13 outputs: F(4x4) on full-width AVX-512 cores too (9x9 would take F(2x2))
    (1, 4, 40, 24, 6, 2, 1),
    (3, 3, 50, 30, 9, 3, 1),
    (3, 3, 287, 16, 11, 4, 0),  # one image's phase images at a time
    # 2x2 taps at stride 2 (phases read in place, no copy): F(7x7, 2x2) where it has enough tiles and makes at
    # most 0.9x F(5x5, 2x2)'s multiplies, else F(5x5, 2x2)
    (1, 128, 56, 128, 3, 2, 1),  # ResNet-50's 3x3/2 128 -> 128 (on 56x61): F(7x7)
    (3, 64, 42, 80, 3, 2, 1),  # F(7x7): several images, a last panel of 8 output channels on AVX2
    (2, 96, 44, 64, 3, 2, 0),  # F(7x7): no padding, 21x24 outputs, tiles past both edges
    (1, 64, 59, 72, 4, 2, 0),  # F(7x7): a 4x4 filter, 2x2 taps, none zero
    (4, 64, 30, 80, 3, 2, 1),  # F(5x5): tiles of several images, a last panel of 8 output channels on AVX2
    (2, 96, 59, 64, 3, 2, 0),  # F(5x5): no padding, 29x31 outputs: tiles past both edges
    (1, 64, 62, 72, 4, 2, 1),  # F(5x5): a 4x4 filter
    # 4x4 taps at stride 2 (phases read in place): F(5x5, 4x4)
    (1, 3, 224, 64, 7, 2, 3),  # ResNet's first layer (on 224x229)
    (2, 2, 60, 32, 7, 2, 3),  # two channels: eight phase channels; tiles of two images, past both edges
    (1, 5, 90, 40, 8, 2, 1),  # an 8x8 filter, no tap zero; a last panel of 16 output channels on AVX2
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", PHASE_CASES)
def test_strided_winograd_on_stride_phases(isa, threads_restored, threads, case):
    # 'auto' with prepared weights runs these by Winograd on the input's stride phases: within the Winograd
    # bound of the direct path's result, in the workspace bound, the same bits on any number of threads
    n, c, h, o, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, h + 5), dtype=np.float32)
    wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    prepared = _core.conv2d_prepare(x, wt, s, p, 1, 1, "auto")
    if -(-k // s) in (2, 4) and isa == "avx512":  # 2x2 and 4x4 taps not on AVX-512, where they were not measured
        assert prepared.kind != "winograd"
        return
    assert prepared.kind == "winograd"
    cnnfast.set_num_threads(1)
    one = _core.conv2d(x, wt, b, s, p, 1, 1, "relu", None, "auto", prepared)
    cnnfast.set_num_threads(threads)
    _core._workspace_reset_peak()
    y = _core.conv2d(x, wt, b, s, p, 1, 1, "relu", None, "auto", prepared)
    assert 0 < _core._workspace_peak() <= max(y.nbytes, 16 << 20)
    direct = cnnfast.conv2d(x, wt, b, stride=s, padding=p, activation="relu", algorithm="direct")
    assert y.shape == direct.shape
    np.testing.assert_array_equal(y, one)
    taps = c * (-(-k // s) * s) ** 2  # the phase convolution's channels x its taps
    assert np.abs(y - direct).max() <= BOUND * np.abs(x).max() * np.abs(wt).max() * taps


@pytest.mark.parametrize("kwargs", [dict(k=7, s=2), dict(k=7, s=2, c=1, o=64, h=229), dict(k=10, s=4),
                                    dict(dilation=2), dict(groups=3), dict(algorithm="direct")])
def test_strided_layers_that_stay_direct(kwargs):
    # taps that would grow by more than 1.25x (10 -> 12x12 at 4; 7 -> 8x8 at 2 with few output channels and
    # tiles, or one input channel), dilation, groups, a forced direct path: the exact products
    k, s, c, h = kwargs.get("k", 11), kwargs.get("s", 4), kwargs.get("c", 3), kwargs.get("h", 67)
    x = np.ones((1, c, h, h), np.float32)
    w = np.ones((kwargs.get("o", 18), c // kwargs.get("groups", 1), k, k), np.float32)
    prepared = _core.conv2d_prepare(x, w, s, 0, kwargs.get("dilation", 1), kwargs.get("groups", 1),
                                    kwargs.get("algorithm", "auto"))
    assert prepared.kind != "winograd"


@pytest.mark.parametrize("case", [
    (1, 512, 14, 512),  # ResNet-50's last 3x3/2: 2 x 2 tiles of 5x5 (100 outputs computed for 49)
    (1, 32, 56, 64),  # few input channels
    (1, 64, 56, 48),  # few output channels
    (1, 128, 12, 128),  # 6x6 outputs: 4 tiles
])
def test_stride2_3x3_layers_that_stay_direct(case):
    # F(5x5, 2x2) on the stride phases only with 64 channels in and out and over at least 32 tiles, making at
    # most 0.8x the direct path's multiplies
    n, c, h, o = case
    x = np.zeros((n, c, h, h), np.float32)
    prepared = _core.conv2d_prepare(x, np.zeros((o, c, 3, 3), np.float32), 2, 1, 1, 1, "auto")
    assert prepared.kind != "winograd"
