"""Small element-wise helpers for which NumPy is already as fast as a kernel call."""

from __future__ import annotations

import numpy as np


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0) element-wise (NaN stays NaN)."""
    x = np.asarray(x)
    return np.maximum(x, 0, out=out, dtype=x.dtype if x.dtype.kind == "f" else None)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"softmax(): x must be a floating-point array, got dtype {x.dtype}")
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)
