"""Edge filters as convolutions: the vertical and horizontal edge detectors, Sobel and Scharr.

Each filter is applied by ``cnnfast.conv2d``, which computes a cross-correlation (as every CNN library
does): the vertical filter responds positively where the image is brighter on the left than on the right,
the horizontal one where it is brighter above than below.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core

VERTICAL = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float32)
HORIZONTAL = VERTICAL.T.copy()
SOBEL_VERTICAL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
SOBEL_HORIZONTAL = SOBEL_VERTICAL.T.copy()
SCHARR_VERTICAL = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float32)
SCHARR_HORIZONTAL = SCHARR_VERTICAL.T.copy()

FILTERS = {
    "simple": (VERTICAL, HORIZONTAL),
    "sobel": (SOBEL_VERTICAL, SOBEL_HORIZONTAL),
    "scharr": (SCHARR_VERTICAL, SCHARR_HORIZONTAL),
}

# ITU-R BT.709 luma, as scikit-image's rgb2gray.
LUMA = np.array([0.2125, 0.7154, 0.0721], np.float32)


class Edges(NamedTuple):
    vertical: np.ndarray  # (H, W) response of the vertical-edge filter
    horizontal: np.ndarray  # (H, W) response of the horizontal-edge filter
    magnitude: np.ndarray  # sqrt(vertical^2 + horizontal^2)


def edge_filters(kind: str = "sobel") -> np.ndarray:
    """The (vertical, horizontal) pair of ``kind`` ('simple', 'sobel' or 'scharr') as conv2d weights (2, 1, 3, 3)."""
    if kind not in FILTERS:
        raise ValueError(f"edge_filters(): kind must be one of {sorted(FILTERS)}, got {kind!r}")
    return np.stack(FILTERS[kind])[:, None]


def to_gray(image) -> np.ndarray:
    """An HW or HWC (gray, RGB or RGBA) image as float32 HW: integers scaled to [0, 1] by their type's
    maximum, RGB weighted by BT.709 luma."""
    image = np.asarray(image)
    if image.dtype.kind in "ui":
        image = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    elif image.dtype.kind in "fb":
        image = image.astype(np.float32)
    else:
        raise TypeError(f"to_gray(): an image must be an integer or floating-point array, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, :3] @ LUMA
    elif image.ndim != 2:
        raise ValueError(f"to_gray(): expected an HW or HWC image with 1, 3 or 4 channels, got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.float32)


def detect_edges(image, kind: str = "sobel", padding: str = "reflect") -> Edges:
    """Vertical and horizontal edge maps of an image, and the gradient magnitude.

    ``image``: HW or HWC (gray, RGB or RGBA), uint8 or float; colour is converted to gray first.
    ``kind``: 'simple' (the plain [1, 0, -1] filters), 'sobel' or 'scharr'. ``padding``: 'reflect' (mirror
    the border, maps the size of the image), 'zero', or 'valid' (no padding, maps 2 pixels smaller).
    Both filters run in one conv2d call.
    """
    weight = edge_filters(kind)
    gray = to_gray(image)
    if padding == "reflect":
        x, pad = np.pad(gray, 1, mode="reflect"), 0
    elif padding == "zero":
        x, pad = gray, 1
    elif padding == "valid":
        x, pad = gray, 0
    else:
        raise ValueError(f"detect_edges(): padding must be 'reflect', 'zero' or 'valid', got {padding!r}")
    maps = _core.conv2d(x[None, None], weight, padding=pad)[0]
    return Edges(maps[0], maps[1], np.hypot(maps[0], maps[1]))
