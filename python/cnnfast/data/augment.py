"""Augmentations of NCHW image batches, each image drawn its own random parameters.

The random ones take ``rng`` (a seed or a ``numpy.random.Generator``): the same seed, the same batch. Each
returns a new float32 array of the input's shape (crops with ``size`` excepted); the input is not modified.
The deterministic forms (:func:`mirror`, :func:`rotate`, :func:`shear`, :func:`color_shift`) take the
parameters themselves. Geometric warps sample bilinearly about the image centre and fill what comes from
outside the image with ``fill``.

The classes (:class:`RandomMirror`, :class:`RandomCrop`, ...) hold the options and are called as
``transform(x, rng)``, the form :class:`cnnfast.data.DataLoader` takes; :class:`Compose` chains them.
"""

from __future__ import annotations

import math

import numpy as np


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _batch(x, fn: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{fn}(): expected an NCHW batch (4 dimensions), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}(): expected floating-point images, got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def _per_image(value, n: int, fn: str, name: str) -> np.ndarray:
    v = np.asarray(value, np.float64)
    if v.ndim == 0:
        return np.full(n, float(v))
    if v.shape != (n,):
        raise ValueError(f"{fn}(): {name} must be a number or one per image ({n},), got shape {v.shape}")
    return v


# ---- deterministic forms ------------------------------------------------------------------------


def mirror(x) -> np.ndarray:
    """Every image flipped left to right."""
    return np.ascontiguousarray(_batch(x, "mirror")[..., ::-1])


def affine(x, matrices, fill: float = 0.0) -> np.ndarray:
    """Warp each image by a 2x2 matrix about its centre: output pixel (r, c) takes the input at
    centre + A^-1 ((r, c) - centre) (bilinear). ``matrices``: (2, 2) for all images or (N, 2, 2), acting on
    (row, column) coordinates."""
    x = _batch(x, "affine")
    n, c, h, w = x.shape
    a = np.asarray(matrices, np.float64)
    a = np.broadcast_to(a, (n, 2, 2)) if a.shape == (2, 2) else a
    if a.shape != (n, 2, 2):
        raise ValueError(f"affine(): matrices must be (2, 2) or ({n}, 2, 2), got {np.shape(matrices)}")
    inv = np.linalg.inv(a)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    src_r = inv[:, 0, 0, None, None] * rows + inv[:, 0, 1, None, None] * cols + cy  # (N, H, W)
    src_c = inv[:, 1, 0, None, None] * rows + inv[:, 1, 1, None, None] * cols + cx
    # Snap coordinates within 1e-9 of a pixel centre so that exact maps (identity, flips) copy exactly.
    src_r = np.where(np.abs(src_r - np.round(src_r)) < 1e-9, np.round(src_r), src_r)
    src_c = np.where(np.abs(src_c - np.round(src_c)) < 1e-9, np.round(src_c), src_c)
    r0, c0 = np.floor(src_r).astype(np.int64), np.floor(src_c).astype(np.int64)
    fr, fc = (src_r - r0).astype(np.float32), (src_c - c0).astype(np.float32)
    out = np.zeros((n, h, w, c), np.float32)
    images = x.transpose(0, 2, 3, 1)  # NHWC, so that one gather fetches all channels of a pixel
    batch = np.arange(n)[:, None, None]
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w) & (weight > 0)
        values = images[batch, np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)]  # (N, H, W, C)
        values = np.where(inside[..., None], values, np.float32(fill))
        out += np.where((weight > 0)[..., None], weight[..., None] * values, 0)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def rotate(x, degrees, fill: float = 0.0) -> np.ndarray:
    """Each image rotated counter-clockwise by ``degrees`` (a number, or one per image) about its centre."""
    x = _batch(x, "rotate")
    t = np.deg2rad(_per_image(degrees, x.shape[0], "rotate", "degrees"))
    cos, sin = np.cos(t), np.sin(t)
    # (row, col) coordinates: row grows downwards, so a counter-clockwise turn of the picture is this matrix.
    m = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    return affine(x, m, fill)


def shear(x, factor, fill: float = 0.0) -> np.ndarray:
    """Each image sheared horizontally: the row at height r above the centre moves right by ``factor * r``
    (a number, or one per image)."""
    x = _batch(x, "shear")
    s = _per_image(factor, x.shape[0], "shear", "factor")
    m = np.zeros((x.shape[0], 2, 2))
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    m[:, 1, 0] = -s
    return affine(x, m, fill)


def color_shift(x, shifts) -> np.ndarray:
    """Add a constant to each channel: ``shifts`` (C,) for all images or (N, C), one row per image."""
    x = _batch(x, "color_shift")
    s = np.asarray(shifts, np.float32)
    n, c = x.shape[:2]
    if s.shape not in ((c,), (n, c)):
        raise ValueError(f"color_shift(): shifts must be ({c},) or ({n}, {c}), got shape {s.shape}")
    return x + (s.reshape(1, c, 1, 1) if s.ndim == 1 else s.reshape(n, c, 1, 1))


# ---- random forms -------------------------------------------------------------------------------


def random_mirror(x, p: float = 0.5, rng=None) -> np.ndarray:
    """Flip each image left to right with probability ``p``."""
    x = _batch(x, "random_mirror")
    flip = _rng(rng).random(x.shape[0]) < p
    out = x.copy()
    out[flip] = x[flip][..., ::-1]
    return out


def random_crop(x, size=None, padding: int = 0, fill: float = 0.0, rng=None) -> np.ndarray:
    """Pad each image by ``padding`` pixels (with ``fill``) and cut a ``size`` window (an int, a pair, or
    None for the input's size) at a random place, as the CIFAR augmentation of He et al."""
    x = _batch(x, "random_crop")
    n, c, h, w = x.shape
    th, tw = (h, w) if size is None else ((size, size) if np.ndim(size) == 0 else tuple(size))
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"random_crop(): padding must be an int >= 0, got {padding!r}")
    ph, pw = h + 2 * padding, w + 2 * padding
    if th > ph or tw > pw or th < 1 or tw < 1:
        raise ValueError(f"random_crop(): cannot cut {th}x{tw} from {h}x{w} images padded by {padding}")
    padded = np.full((n, c, ph, pw), np.float32(fill))
    padded[:, :, padding:padding + h, padding:padding + w] = x
    rng = _rng(rng)
    top, left = rng.integers(0, ph - th + 1, n), rng.integers(0, pw - tw + 1, n)
    rows = top[:, None] + np.arange(th)
    cols = left[:, None] + np.arange(tw)
    return np.ascontiguousarray(padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                                       rows[:, None, :, None], cols[:, None, None, :]])


def random_rotation(x, max_degrees: float, fill: float = 0.0, rng=None) -> np.ndarray:
    """Rotate each image by an angle drawn uniformly in [-max_degrees, max_degrees]."""
    x = _batch(x, "random_rotation")
    return rotate(x, _rng(rng).uniform(-max_degrees, max_degrees, x.shape[0]), fill)


def random_shear(x, max_factor: float, fill: float = 0.0, rng=None) -> np.ndarray:
    """Shear each image by a factor drawn uniformly in [-max_factor, max_factor]."""
    x = _batch(x, "random_shear")
    return shear(x, _rng(rng).uniform(-max_factor, max_factor, x.shape[0]), fill)


def random_color_shift(x, max_shift: float, rng=None) -> np.ndarray:
    """Add to each channel of each image an offset drawn uniformly in [-max_shift, max_shift]."""
    x = _batch(x, "random_color_shift")
    return color_shift(x, _rng(rng).uniform(-max_shift, max_shift, x.shape[:2]))


# ---- transforms for DataLoader ------------------------------------------------------------------


class _Transform:
    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class RandomMirror(_Transform):
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x, rng=None):
        return random_mirror(x, self.p, rng)


class RandomCrop(_Transform):
    def __init__(self, size=None, padding: int = 0, fill: float = 0.0):
        self.size, self.padding, self.fill = size, padding, fill

    def __call__(self, x, rng=None):
        return random_crop(x, self.size, self.padding, self.fill, rng)


class RandomRotation(_Transform):
    def __init__(self, max_degrees: float, fill: float = 0.0):
        self.max_degrees, self.fill = max_degrees, fill

    def __call__(self, x, rng=None):
        return random_rotation(x, self.max_degrees, self.fill, rng)


class RandomShear(_Transform):
    def __init__(self, max_factor: float, fill: float = 0.0):
        self.max_factor, self.fill = max_factor, fill

    def __call__(self, x, rng=None):
        return random_shear(x, self.max_factor, self.fill, rng)


class RandomColorShift(_Transform):
    def __init__(self, max_shift: float):
        self.max_shift = max_shift

    def __call__(self, x, rng=None):
        return random_color_shift(x, self.max_shift, rng)


class Compose(_Transform):
    """Apply transforms one after the other, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, rng=None):
        rng = _rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x
