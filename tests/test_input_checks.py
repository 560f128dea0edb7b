"""Every bad input gives a TypeError or ValueError whose message names the argument (and the shapes involved),
before any kernel runs; inputs that are merely not float32 C-contiguous are converted and give the right
result. Each row of the tables below is one bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnfast
from cnnfast import _core


def f32(*shape):
    return np.ones(shape, np.float32)


X = f32(2, 4, 9, 7)
W = f32(6, 4, 3, 3)
B = f32(6)


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def noncontig_out(shape):
    big = np.zeros(shape[:-1] + (2 * shape[-1],), np.float32)
    return big[..., ::2]


# (call, exception type, regexes the message must all match)
CASES = {
    # --- conv2d: dtypes ---
    "conv2d x int32": (lambda: cnnfast.conv2d(X.astype(np.int32), W), TypeError, [r"\bx\b", "int32"]),
    "conv2d x int64": (lambda: cnnfast.conv2d(X.astype(np.int64), W), TypeError, [r"\bx\b"]),
    "conv2d x uint8": (lambda: cnnfast.conv2d(X.astype(np.uint8), W), TypeError, [r"\bx\b", "uint8"]),
    "conv2d x complex": (lambda: cnnfast.conv2d(X.astype(np.complex64), W), TypeError, [r"\bx\b", "complex"]),
    "conv2d x bool": (lambda: cnnfast.conv2d(X.astype(bool), W), TypeError, [r"\bx\b", "bool"]),
    "conv2d x object": (lambda: cnnfast.conv2d(X.astype(object), W), TypeError, [r"\bx\b", "object"]),
    "conv2d x None": (lambda: cnnfast.conv2d(None, W), TypeError, [r"\bx\b"]),
    "conv2d x str": (lambda: cnnfast.conv2d("abc", W), TypeError, [r"\bx\b"]),
    "conv2d weight int": (lambda: cnnfast.conv2d(X, W.astype(np.int16)), TypeError, [r"\bweight\b"]),
    "conv2d weight complex": (lambda: cnnfast.conv2d(X, W.astype(np.complex128)), TypeError, [r"\bweight\b"]),
    "conv2d bias int": (lambda: cnnfast.conv2d(X, W, B.astype(np.int32)), TypeError, [r"\bbias\b"]),
    "conv2d bias bool": (lambda: cnnfast.conv2d(X, W, B.astype(bool)), TypeError, [r"\bbias\b"]),
    # --- conv2d: shapes ---
    "conv2d x 3-D": (lambda: cnnfast.conv2d(f32(4, 9, 7), W), ValueError, [r"\bx\b", "4-D", r"\(4, 9, 7\)"]),
    "conv2d x 5-D": (lambda: cnnfast.conv2d(f32(1, 2, 4, 9, 7), W), ValueError, [r"\bx\b", r"\(1, 2, 4, 9, 7\)"]),
    "conv2d x 0-D": (lambda: cnnfast.conv2d(np.float32(1), W), ValueError, [r"\bx\b", "4-D"]),
    "conv2d weight 2-D": (lambda: cnnfast.conv2d(X, f32(6, 4)), ValueError, [r"\bweight\b", r"\(6, 4\)"]),
    "conv2d bias 2-D": (lambda: cnnfast.conv2d(X, W, f32(6, 1)), ValueError, [r"\bbias\b", r"\(6, 1\)"]),
    "conv2d bias length": (lambda: cnnfast.conv2d(X, W, f32(5)), ValueError, [r"\bbias\b", r"\(5,\)", r"\(6, 4, 3, 3\)"]),
    "conv2d channel mismatch": (
        lambda: cnnfast.conv2d(X, f32(6, 3, 3, 3)), ValueError, [r"\bweight\b", r"\bx\b", r"\(6, 3, 3, 3\)", r"\(2, 4, 9, 7\)"]),
    "conv2d channel mismatch grouped": (
        lambda: cnnfast.conv2d(X, f32(6, 4, 3, 3), groups=2), ValueError, [r"\bweight\b", r"\bx\b", "groups"]),
    "conv2d groups not dividing C": (
        lambda: cnnfast.conv2d(f32(1, 3, 5, 5), f32(4, 1, 3, 3), groups=2), ValueError, ["groups", r"\(1, 3, 5, 5\)"]),
    "conv2d groups not dividing O": (
        lambda: cnnfast.conv2d(X, f32(3, 2, 3, 3), groups=2), ValueError, ["groups", r"\(3, 2, 3, 3\)"]),
    "conv2d groups 0": (lambda: cnnfast.conv2d(X, W, groups=0), ValueError, ["groups"]),
    "conv2d groups negative": (lambda: cnnfast.conv2d(X, W, groups=-2), ValueError, ["groups"]),
    "conv2d groups float": (lambda: cnnfast.conv2d(X, W, groups=1.0), TypeError, ["groups"]),
    "conv2d x no channels": (lambda: cnnfast.conv2d(f32(1, 0, 5, 5), f32(2, 0, 1, 1)), ValueError, [r"\bx\b", "channels"]),
    "conv2d weight no outputs": (lambda: cnnfast.conv2d(X, f32(0, 4, 3, 3)), ValueError, [r"\bweight\b", r"\(0, 4, 3, 3\)"]),
    # --- conv2d: stride, kernel, dilation, padding ---
    "conv2d stride 0": (lambda: cnnfast.conv2d(X, W, stride=0), ValueError, ["stride"]),
    "conv2d stride negative": (lambda: cnnfast.conv2d(X, W, stride=-1), ValueError, ["stride"]),
    "conv2d stride pair with 0": (lambda: cnnfast.conv2d(X, W, stride=(1, 0)), ValueError, ["stride"]),
    "conv2d stride triple": (lambda: cnnfast.conv2d(X, W, stride=(1, 1, 1)), ValueError, ["stride"]),
    "conv2d stride float": (lambda: cnnfast.conv2d(X, W, stride=1.5), TypeError, ["stride"]),
    "conv2d stride bool": (lambda: cnnfast.conv2d(X, W, stride=True), TypeError, ["stride"]),
    "conv2d stride None": (lambda: cnnfast.conv2d(X, W, stride=None), TypeError, ["stride"]),
    "conv2d kernel height 0": (lambda: cnnfast.conv2d(X, f32(6, 4, 0, 3)), ValueError, [r"\bweight\b", "kernel", r"\(6, 4, 0, 3\)"]),
    "conv2d kernel width 0": (lambda: cnnfast.conv2d(X, f32(6, 4, 3, 0)), ValueError, [r"\bweight\b", "kernel"]),
    "conv2d dilation 0": (lambda: cnnfast.conv2d(X, W, dilation=0), ValueError, ["dilation"]),
    "conv2d dilation negative": (lambda: cnnfast.conv2d(X, W, dilation=(1, -2)), ValueError, ["dilation"]),
    "conv2d dilation float": (lambda: cnnfast.conv2d(X, W, dilation=2.0), TypeError, ["dilation"]),
    "conv2d padding negative": (lambda: cnnfast.conv2d(X, W, padding=-1), ValueError, ["padding"]),
    "conv2d padding pair negative": (lambda: cnnfast.conv2d(X, W, padding=(0, -1)), ValueError, ["padding"]),
    "conv2d padding string": (lambda: cnnfast.conv2d(X, W, padding="full"), ValueError, ["padding", "valid", "same", "full"]),
    "conv2d padding 'SAME'": (lambda: cnnfast.conv2d(X, W, padding="SAME"), ValueError, ["padding"]),
    "conv2d padding float": (lambda: cnnfast.conv2d(X, W, padding=1.0), TypeError, ["padding"]),
    "conv2d same with stride 2": (lambda: cnnfast.conv2d(X, W, stride=2, padding="same"), ValueError, ["same", "stride"]),
    "conv2d same with stride (1, 2)": (lambda: cnnfast.conv2d(X, W, stride=(1, 2), padding="same"), ValueError, ["same", "stride"]),
    "conv2d kernel larger than input": (
        lambda: cnnfast.conv2d(X, f32(6, 4, 10, 3)), ValueError, ["kernel", r"\(6, 4, 10, 3\)", r"\(2, 4, 9, 7\)", "empty"]),
    "conv2d kernel larger than padded input": (
        lambda: cnnfast.conv2d(f32(1, 1, 2, 2), f32(1, 1, 5, 5), padding=1), ValueError, ["kernel", "padded", r"4x4"]),
    "conv2d dilated kernel larger than input": (
        lambda: cnnfast.conv2d(X, W, dilation=5), ValueError, ["kernel", "dilation", r"11x11"]),
    "conv2d dilation overflowing int64": (
        lambda: cnnfast.conv2d(X, f32(6, 4, 9, 9), dilation=2**60), ValueError, ["dilation", r"\(6, 4, 9, 9\)"]),
    "conv2d activation": (lambda: cnnfast.conv2d(X, W, activation="gelu"), ValueError, ["activation", "relu", "gelu"]),
    "conv2d activation not str": (lambda: cnnfast.conv2d(X, W, activation=1), ValueError, ["activation"]),
    "conv2d algorithm unknown": (lambda: cnnfast.conv2d(X, W, algorithm="fft"), ValueError, ["algorithm", "winograd", "fft"]),
    "conv2d algorithm None": (lambda: cnnfast.conv2d(X, W, algorithm=None), ValueError, ["algorithm"]),
    "conv2d winograd with stride 2": (
        lambda: cnnfast.conv2d(X, W, stride=2, algorithm="winograd"), ValueError, ["winograd", "stride"]),
    "conv2d winograd with dilation 2": (
        lambda: cnnfast.conv2d(X, W, dilation=2, padding=2, algorithm="winograd"), ValueError, ["winograd", "dilation"]),
    "conv2d winograd with groups": (
        lambda: cnnfast.conv2d(X, f32(6, 2, 3, 3), groups=2, algorithm="winograd"), ValueError, ["winograd", "groups"]),
    "conv2d winograd with a 7x7 kernel": (
        lambda: cnnfast.conv2d(X, f32(6, 4, 7, 7), algorithm="winograd"), ValueError, ["winograd", "7x7"]),
    # --- conv2d: out= ---
    "conv2d out wrong shape": (
        lambda: cnnfast.conv2d(X, W, out=f32(2, 6, 9, 7)), ValueError, [r"\bout\b", r"\(2, 6, 9, 7\)", r"\(2, 6, 7, 5\)"]),
    "conv2d out wrong ndim": (lambda: cnnfast.conv2d(X, W, out=f32(2 * 6 * 7 * 5)), ValueError, [r"\bout\b", r"\(2, 6, 7, 5\)"]),
    "conv2d out float64": (
        lambda: cnnfast.conv2d(X, W, out=np.zeros((2, 6, 7, 5))), TypeError, [r"\bout\b", "float32", "float64"]),
    "conv2d out float16": (
        lambda: cnnfast.conv2d(X, W, out=np.zeros((2, 6, 7, 5), np.float16)), TypeError, [r"\bout\b", "float16"]),
    "conv2d out non-contiguous": (
        lambda: cnnfast.conv2d(X, W, out=noncontig_out((2, 6, 7, 5))), ValueError, [r"\bout\b", "contiguous"]),
    "conv2d out Fortran order": (
        lambda: cnnfast.conv2d(X, W, out=np.zeros((2, 6, 7, 5), np.float32, order="F")), ValueError, [r"\bout\b", "contiguous"]),
    "conv2d out read-only": (
        lambda: cnnfast.conv2d(X, W, out=readonly(f32(2, 6, 7, 5))), ValueError, [r"\bout\b", "writeable"]),
    "conv2d out a list": (lambda: cnnfast.conv2d(X, W, out=[0.0] * 420), TypeError, [r"\bout\b", "ndarray"]),
    "conv2d out overlaps x": (lambda: _conv_out_overlapping("x"), ValueError, [r"\bout\b", r"\bx\b"]),
    "conv2d out overlaps weight": (lambda: _conv_out_overlapping("weight"), ValueError, [r"\bout\b", r"\bweight\b"]),
    "conv2d out overlaps bias": (lambda: _conv_out_overlapping("bias"), ValueError, [r"\bout\b", r"\bbias\b"]),
    "conv2d out is x": (
        lambda: (lambda x: cnnfast.conv2d(x, f32(4, 4, 1, 1), out=x))(f32(1, 4, 5, 5)), ValueError, [r"\bout\b", r"\bx\b"]),
    # --- conv2d: absurd sizes, with tiny real memory ---
    "conv2d output of 1e13 elements": (
        lambda: cnnfast.conv2d(f32(1, 1, 1, 1), f32(1, 1, 1, 1), padding=(1_600_000, 1_600_000)), ValueError,
        [r"\boutput\b", r"\(1, 1, 3200001, 3200001\)"]),
    "conv2d output of 1e13 elements from a broadcast input": (
        lambda: cnnfast.conv2d(np.broadcast_to(np.float32(1), (1, 1, 1, 1)), f32(10**6, 1, 1, 1), padding=1_581), ValueError,
        [r"\boutput\b", r"\(1, 1000000, 3163, 3163\)"]),
    "conv2d output past int64": (
        lambda: cnnfast.conv2d(f32(1, 1, 1, 1), f32(1, 1, 1, 1), padding=2**60), ValueError, [r"\boutput\b"]),
    "conv2d padding past the limit": (
        lambda: cnnfast.conv2d(f32(1, 1, 1, 1), f32(1, 1, 1, 1), padding=2**63), ValueError, ["padding"]),
    # --- pooling ---
    "max_pool2d x int": (lambda: cnnfast.max_pool2d(X.astype(np.int32), 2), TypeError, [r"\bx\b", "int32"]),
    "avg_pool2d x complex": (lambda: cnnfast.avg_pool2d(X.astype(np.complex64), 2), TypeError, [r"\bx\b"]),
    "avg_pool2d x bool": (lambda: cnnfast.avg_pool2d(X.astype(bool), 2), TypeError, [r"\bx\b"]),
    "max_pool2d x object": (lambda: cnnfast.max_pool2d(X.astype(object), 2), TypeError, [r"\bx\b"]),
    "max_pool2d x 3-D": (lambda: cnnfast.max_pool2d(f32(4, 9, 7), 2), ValueError, [r"\bx\b", "4-D", r"\(4, 9, 7\)"]),
    "avg_pool2d x 2-D": (lambda: cnnfast.avg_pool2d(f32(9, 7), 2), ValueError, [r"\bx\b", r"\(9, 7\)"]),
    "max_pool2d kernel 0": (lambda: cnnfast.max_pool2d(X, 0), ValueError, ["kernel_size"]),
    "avg_pool2d kernel negative": (lambda: cnnfast.avg_pool2d(X, (2, -1)), ValueError, ["kernel_size"]),
    "max_pool2d kernel float": (lambda: cnnfast.max_pool2d(X, 2.0), TypeError, ["kernel_size"]),
    "max_pool2d stride 0": (lambda: cnnfast.max_pool2d(X, 2, 0), ValueError, ["stride"]),
    "avg_pool2d stride negative": (lambda: cnnfast.avg_pool2d(X, 2, -2), ValueError, ["stride"]),
    "max_pool2d padding negative": (lambda: cnnfast.max_pool2d(X, 3, 1, -1), ValueError, ["padding"]),
    "avg_pool2d padding more than half the kernel": (
        lambda: cnnfast.avg_pool2d(X, 3, 1, 2), ValueError, ["padding", "half", "kernel_size"]),
    "max_pool2d padding more than half the kernel": (
        lambda: cnnfast.max_pool2d(X, (2, 4), 1, (0, 3)), ValueError, ["padding", "kernel_size"]),
    "max_pool2d kernel larger than input": (
        lambda: cnnfast.max_pool2d(X, 10), ValueError, ["kernel_size", r"\(2, 4, 9, 7\)", "empty"]),
    "avg_pool2d kernel larger than padded input": (
        lambda: cnnfast.avg_pool2d(f32(1, 1, 3, 3), 6, 1, 1), ValueError, ["kernel_size", r"\(1, 1, 3, 3\)"]),
    "max_pool2d input view of 1e13 elements": (
        lambda: cnnfast.max_pool2d(np.broadcast_to(np.float32(0), (10**6, 10**7, 1, 1)), 1), ValueError,
        [r"\bx\b", r"\(1000000, 10000000, 1, 1\)"]),
    "conv2d weight view of 1e13 elements": (
        lambda: cnnfast.conv2d(X, np.broadcast_to(np.float64(0), (10**6, 4, 10**3, 2500))), ValueError,
        [r"\bweight\b", r"\(1000000, 4, 1000, 2500\)"]),
    "avg_pool2d window area past int64": (
        lambda: cnnfast.avg_pool2d(f32(1, 1, 4, 4), (274177, 67280421310721), 1, (137088, 33640210655360)), ValueError,
        ["kernel_size", r"\(274177, 67280421310721\)"]),
    "max_pool2d window area past int64": (
        lambda: cnnfast.max_pool2d(f32(1, 1, 4, 4), 2**31, 1, 2**30), ValueError, ["kernel_size"]),
    "global_avg_pool2d x int": (lambda: cnnfast.global_avg_pool2d(X.astype(np.int8)), TypeError, [r"\bx\b"]),
    "global_avg_pool2d x 3-D": (lambda: cnnfast.global_avg_pool2d(f32(4, 9, 7)), ValueError, [r"\bx\b", r"\(4, 9, 7\)"]),
    "global_avg_pool2d empty image": (
        lambda: cnnfast.global_avg_pool2d(f32(2, 3, 0, 5)), ValueError, [r"\bx\b", "empty", r"\(2, 3, 0, 5\)"]),
    # --- add ---
    "add a int": (lambda: cnnfast.add(np.ones(5, np.int32), f32(5)), TypeError, [r"\ba\b", "int32"]),
    "add b complex": (lambda: cnnfast.add(f32(5), np.ones(5, np.complex64)), TypeError, [r"\bb\b", "complex"]),
    "add b bool": (lambda: cnnfast.add(f32(5), np.ones(5, bool)), TypeError, [r"\bb\b", "bool"]),
    "add a object": (lambda: cnnfast.add(np.ones(5, object), f32(5)), TypeError, [r"\ba\b"]),
    "add shape mismatch": (lambda: cnnfast.add(f32(2, 3), f32(3, 2)), ValueError, [r"\ba\b", r"\bb\b", r"\(2, 3\)", r"\(3, 2\)"]),
    "add no broadcasting": (lambda: cnnfast.add(f32(2, 3), f32(3)), ValueError, [r"\(2, 3\)", r"\(3,\)"]),
    "add out wrong shape": (lambda: cnnfast.add(f32(2, 3), f32(2, 3), out=f32(3, 2)), ValueError, [r"\bout\b", r"\(3, 2\)", r"\(2, 3\)"]),
    "add out float64": (lambda: cnnfast.add(f32(2, 3), f32(2, 3), out=np.zeros((2, 3))), TypeError, [r"\bout\b", "float64"]),
    "add out=a with a float64": (
        lambda: (lambda a: cnnfast.add(a, f32(4), out=a))(np.ones(4)), TypeError, [r"\bout\b", "float64"]),
    "add out non-contiguous": (lambda: cnnfast.add(f32(2, 3), f32(2, 3), out=noncontig_out((2, 3))), ValueError, [r"\bout\b", "contiguous"]),
    "add out read-only": (lambda: cnnfast.add(f32(2, 3), f32(2, 3), out=readonly(f32(2, 3))), ValueError, [r"\bout\b", "writeable"]),
    "add out partly overlapping a": (lambda: _add_partial_overlap(), ValueError, [r"\bout\b", r"\ba\b"]),
    "add out=a transposed": (
        lambda: (lambda a: cnnfast.add(a, f32(3, 3), out=a.T))(np.arange(9, dtype=np.float32).reshape(3, 3)), ValueError, [r"\bout\b"]),
    # --- linear ---
    "linear x int": (lambda: cnnfast.linear(np.ones((2, 3), np.int64), f32(4, 3)), TypeError, [r"\bx\b", "int64"]),
    "linear weight complex": (lambda: cnnfast.linear(f32(2, 3), np.ones((4, 3), np.complex64)), TypeError, [r"\bweight\b"]),
    "linear bias bool": (lambda: cnnfast.linear(f32(2, 3), f32(4, 3), np.ones(4, bool)), TypeError, [r"\bbias\b"]),
    "linear x 0-D": (lambda: cnnfast.linear(np.float32(1), f32(4, 1)), ValueError, [r"\bx\b"]),
    "linear weight 1-D": (lambda: cnnfast.linear(f32(2, 3), f32(3)), ValueError, [r"\bweight\b", "2-D", r"\(3,\)"]),
    "linear weight 3-D": (lambda: cnnfast.linear(f32(2, 3), f32(1, 4, 3)), ValueError, [r"\bweight\b", r"\(1, 4, 3\)"]),
    "linear features mismatch": (
        lambda: cnnfast.linear(f32(2, 5), f32(4, 3)), ValueError, [r"\bx\b", r"\bweight\b", r"\(2, 5\)", r"\(4, 3\)"]),
    "linear weight transposed": (
        lambda: cnnfast.linear(f32(2, 3), f32(3, 4)), ValueError, [r"\bx\b", r"\bweight\b", r"\(3, 4\)"]),
    "linear bias length": (lambda: cnnfast.linear(f32(2, 3), f32(4, 3), f32(3)), ValueError, [r"\bbias\b", r"\(3,\)", r"\(4, 3\)"]),
    "linear bias 2-D": (lambda: cnnfast.linear(f32(2, 3), f32(4, 3), f32(1, 4)), ValueError, [r"\bbias\b", r"\(1, 4\)"]),
    "linear activation": (lambda: cnnfast.linear(f32(2, 3), f32(4, 3), activation="tanh"), ValueError, ["activation", "tanh"]),
    "linear output of 1e13 elements": (
        lambda: cnnfast.linear(np.broadcast_to(np.float32(1), (10**7, 1)), np.broadcast_to(np.float32(1), (10**6, 1))),
        ValueError, [r"\boutput\b", r"\(10000000, 1000000\)"]),
    # --- box_iou, nms, batched_nms ---
    "box_iou a int": (lambda: cnnfast.box_iou(np.ones((2, 4), np.int32), f32(3, 4)), TypeError, [r"\ba\b", "int32"]),
    "box_iou a (N, 3)": (lambda: cnnfast.box_iou(f32(2, 3), f32(3, 4)), ValueError, [r"\ba\b", r"\(N, 4\)", r"\(2, 3\)"]),
    "box_iou b 1-D": (lambda: cnnfast.box_iou(f32(2, 4), f32(4)), ValueError, [r"\bb\b", r"\(4,\)"]),
    "box_iou b 3-D": (lambda: cnnfast.box_iou(f32(2, 4), f32(1, 2, 4)), ValueError, [r"\bb\b", r"\(1, 2, 4\)"]),
    "box_iou output of 1e13 elements": (
        lambda: cnnfast.box_iou(np.broadcast_to(np.float32(0), (5 * 10**6, 4)), np.broadcast_to(np.float32(0), (2 * 10**6, 4))),
        ValueError, [r"\boutput\b", r"\(5000000, 2000000\)"]),
    "nms boxes (N, 5)": (lambda: cnnfast.nms(f32(3, 5), f32(3), 0.5), ValueError, [r"\bboxes\b", r"\(N, 4\)", r"\(3, 5\)"]),
    "nms boxes 1-D": (lambda: cnnfast.nms(f32(4), f32(1), 0.5), ValueError, [r"\bboxes\b", r"\(4,\)"]),
    "nms boxes (4, N)": (lambda: cnnfast.nms(f32(4, 7), f32(7), 0.5), ValueError, [r"\bboxes\b", r"\(4, 7\)"]),
    "nms boxes int": (lambda: cnnfast.nms(np.ones((3, 4), np.int64), f32(3), 0.5), TypeError, [r"\bboxes\b", "int64"]),
    "nms scores int": (lambda: cnnfast.nms(f32(3, 4), np.ones(3, np.int32), 0.5), TypeError, [r"\bscores\b"]),
    "nms scores length": (lambda: cnnfast.nms(f32(3, 4), f32(4), 0.5), ValueError, [r"\bscores\b", r"\(4,\)", r"\(3, 4\)"]),
    "nms scores 2-D": (lambda: cnnfast.nms(f32(3, 4), f32(3, 1), 0.5), ValueError, [r"\bscores\b", r"\(3, 1\)"]),
    "nms iou_threshold NaN": (lambda: cnnfast.nms(f32(3, 4), f32(3), float("nan")), ValueError, ["iou_threshold", "NaN"]),
    "nms iou_threshold str": (lambda: cnnfast.nms(f32(3, 4), f32(3), "0.5"), TypeError, ["iou_threshold"]),
    "nms iou_threshold None": (lambda: cnnfast.nms(f32(3, 4), f32(3), None), TypeError, ["iou_threshold"]),
    "nms score_threshold NaN": (
        lambda: cnnfast.nms(f32(3, 4), f32(3), 0.5, score_threshold=float("nan")), ValueError, ["score_threshold"]),
    "nms score_threshold str": (lambda: cnnfast.nms(f32(3, 4), f32(3), 0.5, score_threshold="x"), TypeError, ["score_threshold"]),
    "nms max_output negative": (lambda: cnnfast.nms(f32(3, 4), f32(3), 0.5, max_output=-1), ValueError, ["max_output"]),
    "nms max_output float": (lambda: cnnfast.nms(f32(3, 4), f32(3), 0.5, max_output=2.0), TypeError, ["max_output"]),
    "batched_nms class_ids float": (
        lambda: cnnfast.batched_nms(f32(3, 4), f32(3), np.zeros(3, np.float32), 0.5), TypeError, ["class_ids", "float32"]),
    "batched_nms class_ids float64 list": (
        lambda: cnnfast.batched_nms(f32(3, 4), f32(3), [0.0, 1.0, 2.0], 0.5), TypeError, ["class_ids"]),
    "batched_nms class_ids bool": (
        lambda: cnnfast.batched_nms(f32(3, 4), f32(3), np.zeros(3, bool), 0.5), TypeError, ["class_ids", "bool"]),
    "batched_nms class_ids complex": (
        lambda: cnnfast.batched_nms(f32(3, 4), f32(3), np.zeros(3, np.complex64), 0.5), TypeError, ["class_ids"]),
    "batched_nms class_ids None": (lambda: cnnfast.batched_nms(f32(3, 4), f32(3), None, 0.5), TypeError, ["class_ids"]),
    "batched_nms class_ids length": (
        lambda: cnnfast.batched_nms(f32(3, 4), f32(3), np.zeros(2, np.int64), 0.5), ValueError, ["class_ids", r"\(2,\)", r"\(3, 4\)"]),
    "batched_nms class_ids 2-D": (
        lambda: cnnfast.batched_nms(f32(3, 4), f32(3), np.zeros((3, 1), np.int64), 0.5), ValueError, ["class_ids", r"\(3, 1\)"]),
    "batched_nms boxes (N, 2)": (
        lambda: cnnfast.batched_nms(f32(3, 2), f32(3), np.zeros(3, np.int64), 0.5), ValueError, [r"\bboxes\b", r"\(3, 2\)"]),
}


def _conv_out_overlapping(which):
    buf = np.zeros(4096, np.float32)
    x = buf[: 2 * 4 * 9 * 7].reshape(2, 4, 9, 7)
    w = np.ones((6, 4, 3, 3), np.float32)
    b = np.ones(6, np.float32)
    if which == "weight":
        x, w = np.ones((2, 4, 9, 7), np.float32), buf[:216].reshape(6, 4, 3, 3)
    elif which == "bias":
        x, b = np.ones((2, 4, 9, 7), np.float32), buf[:6]
    out = buf[3 : 3 + 2 * 6 * 7 * 5].reshape(2, 6, 7, 5)
    return cnnfast.conv2d(x, w, b, out=out)


def _add_partial_overlap():
    buf = np.zeros(30, np.float32)
    return cnnfast.add(buf[:20], np.ones(20, np.float32), out=buf[5:25])


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name):
    call, exc, patterns = CASES[name]
    in_use = _core._workspace_in_use()
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for p in patterns:
        assert re.search(p, msg), f"{name}: message {msg!r} does not match {p!r}"
    assert _core._workspace_in_use() == in_use


def test_messages_name_the_function():
    for name, fn in [("conv2d", lambda: cnnfast.conv2d(X, W, stride=0)), ("max_pool2d", lambda: cnnfast.max_pool2d(X, 0)),
                     ("avg_pool2d", lambda: cnnfast.avg_pool2d(X, 0)), ("add", lambda: cnnfast.add(f32(1), f32(2))),
                     ("linear", lambda: cnnfast.linear(f32(2), f32(2, 3))), ("box_iou", lambda: cnnfast.box_iou(f32(1), f32(1, 4))),
                     ("nms", lambda: cnnfast.nms(f32(1), f32(1), 0.5)),
                     ("batched_nms", lambda: cnnfast.batched_nms(f32(1, 4), f32(1), f32(1), 0.5))]:
        with pytest.raises((TypeError, ValueError), match=rf"^{name}\(\)"):
            fn()


def test_bad_out_leaves_out_untouched():
    out = np.full((2, 6, 7, 5), 7.0, np.float32)
    with pytest.raises(ValueError):
        cnnfast.conv2d(X, f32(6, 3, 3, 3), out=out)  # channel mismatch, detected before any write
    assert (out == 7).all()


# --- inputs that are accepted and converted --------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.longdouble])
def test_other_float_dtypes_are_converted(dtype, isa):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    if dtype == np.float16:
        x, w = x.astype(np.float16).astype(np.float32), w.astype(np.float16).astype(np.float32)
    expected = cnnfast.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(cnnfast.conv2d(x.astype(dtype), w.astype(dtype), padding=1), expected)
    np.testing.assert_array_equal(cnnfast.max_pool2d(x.astype(dtype), 3, 2, 1), cnnfast.max_pool2d(x, 3, 2, 1))
    np.testing.assert_array_equal(cnnfast.add(x.astype(dtype), x), cnnfast.add(x, x))
    lw = w.reshape(6, 36)[:, :7]
    np.testing.assert_array_equal(cnnfast.linear(x[0, 0].astype(dtype), lw.astype(dtype)), cnnfast.linear(x[0, 0], lw))


def test_non_contiguous_inputs_are_converted(isa):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    views = {
        "reversed": lambda a: a[..., ::-1].copy()[..., ::-1],
        "fortran": np.asfortranarray,
        "strided": lambda a: np.repeat(a, 3, axis=-1)[..., 1::3],
        "transposed": lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1),
        "read-only": lambda a: np.broadcast_to(a, (1,) + a.shape)[0],
    }
    expected = cnnfast.conv2d(x, w, padding=1)
    for name, view in views.items():
        xv, wv = view(x), view(w)
        assert np.array_equal(xv, x) and np.array_equal(wv, w)
        np.testing.assert_array_equal(cnnfast.conv2d(xv, wv, padding=1), expected, err_msg=name)
        np.testing.assert_array_equal(cnnfast.avg_pool2d(xv, 2), cnnfast.avg_pool2d(x, 2), err_msg=name)
        np.testing.assert_array_equal(cnnfast.global_avg_pool2d(xv), cnnfast.global_avg_pool2d(x), err_msg=name)
        np.testing.assert_array_equal(cnnfast.add(xv, x), cnnfast.add(x, x), err_msg=name)
    # byte-swapped float32 and NumPy integer scalars as parameters
    np.testing.assert_array_equal(cnnfast.conv2d(x.astype(">f4"), w.astype(">f4"), padding=np.int64(1)), expected)
    np.testing.assert_array_equal(cnnfast.conv2d(x, w, padding=(np.int32(1), 1), stride=np.uint8(1)), expected)
    # a broadcast input with zero strides, expanded on conversion
    xb = np.broadcast_to(x[:1, :1], (2, 4, 9, 7))
    np.testing.assert_array_equal(cnnfast.conv2d(xb, w, padding=1), cnnfast.conv2d(np.ascontiguousarray(xb), w, padding=1))


def test_float32_contiguous_inputs_are_not_copied():
    # the C++ side sees the caller's memory: an out= that overlaps x is detected only because x is not copied
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"out.*\bx\b"):
        cnnfast.conv2d(x, f32(2, 2, 1, 1), out=x)
    # and a converted input is a private copy: out may then be the caller's float64 array's neighbour freely
    x64 = np.zeros((1, 2, 4, 4))
    out = np.zeros((1, 2, 4, 4), np.float32)
    cnnfast.conv2d(x64, f32(2, 2, 1, 1), out=out)
