"""Plain NumPy implementations of the suite's ops: the baseline a NumPy user would write without cnnfast.

Convolution is im2col followed by one matmul per group; pooling takes the max over a strided window
view; NMS is the greedy loop with vectorized IoU. Outputs are float32, as cnnfast's are.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """View (N, C, OH, OW, kernel, kernel) of every ``stride``-spaced window of x (N, C, H, W)."""
    return sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]


def conv2d(x: np.ndarray, weight: np.ndarray, bias=None, stride: int = 1, padding: int = 0,
           groups: int = 1) -> np.ndarray:
    """Convolution of x (N, C, H, W) with weight (O, C/groups, K, K) by im2col + matmul."""
    n, c = x.shape[:2]
    o, cg, k, _ = weight.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = _windows(x, k, stride)
    oh, ow = win.shape[2:4]
    og = o // groups
    y = np.empty((n, o, oh * ow), dtype=np.float32)
    for g in range(groups):
        # cols: (N, C/groups * K * K, OH * OW), the copy that im2col makes.
        cols = win[:, g * cg:(g + 1) * cg].transpose(0, 1, 4, 5, 2, 3).reshape(n, cg * k * k, oh * ow)
        np.matmul(weight[g * og:(g + 1) * og].reshape(og, cg * k * k), cols, out=y[:, g * og:(g + 1) * og])
    if bias is not None:
        y += bias[None, :, None]
    return y.reshape(n, o, oh, ow)


def max_pool2d(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Max pooling of x (N, C, H, W); padding is -inf, so it is never selected."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    return _windows(x, kernel, stride).max(axis=(4, 5))


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean over each channel: (N, C, H, W) -> (N, C, 1, 1)."""
    return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)


def add_relu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """relu(a + b) into a new array, in two passes."""
    y = np.add(a, b)
    return np.maximum(y, 0, out=y)


def linear(x: np.ndarray, weight: np.ndarray, bias=None) -> np.ndarray:
    """x @ weight.T + bias."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS with torchvision's semantics: by descending score (ties by index), drop IoU > threshold."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
