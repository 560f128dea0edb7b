"""Batching, augmentation and the digits: what each must preserve."""

import numpy as np
import pytest

from cnnfast import data
from cnnfast.data import augment


def images(n=4, c=3, h=9, w=8, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def test_dataloader_batches_cover_every_sample_once_and_shuffle_with_a_seed():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    loader = data.DataLoader(x, y, batch_size=4, shuffle=True, rng=0)
    assert len(loader) == 3
    epoch1 = list(loader)
    assert [len(b[0]) for b in epoch1] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in epoch1])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    for xb, yb in epoch1:
        np.testing.assert_array_equal(xb[:, 0], yb)  # pairs stay together
        assert xb.dtype == np.float32 and xb.flags.c_contiguous
    epoch2 = np.concatenate([b[1] for b in loader])
    assert list(epoch2) != list(seen)  # a new order each epoch
    again = data.DataLoader(x, y, batch_size=4, shuffle=True, rng=0)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in again]), seen)  # same seed, same batches
    assert [len(b[0]) for b in data.DataLoader(x, y, 4, drop_last=True)] == [4, 4]
    first = next(iter(data.DataLoader(x, y, 4)))[0]
    first[:] = -1
    assert x[0, 0] == 0  # batches are copies


def test_dataloader_applies_the_transform_and_checks_arguments():
    x, y = images(6), np.zeros(6, np.int64)
    loader = data.DataLoader(x, y, 3, transform=lambda xb, rng: xb * 0 + rng.random())
    for xb, _ in loader:
        assert np.all(xb == xb.flat[0])
    with pytest.raises(ValueError, match="as many samples"):
        data.DataLoader(x, y[:5])
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(x, y, 0)


def test_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), 20)
    x = np.arange(80)
    (xtr, ytr), (xte, yte) = data.split(x, y, 0.25, rng=0)
    assert len(xte) == 20 and len(xtr) == 60 and set(xtr).isdisjoint(xte)
    assert np.all(np.bincount(yte) == 5)
    (xtr2, _), _ = data.split(x, y, 0.25, rng=0)
    np.testing.assert_array_equal(xtr, xtr2)


def test_mirror_twice_is_the_identity():
    x = images()
    m = data.mirror(x)
    np.testing.assert_array_equal(m[..., 0], x[..., -1])
    np.testing.assert_array_equal(data.mirror(m), x)


def test_random_mirror_flips_some_images_whole():
    x = images(40)
    out = augment.random_mirror(x, rng=0)
    flipped = [np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 35
    np.testing.assert_array_equal(out, augment.random_mirror(x, rng=0))  # seeded


def test_random_crop_with_padding_keeps_size_and_shifts_content():
    x = images(20)
    out = augment.random_crop(x, padding=2, rng=0)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, augment.random_crop(x, padding=2, rng=0))
    # every crop is the image shifted by at most 2 pixels, zeros coming in
    for o, xi in zip(out, x):
        padded = np.pad(xi, ((0, 0), (2, 2), (2, 2)))
        assert any(np.array_equal(o, padded[:, r:r + 9, c:c + 8]) for r in range(5) for c in range(5))
    assert augment.random_crop(x, size=5, rng=1).shape == (20, 3, 5, 5)
    np.testing.assert_array_equal(augment.random_crop(x, padding=0, rng=0), x)
    with pytest.raises(ValueError, match="cannot cut"):
        augment.random_crop(x, size=12, padding=1)


def test_rotation_by_zero_is_the_identity_and_by_90_turns_counter_clockwise():
    x = images(3, h=7, w=7)
    np.testing.assert_array_equal(data.rotate(x, 0.0), x)
    np.testing.assert_allclose(data.rotate(x, 90.0), np.rot90(x, 1, axes=(2, 3)), atol=1e-6)
    np.testing.assert_allclose(data.rotate(x, [90.0, 180.0, -90.0])[1], x[1, :, ::-1, ::-1], atol=1e-6)
    np.testing.assert_array_equal(augment.random_rotation(x, 0.0, rng=0), x)
    out = augment.random_rotation(x, 15.0, rng=0)
    assert out.shape == x.shape and not np.array_equal(out, x)
    np.testing.assert_array_equal(out, augment.random_rotation(x, 15.0, rng=0))


def test_shear_zero_is_the_identity_and_moves_rows_sideways():
    x = images(2, h=5, w=9)
    np.testing.assert_array_equal(data.shear(x, 0.0), x)
    out = data.shear(x, 1.0)
    # with factor 1 the top row (2 above the centre) moves 2 right, the bottom row 2 left; the centre stays
    np.testing.assert_allclose(out[:, :, 0, 2:], x[:, :, 0, :-2], atol=1e-6)
    np.testing.assert_allclose(out[:, :, 4, :-2], x[:, :, 4, 2:], atol=1e-6)
    np.testing.assert_allclose(out[:, :, 2], x[:, :, 2], atol=1e-6)
    assert np.all(out[:, :, 0, :2] == 0)  # filled
    np.testing.assert_array_equal(augment.random_shear(x, 0.0, rng=0), x)


def test_color_shift_adds_a_constant_per_channel():
    x = images(5)
    out = augment.random_color_shift(x, 0.2, rng=0)
    diff = (out - x).astype(np.float64)
    per_channel = diff.reshape(5, 3, -1)
    np.testing.assert_allclose(per_channel, per_channel[..., :1] + np.zeros_like(per_channel), atol=1e-6)
    assert np.all(np.abs(per_channel) <= 0.2 + 1e-6) and np.unique(per_channel[..., 0].round(6)).size == 15
    np.testing.assert_allclose(data.color_shift(x, [1.0, 2.0, 3.0]) - x,
                               np.broadcast_to(np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1), x.shape),
                               atol=1e-6)


def test_augmentations_keep_shape_dtype_and_leave_the_input_alone():
    x = images(6)
    before = x.copy()
    pipeline = data.Compose([data.RandomMirror(), data.RandomCrop(padding=1), data.RandomRotation(10),
                             data.RandomShear(0.1), data.RandomColorShift(0.1)])
    out = pipeline(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(out, pipeline(x, np.random.default_rng(0)))
    assert "RandomCrop(size=None, padding=1" in repr(pipeline.transforms[1])
    with pytest.raises(ValueError, match="NCHW"):
        data.mirror(x[0])


def test_labels_ride_along_with_augmented_batches():
    x, y = images(8), np.arange(8)
    loader = data.DataLoader(x, y, 4, shuffle=True, rng=0, transform=data.RandomMirror())
    for xb, yb in loader:
        for xi, label in zip(xb, yb):
            assert np.array_equal(xi, x[label]) or np.array_equal(xi, x[label][..., ::-1])


def test_load_digits():
    pytest.importorskip("sklearn")
    x, y = data.load_digits()
    assert x.shape == (1797, 1, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 1 and set(y) == set(range(10))
    x8, _ = data.load_digits(size=8)
    assert x8.shape == (1797, 1, 8, 8)
    # the resize keeps each image's mean intensity (bilinear, edge-normalized weights)
    np.testing.assert_allclose(x.mean(axis=(2, 3)), x8.mean(axis=(2, 3)), atol=0.02)
