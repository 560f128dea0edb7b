"""The handwritten digits of scikit-learn (1,797 images of 8x8, 16 gray levels, classes 0-9), the sample data
set: small enough to train LeNet-5 on in seconds."""

from __future__ import annotations

import numpy as np

from ..preprocess import _filter_matrix


def load_digits(size: int = 32):
    """``(x, y)``: the digits as float32 (N, 1, size, size) in [0, 1], resized from 8x8 bilinearly (pixel
    centres aligned, as Pillow's BILINEAR), and int64 labels (N,). ``size=8`` keeps the original pixels.

    Needs scikit-learn, which ships the data (``pip install scikit-learn``, or ``cnnfast[extras]``).
    """
    try:
        from sklearn.datasets import load_digits as _sklearn_digits
    except ImportError:
        raise ImportError("load_digits() needs scikit-learn, which ships the digits: pip install scikit-learn "
                          "(or pip install cnnfast[extras])") from None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"load_digits(): size must be a positive int, got {size!r}")
    digits = _sklearn_digits()
    images = digits.images.astype(np.float32) / np.float32(16.0)  # (N, 8, 8)
    if size != 8:
        m = _filter_matrix(8, size)  # (size, 8)
        images = np.einsum("ij,njk,lk->nil", m, images, m)
    x = np.ascontiguousarray(images[:, None], dtype=np.float32)
    return x, digits.target.astype(np.int64)
