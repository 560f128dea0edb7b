"""Float64 NumPy forms of the layers, written for clarity: the specification the nn tests check against."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    o, cg, kh, kw = w.shape
    win = sliding_window_view(x, (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, :: s[0], :: s[1], :: d[0], :: d[1]]  # (N, C, OH, OW, kh, kw)
    og = o // groups
    out = [np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]) for g in range(groups)]
    y = np.concatenate(out, axis=1)
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return y


def batch_norm(x, mean, var, gamma, beta, eps):
    shape = (1, -1, 1, 1)
    x = np.asarray(x, np.float64)
    return (x - np.reshape(mean, shape)) / np.sqrt(np.reshape(var, shape).astype(np.float64) + eps) * np.reshape(
        gamma, shape) + np.reshape(beta, shape)


def relu(x):
    return np.maximum(x, 0)


def max_pool2d(x, k, stride, padding=0):
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)),
               constant_values=-np.inf)
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(-2, -1))


def conv_bn_relu(x, m, relu_after=True):
    """A cnnfast Conv2d + BatchNorm2d pair (``m.conv``/``m.bn`` or a tuple) evaluated in float64."""
    conv, bn = m
    y = conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    y = batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)
    return relu(y) if relu_after else y


def randomize_batch_norms(model, rng):
    """Give every BatchNorm2d non-trivial statistics and affine parameters, so folding is really tested."""
    from cnnfast import nn

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight = rng.uniform(0.5, 1.5, c)
            m.bias = rng.uniform(-0.5, 0.5, c)
            m.running_mean = rng.uniform(-0.5, 0.5, c).astype(np.float32)
            m.running_var = rng.uniform(0.5, 2.0, c).astype(np.float32)
    return model


def assert_close_to_scale(actual, expected, rel=1e-4):
    """max |actual - expected| <= rel * max |expected| (tolerance scaled to the result's magnitude)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(np.abs(expected).max(), 1e-30) if expected.size else 1.0
    err = np.abs(actual - expected).max() if expected.size else 0.0
    assert err <= rel * scale, f"max abs difference {err:.3g} > {rel:g} x scale {scale:.3g}"
    return err / scale
