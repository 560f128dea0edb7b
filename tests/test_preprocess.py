"""Images to normalized NCHW batches."""

import numpy as np
import pytest

from cnnfast import preprocess


def smooth_image(h, w, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a, b, c = rng.random(3)
    img = np.stack([np.sin(x / (7 + 5 * a)), np.cos(y / (9 + 5 * b)), np.sin((x + y) / (11 + 5 * c))], axis=2)
    return ((img + 1) * 127.5).round().astype(np.uint8)


def test_prepare_one_image_imagenet_defaults():
    image = np.full((300, 400, 3), 128, np.uint8)
    x = preprocess.prepare(image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = (128 / 255 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
    np.testing.assert_allclose(x[0, :, 100, 100], expected, rtol=1e-5)


def test_prepare_lists_batches_gray_and_rgba():
    images = [smooth_image(240, 320), smooth_image(256, 256, seed=1)]
    assert preprocess.prepare(images).shape == (2, 3, 224, 224)
    batch = np.stack([smooth_image(64, 48, s) for s in range(3)])  # NHWC
    assert preprocess.prepare(batch, size=32, resize_to=40).shape == (3, 3, 32, 32)
    gray = smooth_image(50, 50)[:, :, 0]
    x = preprocess.prepare(gray, size=32, resize_to=None)
    assert x.shape == (1, 3, 32, 32)
    rgba = np.concatenate([smooth_image(40, 40), np.zeros((40, 40, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(preprocess.prepare(rgba, size=40, resize_to=None),
                                  preprocess.prepare(rgba[:, :, :3], size=40, resize_to=None))
    assert preprocess.prepare([], size=8).shape == (0, 3, 8, 8)
    assert preprocess.prepare(gray, size=20, resize_to=None, mean=(0.5,), std=(0.25,)).shape == (1, 1, 20, 20)


def test_resize_shorter_side_and_exact():
    image = preprocess.to_float(smooth_image(300, 400))
    assert preprocess.resize(image, 256).shape == (256, 341, 3)
    assert preprocess.resize(image[:, :200], 100).shape == (150, 100, 3)
    assert preprocess.resize(image, (10, 20)).shape == (10, 20, 3)


def test_numpy_resize_agrees_with_pillow():
    pytest.importorskip("PIL")
    image = preprocess.to_float(smooth_image(123, 157))
    for size in [(61, 80), (200, 250), (123, 90)]:
        a = preprocess.resize(image, size, backend="numpy")
        b = preprocess.resize(image, size, backend="pillow")
        assert a.shape == b.shape == size + (3,)
        assert np.abs(a - b).max() < 2e-3


def test_numpy_resize_keeps_constants_and_averages_when_halving():
    const = np.full((10, 14, 1), 0.25, np.float32)
    np.testing.assert_allclose(preprocess.resize(const, (7, 3), backend="numpy"), 0.25, rtol=1e-6)
    image = np.random.default_rng(0).random((8, 8, 1)).astype(np.float32)
    half = preprocess.resize(image, (4, 4), backend="numpy")
    # a triangle filter of radius 2 input pixels: weights 1/8, 3/8, 3/8, 1/8 at interior outputs
    w = np.array([1, 3, 3, 1]) / 8
    np.testing.assert_allclose(half[1, 1, 0], w @ image[1:5, 1:5, 0] @ w, rtol=1e-5)


def test_center_crop_and_errors():
    image = np.arange(5 * 7).reshape(5, 7, 1)
    np.testing.assert_array_equal(preprocess.center_crop(image, 3)[:, :, 0], image[1:4, 2:5, 0])
    with pytest.raises(ValueError, match="resize it first"):
        preprocess.center_crop(image, 6)
    with pytest.raises(ValueError, match="HW or HWC"):
        preprocess.prepare(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(ValueError, match="channels"):
        preprocess.prepare(np.zeros((8, 8, 2), np.uint8), size=8, resize_to=None)
    with pytest.raises(TypeError):
        preprocess.to_float(np.array([["a"]]))
