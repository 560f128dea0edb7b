"""Plain NumPy float64 versions of every cnnfast kernel: the second, independent specification the tests
compare the C++ kernels (fast and reference) against. Written from PyTorch's and torchvision's documented
semantics, not from the C++ code, and kept simple rather than fast.
"""

from __future__ import annotations

import math

import numpy as np


def pair(v):
    if isinstance(v, (tuple, list)):
        assert len(v) == 2
        return int(v[0]), int(v[1])
    return int(v), int(v)


# --- convolution ---------------------------------------------------------------------------------


def conv2d_padding(padding, kernel, dilation):
    """(top, bottom, left, right) padding for conv2d's `padding` argument, as PyTorch computes it."""
    kh, kw = kernel
    dh, dw = dilation
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        # PyTorch: total = d * (k - 1); the smaller half goes first, the extra element at the end.
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = pair(padding)
    return ph, ph, pw, pw


def conv2d_out_size(n, k, s, p_total, d):
    return (n + p_total - d * (k - 1) - 1) // s + 1


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """Cross-correlation of NCHW x with OIHW weight, accumulating in float64. Returns float64."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    g = groups
    assert c == cg * g and o % g == 0
    og = o // g
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    pt, pb, pl, pr = conv2d_padding(padding, (kh, kw), (dh, dw))
    oh = conv2d_out_size(h, kh, sh, pt + pb, dh)
    ow = conv2d_out_size(wd, kw, sw, pl + pr, dw)
    assert oh > 0 and ow > 0
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    xg = xp.reshape(n, g, cg, h + pt + pb, wd + pl + pr)
    wg = w.reshape(g, og, cg, kh, kw)
    y = np.zeros((n, g, og, oh, ow), dtype=np.float64)
    for ki in range(kh):
        for kj in range(kw):
            r0, c0 = ki * dh, kj * dw
            patch = xg[:, :, :, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw]
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, ki, kj])
    y = y.reshape(n, o, oh, ow)
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    if activation == "relu":
        y = np.maximum(y, 0)
    return y


def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The same convolution as six explicit loops (for tiny worked examples)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    pt, pb, pl, pr = conv2d_padding(padding, (kh, kw), (dh, dw))
    oh = conv2d_out_size(h, kh, sh, pt + pb, dh)
    ow = conv2d_out_size(wd, kw, sw, pl + pr, dw)
    y = np.zeros((n, o, oh, ow))
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0 if bias is None else float(bias[oc])
                    for ci in range(cg):
                        for ki in range(kh):
                            ih = i * sh - pt + ki * dh
                            if not 0 <= ih < h:
                                continue
                            for kj in range(kw):
                                iw = j * sw - pl + kj * dw
                                if 0 <= iw < wd:
                                    acc += x[b, g * cg + ci, ih, iw] * w[oc, ci, ki, kj]
                    y[b, oc, i, j] = acc
    return y


def conv2d_tolerance(x, weight, bias=None, groups=1, rel=1e-5):
    """Absolute tolerance for a float32 convolution: rel * sqrt(K) * max|x| * max|w| (+ max|bias|),
    K the number of products summed per output."""
    _, cg, kh, kw = np.shape(weight)
    k = cg * kh * kw
    mx = float(np.max(np.abs(x))) if np.size(x) else 0.0
    mw = float(np.max(np.abs(weight))) if np.size(weight) else 0.0
    mb = float(np.max(np.abs(bias))) if bias is not None and np.size(bias) else 0.0
    return rel * (math.sqrt(k) * mx * mw + mb) + 1e-30


def winograd_applies(weight_shape, stride=1, dilation=1, groups=1):
    """Whether conv2d(algorithm='winograd') accepts the layer: 3x3, stride 1, dilation 1, groups 1."""
    return tuple(weight_shape[2:]) == (3, 3) and pair(stride) == (1, 1) and pair(dilation) == (1, 1) and groups == 1


def auto_uses_winograd(x_shape, weight_shape, stride=1, dilation=1, groups=1, padding=0):
    """Whether algorithm='auto' may pick Winograd (documented: 3x3 stride-1 layers with at least 32 input and
    output channels)."""
    return winograd_applies(weight_shape, stride, dilation, groups) and x_shape[1] >= 32 and weight_shape[0] >= 32


def winograd_tolerance(x, weight, bias=None, rel=4e-6):
    """Absolute tolerance for Winograd F(4x4, 3x3): the documented error, 'a few times 1e-6' of
    max|x| * max|w| * C * 9 (+ the bias, added in float32)."""
    c = np.shape(weight)[1]
    mx = float(np.max(np.abs(x))) if np.size(x) else 0.0
    mw = float(np.max(np.abs(weight))) if np.size(weight) else 0.0
    mb = float(np.max(np.abs(bias))) if bias is not None and np.size(bias) else 0.0
    return rel * mx * mw * c * 9 + 1e-6 * mb + 1e-30


# --- pooling -------------------------------------------------------------------------------------


def pool_out_size(n, k, s, p, ceil_mode):
    span = n + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    # PyTorch: with ceil_mode the last window must start inside the input or its left padding.
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool(x, kernel_size, stride, padding, ceil_mode, kind, count_include_pad=True):
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    ph, pw = pair(padding)
    oh = pool_out_size(h, kh, sh, ph, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, ceil_mode)
    y = np.empty((n, c, oh, ow), dtype=np.float64)
    for i in range(oh):
        h0 = i * sh - ph
        h1 = min(h0 + kh, h + ph)
        hs, he = max(h0, 0), min(h0 + kh, h)
        for j in range(ow):
            w0 = j * sw - pw
            w1 = min(w0 + kw, w + pw)
            ws, we = max(w0, 0), min(w0 + kw, w)
            win = x[:, :, hs:he, ws:we]
            if kind == "max":
                # np.max propagates NaN, as PyTorch's max pooling does
                y[:, :, i, j] = np.max(win, axis=(2, 3))
            else:
                div = (h1 - h0) * (w1 - w0) if count_include_pad else (he - hs) * (we - ws)
                y[:, :, i, j] = np.sum(win, axis=(2, 3)) / div
    return y


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return _pool(x, kernel_size, stride, padding, ceil_mode, "max")


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return _pool(x, kernel_size, stride, padding, ceil_mode, "avg", count_include_pad)


def global_avg_pool2d(x):
    return np.asarray(x, dtype=np.float64).mean(axis=(2, 3), keepdims=True)


# --- element-wise and dense ----------------------------------------------------------------------


def add(a, b, relu=False):
    y = np.asarray(a, dtype=np.float64) + np.asarray(b, dtype=np.float64)
    if relu:
        y = np.where(y < 0, 0.0, y)  # keeps NaN
    return y


def linear(x, weight, bias=None, activation=None):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    y = x @ w.T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    if activation == "relu":
        y = np.maximum(y, 0)
    return y


# --- boxes ---------------------------------------------------------------------------------------


def box_iou(a, b, dtype=np.float64):
    """Pairwise IoU of (x1, y1, x2, y2) boxes; 0 where the union is empty. With dtype=np.float32 every step is
    rounded to float32 in the same order as a plain float32 implementation, so boxes on a coarse grid give
    bit-identical values."""
    a = np.asarray(a, dtype=dtype).reshape(-1, 4)
    b = np.asarray(b, dtype=dtype).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
    return iou.astype(dtype)


def nms_order(scores, score_threshold=None):
    """Candidate indices: NaN scores and scores <= score_threshold dropped, by descending score, ties by
    ascending index."""
    scores = np.asarray(scores, dtype=np.float32)
    idx = np.arange(len(scores))
    keep = ~np.isnan(scores)
    if score_threshold is not None:
        keep &= scores > np.float32(score_threshold)
    idx = idx[keep]
    return idx[np.lexsort((idx, -scores[idx].astype(np.float64)))]


def nms(boxes, scores, iou_threshold, score_threshold=None, max_output=None, class_ids=None, iou_dtype=np.float64):
    """Greedy NMS (torchvision's algorithm): take candidates in order, keep one unless its IoU with a kept box
    (of the same class) is strictly greater than iou_threshold. Returns int64 indices."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = nms_order(scores, score_threshold)
    thr = np.float32(iou_threshold)
    suppressed = np.zeros(len(boxes), dtype=bool)
    kept: list[int] = []
    for i in order:
        if max_output is not None and len(kept) >= max_output:
            break
        if suppressed[i]:
            continue
        kept.append(int(i))
        over = box_iou(boxes[i : i + 1], boxes, dtype=iou_dtype)[0] > thr
        if class_ids is not None:
            over &= np.asarray(class_ids) == class_ids[i]
        suppressed |= over
    return np.asarray(kept, dtype=np.int64)


def batched_nms(boxes, scores, class_ids, iou_threshold, score_threshold=None, max_output=None, iou_dtype=np.float64):
    """Class-aware NMS as torchvision defines it: NMS within each class, results merged by descending score
    (ties by ascending index), then cut to max_output."""
    scores = np.asarray(scores, dtype=np.float32)
    class_ids = np.asarray(class_ids)
    merged = []
    for c in np.unique(class_ids):
        members = np.flatnonzero(class_ids == c)
        kept = nms(boxes[members], scores[members], iou_threshold, score_threshold, iou_dtype=iou_dtype)
        merged.extend(members[kept].tolist())
    merged = np.asarray(merged, dtype=np.int64)
    if merged.size:
        merged = merged[np.lexsort((merged, -scores[merged].astype(np.float64)))]
    if max_output is not None:
        merged = merged[:max_output]
    return merged


# --- gradients -----------------------------------------------------------------------------------
def numeric_grad(f, arr, eps=1e-6):
    """The gradient of the scalar f() with respect to arr by central differences, one element at a time
    (arr is changed in place and restored). For the backward passes of the kernels and layers, in float64."""
    grad = np.zeros_like(arr)
    flat, g = arr.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, arr), "arr must be contiguous: its elements are perturbed through a view"
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad
