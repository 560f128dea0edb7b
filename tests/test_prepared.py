"""Prepared convolution weights (_core.conv2d_prepare, conv2d(prepared=)) on every ISA path, and the layers
that keep them in eval mode: the same results as unprepared calls, checked arguments, and the weights
released when they may change."""

import numpy as np
import pytest

import cnnfast
from cnnfast import _core, nn, optim

from conftest import rand

WINOGRAD_BOUND = 4e-6  # the documented bound (see test_winograd.py and the README)


def conv_args(k, stride=1, padding=None):
    p = k // 2 if padding is None else padding
    return (stride, stride), (p, p), (1, 1), 1


# n, c, h, o, k, stride: the kinds and the paths a prepared form may serve
CASES = [
    (1, 256, 14, 64, 1, 1),   # 1x1: panels
    (1, 64, 28, 96, 1, 1),    # 1x1 of few input channels, one K block: copied B panels outer with AVX2
    (2, 24, 9, 40, 5, 1),     # 5x5: panels
    (1, 3, 30, 16, 7, 2),     # strided: panels
    (1, 64, 14, 64, 3, 1),    # winograd (prepared filters make it pay on 16 tiles)
    (1, 48, 7, 128, 3, 1),    # winograd on a 7x7 image: only with prepared filters
    (1, 400, 5, 400, 3, 1),   # winograd F(2x2, 3x3): few tiles, filters past the cache
    (2, 300, 8, 70, 3, 1),    # winograd, channels past one K block
    (1, 64, 14, 96, 5, 1),    # winograd F(4x4, 5x5)
    (1, 16, 3, 8, 3, 1),      # too small for winograd: panels, or none (channels as vector lanes)
    (1, 512, 7, 96, 1, 1),    # 1x1 on 7x7: transposed (pixels by channels) where the tiles make it pay
    (3, 64, 14, 80, 3, 2),    # strided 3x3 to 7x7, a batch: the same
    (2, 40, 5, 130, 1, 1),    # output channels past two NR panels and a partial vector
    (1, 48, 17, 96, 3, 2),    # strided 3x3 to 9x9: transposed, panels of pixels across output rows
    (2, 32, 28, 64, 3, 2),    # strided 3x3 to 14x14 (ResNet-50's, fewer channels): 7-pixel half rows
    (2, 96, 14, 64, 1, 2),    # 1x1 stride 2 to 7x7: transposed, A' gathered from the input itself
]


@pytest.mark.parametrize("case", CASES)
def test_prepared_matches_unprepared(isa, case, rng):
    n, c, h, o, k, stride = case
    x, w, b = rand(rng, n, c, h, h), rand(rng, o, c, k, k), rand(rng, o)
    args = conv_args(k, stride)
    prepared = _core.conv2d_prepare(x, w, *args, "auto")
    assert prepared.isa == isa and prepared.kind in ("none", "panels", "transposed", "winograd")
    if (k, h) == (1, 7) or (stride, c) == (2, 64) or (k, stride) == (1, 2):  # 8-pixel rows fill 49 pixels better than 16-lane vectors
        assert prepared.kind == ("transposed" if isa == "avx512" else "panels")
    if (stride, h) in ((2, 17), (2, 28)) and isa != "generic":  # pixel rows leave the grid's padding columns out
        assert prepared.kind == "transposed"
    # Winograd's transformed filters: 6x6 points per 3x3 filter (F(4x4, 3x3)), or 4x4 (F(2x2, 3x3), for few
    # tiles: which one, test_winograd's test_tile_size_follows_the_cost_model); 8x8 or 6x6 per 5x5 filter
    # (F(4x4, 5x5) or F(2x2, 5x5))
    wino_growth = 36 / 25 if k == 5 else 16 / 9
    growth = {"winograd": wino_growth, "none": 0}.get(prepared.kind, 1)
    assert prepared.nbytes >= w.nbytes * growth
    y = _core.conv2d(x, w, b, *args, "relu", None, "auto", prepared)
    if prepared.kind in ("panels", "none"):  # the same kernel on the same weights: the same bits
        np.testing.assert_array_equal(y, _core.conv2d(x, w, b, *args, "relu", None, "auto"))
    elif prepared.kind == "transposed":  # the same products in the same order, another tile shape
        exact = np.maximum(_core.reference.conv2d(x, w, b, *args), 0)
        np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-5 * np.sqrt(c * k * k))
        np.testing.assert_allclose(y, _core.conv2d(x, w, b, *args, "relu", None, "auto"), rtol=1e-6, atol=1e-6)
    else:
        exact = np.maximum(_core.reference.conv2d(x, w, b, *args), 0)
        scale = np.abs(x).max() * np.abs(w).max() * c * k * k
        assert np.abs(y - exact).max() <= WINOGRAD_BOUND * scale
        # forced Winograd without preparation: the same transforms
        np.testing.assert_allclose(y, _core.conv2d(x, w, b, *args, "relu", None, "winograd"), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("case", [(1, 64, 14, 80, 3, 2), (1, 40, 5, 130, 1, 1), (1, 512, 7, 512, 1, 1)])
def test_transposed_path_splits_channels_by_vectors(isa, case, rng, threads_restored):
    # one image, so the threads split the output channels: in runs of whole vectors, a run's ends inside a
    # panel of several vectors (80 channels: 32 and 48 on two threads; 130: 64 and 66, the last vector partial)
    n, c, h, o, k, stride = case
    x, w, b = rand(rng, n, c, h, h), rand(rng, o, c, k, k), rand(rng, o)
    args = conv_args(k, stride)
    prepared = _core.conv2d_prepare(x, w, *args, "auto")
    outs = []
    for threads in (1, 2, 3):
        cnnfast.set_num_threads(threads)
        outs.append(_core.conv2d(x, w, b, *args, "relu", None, "auto", prepared))
    exact = np.maximum(_core.reference.conv2d(x, w, b, *args), 0)
    np.testing.assert_allclose(outs[0], exact, rtol=1e-5, atol=1e-5 * np.sqrt(c * k * k))
    for y in outs[1:]:  # the same products in the same order whichever thread computes them
        np.testing.assert_array_equal(y, outs[0])


@pytest.mark.parametrize("stride", [1, 2])
def test_panels_of_unequal_k_blocks_per_group(isa, rng, stride):
    # Two groups of 45 channels x 3x3 taps: K = 405 in four K blocks (102, 102, 102, 99), each packed as a
    # contiguous run of its micro-panels, and 36 output channels per group (a partial micro-panel where MR is 8).
    x, w, b = rand(rng, 1, 90, 12, 12), rand(rng, 72, 45, 3, 3), rand(rng, 72)
    args = (stride, stride), (1, 1), (1, 1), 2
    prepared = _core.conv2d_prepare(x, w, *args, "direct")
    assert prepared.kind == "panels"
    y = _core.conv2d(x, w, b, *args, None, None, "direct", prepared)
    np.testing.assert_array_equal(y, _core.conv2d(x, w, b, *args, None, None, "direct"))
    exact = _core.reference.conv2d(x, w, b, stride=stride, padding=1, groups=2)
    np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-5 * np.sqrt(45 * 9))


def test_prepared_serves_other_shapes_of_the_same_path(isa, rng):
    w, b = rand(rng, 64, 32, 3, 3), rand(rng, 64)
    prepared = _core.conv2d_prepare(rand(rng, 1, 32, 14, 14), w, 1, 1, 1, 1, "auto")
    for shape in [(2, 32, 14, 14), (1, 32, 20, 9), (1, 32, 2, 2)]:  # the last takes the direct path: ignored
        x = rand(rng, *shape)
        y = _core.conv2d(x, w, b, 1, 1, 1, 1, None, None, "auto", prepared)
        exact = _core.reference.conv2d(x, w, b, padding=1)
        assert np.abs(y - exact).max() <= WINOGRAD_BOUND * np.abs(x).max() * np.abs(w).max() * 32 * 9


def test_prepared_for_another_isa_is_ignored(rng):
    isas = _core._supported_isas()
    if len(isas) < 2:
        pytest.skip("one ISA only")
    before = _core._current_isa()
    x, w = rand(rng, 1, 40, 12, 12), rand(rng, 24, 40, 1, 1)
    try:
        _core._set_isa(isas[-1])
        prepared = _core.conv2d_prepare(x, w)
        _core._set_isa(isas[0])
        np.testing.assert_array_equal(_core.conv2d(x, w, prepared=prepared), _core.conv2d(x, w))
    finally:
        _core._set_isa(before)


def test_prepared_arguments_are_checked(rng):
    x, w = rand(rng, 1, 8, 6, 6), rand(rng, 4, 8, 3, 3)
    prepared = _core.conv2d_prepare(x, w)
    with pytest.raises(ValueError, match=r"prepared was made for weights \(4, 8, 3, 3\).*weight shape \(5, 8, 3, 3\)"):
        _core.conv2d(x, rand(rng, 5, 8, 3, 3), prepared=prepared)
    with pytest.raises(TypeError, match="prepared must be None or the result of conv2d_prepare"):
        _core.conv2d(x, w, prepared=np.zeros(3))
    with pytest.raises(ValueError, match="weight expects 8 input channels"):
        _core.conv2d_prepare(rand(rng, 1, 7, 6, 6), w)
    assert "PreparedConv2d(kind=" in repr(prepared)


def test_eval_layer_keeps_prepared_weights_and_releases_them(rng):
    conv = nn.Conv2d(32, 48, 3, padding=1, rng=0)
    x = rand(rng, 1, 32, 14, 14)
    y_eval = conv(x)  # eval mode: prepared, the weight read-only meanwhile
    assert not conv.weight.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        conv.weight[0, 0, 0, 0] = 1.0
    exact = _core.reference.conv2d(x, conv.weight, conv.bias, padding=1)
    assert np.abs(y_eval - exact).max() <= WINOGRAD_BOUND * np.abs(x).max() * np.abs(conv.weight).max() * 32 * 9
    conv.train()
    assert conv.weight.flags.writeable
    conv.weight[...] *= 2  # a change the next eval call must see
    conv.eval()
    np.testing.assert_allclose(conv(x) - conv.bias[:, None, None], 2 * (y_eval - conv.bias[:, None, None]),
                               rtol=1e-4, atol=1e-4)


def test_optimizer_on_prepared_weights_says_what_to_do(rng):
    conv = nn.Conv2d(4, 4, 3, padding=1, rng=0)
    conv(rand(rng, 1, 4, 8, 8))
    conv.weight.grad = np.ones_like(conv.weight)
    with pytest.raises(ValueError, match=r"read-only.*call model.train\(\)"):
        optim.SGD(conv.parameters(), lr=0.1).step()


def test_eval_layer_reports_bad_input_as_conv2d(rng):
    conv = nn.Conv2d(3, 8, 3, rng=0)
    with pytest.raises(ValueError, match=r"^conv2d\(\): weight expects 3 input channels .* x has 5"):
        conv(rand(rng, 1, 5, 9, 9))
    with pytest.raises(TypeError, match=r"^conv2d\(\)"):
        conv(np.zeros((1, 3, 9, 9), np.int32))


def test_few_output_channels_take_channels_as_lanes(isa, rng):
    # LeNet-5's 6 -> 16 5x5 at batch 64, prepared: both transposed layouts fill their lanes, and the one with
    # the channels as lanes reads the (phase-copied) input in place, where the pixel-major one also packs A'
    # and keeps C' (16 output channels padded to 48 per pixel row: 1.3 MB here), at 2.5x the time. The
    # workspace tells them apart: the phase copy alone is 64 x 6 x 14 x 14 floats.
    if isa == "generic":
        pytest.skip("4-lane vectors: 16 channels are four of them, past the channels-as-lanes tile")
    x, w, b = rand(rng, 64, 6, 14, 14), rand(rng, 16, 6, 5, 5), rand(rng, 16)
    prepared = _core.conv2d_prepare(x, w, 1, 0, 1, 1, "auto")
    assert prepared.kind == "transposed"
    before = _core._workspace_in_use()
    _core._workspace_reset_peak()
    y = cnnfast.conv2d(x, w, b, prepared=prepared)
    assert _core._workspace_peak() - before < x.nbytes + (100 << 10)
    np.testing.assert_allclose(y, cnnfast.conv2d(x, w, b), rtol=1e-5, atol=1e-5)
