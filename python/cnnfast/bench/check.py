"""Does a peer's output agree with cnnfast's? Tolerances scale with the size of the result."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .suite import Case

# Largest error allowed, relative to the largest magnitude in cnnfast's output. Convolutions and the
# fully connected layer sum thousands of products in float32 in different orders (and may use a fast
# algorithm), so they get a loose bound; pooling and the add are exact up to rounding.
RELATIVE_TOLERANCE = {"conv2d": 2e-3, "linear": 2e-3, "global_avg_pool2d": 1e-5, "max_pool2d": 0.0, "add_relu": 1e-6,
                      "network": 2e-3}


def agreement(case: Case, expected, actual) -> Tuple[bool, float]:
    """(agrees, error): NMS must keep the same indices in the same order (error = count of differing
    positions); the other ops compare max |actual - expected| / max |expected|."""
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if case.op == "nms":
        if expected.shape != actual.shape:
            return False, float(abs(expected.size - actual.size))
        diff = int(np.count_nonzero(expected != actual.astype(expected.dtype)))
        return diff == 0, float(diff)
    if expected.shape != actual.shape:
        if expected.size != actual.size:
            return False, float("inf")
        actual = actual.reshape(expected.shape)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    err = float(np.max(np.abs(actual.astype(np.float64) - expected))) if expected.size else 0.0
    if not np.isfinite(err):
        return False, float("inf")
    rel = err / scale if scale > 0 else err
    return rel <= RELATIVE_TOLERANCE.get(case.op, 1e-3) + 1e-7, rel
