"""Layers: each a Module around one kernel call (or a few NumPy lines where there is no kernel).

All activations are float32 NCHW, as the kernels take them. Parameter names and defaults are PyTorch's.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

from .. import _core
from .._functional import relu as _relu
from .._functional import softmax as _softmax
from .._shapes import conv_output_shape
from . import init as _init
from .module import Module, accumulate_grad, backward_chain, is_recording, is_tracing, needs_grad

# Building a folded conv+bn is rare (first eval forward after a change); one lock keeps two threads running
# the same model from building it at once.
_fold_lock = threading.Lock()


def _pair(value, layer: str, name: str, minimum: int) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in pair):
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_activation(layer: str, activation) -> None:
    if activation not in (None, "relu"):
        raise ValueError(f"{layer}: activation must be None or 'relu', got {activation!r}")


def _check_4d(layer: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{layer}: expected an NCHW array (4 dimensions), got shape {x.shape}")
    return x


def _write(out, y):
    if out is None:
        return y
    out[...] = y
    return out


def _takes_kernel_output(out, x) -> bool:
    """Whether conv2d can write into ``out`` itself: C-contiguous, or each image C-contiguous with the images
    further apart (a channel slice ``a[:, c0:c1]`` of a larger array, as a concatenation's parts) and clear of
    the input; otherwise the result is copied into it."""
    if out.flags.c_contiguous:
        return True
    return (out.ndim >= 2 and out.dtype == np.float32 and out.flags.writeable and out.flags.aligned
            and out[0].flags.c_contiguous and out.strides[0] > 0 and out.strides[0] % out.itemsize == 0
            and out.strides[0] >= out[0].nbytes and not np.may_share_memory(out, x))


def _contiguous(g) -> np.ndarray:
    return np.ascontiguousarray(g, dtype=np.float32)


def _channel_sum(a) -> np.ndarray:
    """Sum of an NCHW array over N, H and W, in float64."""
    n, c = a.shape[:2]
    return np.einsum("ncx->c", a.reshape(n, c, -1), dtype=np.float64)


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_output, input_grad: bool = True):
        return grad_output if input_grad else None


def _drop_fold(layer: Module, frozen_at: int) -> None:
    """Forget what ``layer`` prepared for inference (its ``_fold`` cache) and make the arrays it froze (the
    cache's item ``frozen_at``) writeable again."""
    fold = layer.__dict__.get("_fold")
    if fold is not None:
        for a in fold[frozen_at]:
            a.flags.writeable = True
    layer.__dict__["_fold"] = None


class Conv2d(Module):
    """2-D convolution, ``cnnfast.conv2d`` with learned ``weight`` (out, in/groups, kH, kW) and ``bias``.

    ``activation='relu'`` fuses a ReLU into the kernel's store. ``algorithm`` ('auto', 'direct' or
    'winograd') is passed to the kernel; 'direct' gives the tightest rounding. ``init`` draws the weight, a function
    ``(shape, rng) -> array`` from :mod:`cnnfast.nn.init` (default: PyTorch's uniform in +-1/sqrt(fan_in));
    the bias is drawn uniform in +-1/sqrt(fan_in) as PyTorch does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, activation: str | None = None, init=None, rng=None,
                 algorithm: str = "auto"):
        super().__init__()
        name = "Conv2d"
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        _check_activation(name, activation)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size, name, "kernel_size", 1)
        self.stride = _pair(stride, name, "stride", 1)
        self.dilation = _pair(dilation, name, "dilation", 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {stride!r}")
            self.padding = padding
        else:
            self.padding = _pair(padding, name, "padding", 0)
        self.activation = activation
        if algorithm not in ("auto", "direct", "winograd"):
            raise ValueError(f"{name}: algorithm must be 'auto', 'direct' or 'winograd', got {algorithm!r}")
        self.algorithm = algorithm
        rng = _init.as_rng(rng)
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.register_parameter("weight", (init or _init.uniform_fan_in)(shape, rng))
        fan_in = _init.fans(shape)[0]
        self.register_parameter("bias", _init.uniform_fan_in((self.out_channels,), rng, fan_in) if bias else None)

    def forward(self, x, out=None):
        if not (self.training or is_recording(self) or is_tracing()):
            return self.fused(x, out=out)
        y = _core.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                         self.activation, out, self.algorithm)
        if is_recording(self):
            self._record(np.asarray(x), y if self.activation else None)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        x, y = self._recorded()
        weight_grad, bias_grad = needs_grad(self.weight), needs_grad(self.bias)
        if not (input_grad or weight_grad or bias_grad):
            return None
        dx, dw, db = _core.conv2d_backward(grad_output, x, self.weight, self.stride, self.padding, self.dilation,
                                           self.groups, self.activation, y, input_grad, weight_grad, bias_grad)
        accumulate_grad(self.weight, dw)
        if self.bias is not None:
            accumulate_grad(self.bias, db)
        return dx

    def fused(self, x, bn: "BatchNorm2d | None" = None, relu: bool = False, out=None, residual=None):
        """This convolution, then ``bn`` in inference mode, then ``residual`` added (optional), then a ReLU,
        in one kernel call, with the weights prepared for the kernels once (see :meth:`_prepared`) rather
        than on every call."""
        if bn is not None and self.activation is not None:
            raise ValueError("Conv2d.fused(): cannot fold a batch norm after a convolution's own ReLU")
        x = np.asarray(x)
        weight, bias, prepared = self._prepared(x, bn)
        activation = "relu" if relu else self.activation
        if out is not None and not _takes_kernel_output(out, x):
            return _write(out, _core.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                                            activation, None, self.algorithm, prepared, residual))
        return _core.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups, activation, out,
                            self.algorithm, prepared, residual)

    def _prepared(self, x: np.ndarray, bn: "BatchNorm2d | None"):
        """(weight, bias, prepared) for an inference call on x: the batch norm folded into a copy of the weight
        and bias (w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma / sqrt(var + eps)
        + beta), and those weights rearranged for the kernels (``_core.conv2d_prepare``: GEMM panels, or
        Winograd-transformed filters, about 4x the weight's size) for the last few input shapes. All of it
        lives until a parameter is replaced or the mode changes; its sources are read-only meanwhile, so an
        in-place edit cannot leave it stale unnoticed."""
        key = (id(bn) if bn is not None else None, self._version, bn._version if bn is not None else None)
        cache = self.__dict__.get("_fold")
        if cache is None or cache[0] != key:
            with _fold_lock:
                cache = self.__dict__.get("_fold")
                if cache is None or cache[0] != key:
                    cache = self._fold_into_cache(bn, key)
        shape_key = (x.shape, _core._current_isa())
        prepared = cache[4].get(shape_key)
        if prepared is None:
            with _fold_lock:
                prepared = cache[4].get(shape_key)
                if prepared is None:
                    try:
                        prepared = _core.conv2d_prepare(x, cache[1], self.stride, self.padding, self.dilation,
                                                        self.groups, self.algorithm)
                    except (TypeError, ValueError):
                        return cache[1], cache[2], None  # a bad input: conv2d() itself says what is wrong
                    if len(cache[4]) >= 4:  # a few shapes (batch sizes) at a time
                        cache[4].clear()
                    cache[4][shape_key] = prepared
        return cache[1], cache[2], prepared

    def _fold_into_cache(self, bn: "BatchNorm2d | None", key):
        self._drop_cache()
        sources = [self.weight, self.bias]
        if bn is None:
            weight, bias = self.weight, self.bias
        else:
            if bn.num_features != self.out_channels:
                raise ValueError(f"cannot fold BatchNorm2d({bn.num_features}) into a Conv2d with "
                                 f"{self.out_channels} outputs")
            scale = 1.0 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
            shift = -bn.running_mean.astype(np.float64) * scale
            if bn.affine:
                scale = scale * bn.weight
                shift = shift * bn.weight + bn.bias
            if self.bias is not None:
                shift = shift + self.bias * scale
            weight = self.weight * scale.astype(np.float32).reshape(-1, 1, 1, 1)
            bias = shift.astype(np.float32)
            sources += [bn.running_mean, bn.running_var]
            if bn.affine:
                sources += [bn.weight, bn.bias]
        frozen = [a for a in sources if a is not None and a.flags.writeable]
        for a in frozen:
            a.flags.writeable = False
        cache = (key, weight, bias, frozen, {})
        self.__dict__["_fold"] = cache
        return cache

    def _drop_cache(self) -> None:
        _drop_fold(self, 3)

    def output_shape(self, input_hw) -> tuple[int, int]:
        return conv_output_shape(input_hw, self.kernel_size, self.stride, self.padding, self.dilation)

    def macs(self, input_shape, output_shape) -> int:
        kh, kw = self.kernel_size
        return math.prod(output_shape[1:]) * kh * kw * self.in_channels // self.groups

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation:
            s += f", activation={self.activation!r}"
        return s


class BatchNorm2d(Module):
    """Batch normalization over the channels of NCHW input, as torch.nn.BatchNorm2d.

    Eval mode normalizes with ``running_mean`` / ``running_var``; training mode with the batch's statistics,
    updating the running ones (``momentum``, unbiased variance) and ``num_batches_tracked``. After a Conv2d,
    eval mode folds it into the convolution (see :meth:`Conv2d.fused`).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be a positive int, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm2d: eps must be > 0, got {eps!r}")
        self.num_features, self.eps, self.momentum, self.affine = int(num_features), float(eps), float(momentum), affine
        if affine:
            self.register_parameter("weight", np.ones(num_features, np.float32))
            self.register_parameter("bias", np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, np.int64))

    def forward(self, x):
        x = _check_4d("BatchNorm2d", x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}): input has {x.shape[1]} channels (shape {x.shape})")
        if self.training:
            mean, var = self._batch_statistics(x)
        else:
            mean, var = self.running_mean.astype(np.float64), self.running_var.astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        if is_recording(self):
            # The normalized input x_hat is what the gradients need; y is computed from it.
            x_hat = np.asarray(x, np.float32) - mean.astype(np.float32).reshape(1, -1, 1, 1)
            x_hat *= inv_std.astype(np.float32).reshape(1, -1, 1, 1)
            self._record(x_hat, inv_std, self.training)
            if not self.affine:
                return x_hat.copy()
            y = x_hat * self.weight.reshape(1, -1, 1, 1)
            y += self.bias.reshape(1, -1, 1, 1)
            return y
        scale, shift = inv_std, -mean * inv_std
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        y = x * scale.astype(np.float32).reshape(1, -1, 1, 1)
        y += shift.astype(np.float32).reshape(1, -1, 1, 1)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        """With batch statistics (training mode) the gradient flows through the mean and variance too:
        dx = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sqrt(var + eps), g_hat = gamma * g."""
        x_hat, inv_std, batch_statistics = self._recorded()
        g = np.asarray(grad_output, dtype=np.float32)
        sum_g = _channel_sum(g)
        sum_g_xhat = np.einsum("ncx,ncx->c", g.reshape(g.shape[0], g.shape[1], -1),
                               x_hat.reshape(g.shape[0], g.shape[1], -1), dtype=np.float64)
        if self.affine and needs_grad(self.weight):
            accumulate_grad(self.weight, sum_g_xhat.astype(np.float32))
        if self.affine and needs_grad(self.bias):
            accumulate_grad(self.bias, sum_g.astype(np.float32))
        if not input_grad:
            return None
        gamma = self.weight.astype(np.float64) if self.affine else np.ones(self.num_features)
        scale = gamma * inv_std
        if not batch_statistics:
            return g * scale.astype(np.float32).reshape(1, -1, 1, 1)
        count = g.shape[0] * g.shape[2] * g.shape[3]
        shape = (1, -1, 1, 1)
        dx = g * scale.astype(np.float32).reshape(shape)
        dx -= (scale * sum_g / count).astype(np.float32).reshape(shape)
        dx -= x_hat * (scale * sum_g_xhat / count).astype(np.float32).reshape(shape)
        return dx

    def _batch_statistics(self, x):
        n = x.shape[0] * x.shape[2] * x.shape[3]
        if n < 2:
            raise ValueError(f"BatchNorm2d in training mode needs more than one value per channel, got shape {x.shape}")
        mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
        var = x.var(axis=(0, 2, 3), dtype=np.float64)
        m = self.momentum
        self.running_mean = ((1 - m) * self.running_mean + m * mean).astype(np.float32)
        self.running_var = ((1 - m) * self.running_var + m * var * n / (n - 1)).astype(np.float32)
        self.num_batches_tracked = self.num_batches_tracked + 1
        return mean, var

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class Linear(Module):
    """Fully connected layer ``x @ weight.T + bias`` (``cnnfast.linear``), weight (out_features, in_features);
    ``activation='relu'`` fuses a ReLU. ``init`` as for :class:`Conv2d`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str | None = None,
                 init=None, rng=None):
        super().__init__()
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Linear: {arg} must be a positive int, got {v!r}")
        _check_activation("Linear", activation)
        self.in_features, self.out_features, self.activation = int(in_features), int(out_features), activation
        rng = _init.as_rng(rng)
        shape = (self.out_features, self.in_features)
        self.register_parameter("weight", (init or _init.uniform_fan_in)(shape, rng))
        bias_value = _init.uniform_fan_in((self.out_features,), rng, self.in_features) if bias else None
        self.register_parameter("bias", bias_value)

    def forward(self, x):
        if not (self.training or is_recording(self) or is_tracing()):
            return self.fused(x)
        y = _core.linear(x, self.weight, self.bias, self.activation)
        if is_recording(self):
            self._record(np.asarray(x), y if self.activation else None)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        x, y = self._recorded()
        if y is not None:
            grad_output = _core.relu_backward(grad_output, y)
        weight_grad, bias_grad = needs_grad(self.weight), needs_grad(self.bias)
        if not (input_grad or weight_grad or bias_grad):
            return None
        dx, dw, db = _core.linear_backward(grad_output, x, self.weight, input_grad, weight_grad, bias_grad)
        accumulate_grad(self.weight, dw)
        if self.bias is not None:
            accumulate_grad(self.bias, db)
        return dx

    def fused(self, x, relu: bool = False):
        """This layer then a ReLU, in one kernel call; in eval mode with the weight prepared for the kernel
        (see :meth:`_prepared`)."""
        activation = "relu" if relu else self.activation
        inference = not (self.training or is_recording(self) or is_tracing())
        return _core.linear(x, self.weight, self.bias, activation, self._prepared(x) if inference else None)

    def _prepared(self, x):
        """``_core.linear_prepare(weight)`` for an inference call of 4 or more rows (where the kernel uses
        it): the weight transposed into the kernel's panels, as large as the weight, made once per ISA. It
        lives until a parameter is replaced or the mode changes; the weight and bias are read-only meanwhile,
        so an in-place edit cannot leave it stale unnoticed."""
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 1 or shape[-1] != self.in_features or math.prod(shape[:-1]) < 4:
            return None
        key = (self._version, _core._current_isa())
        cache = self.__dict__.get("_fold")
        if cache is None or cache[0] != key:
            with _fold_lock:
                cache = self.__dict__.get("_fold")
                if cache is None or cache[0] != key:
                    self._drop_cache()
                    try:
                        prepared = _core.linear_prepare(self.weight)
                    except (TypeError, ValueError):
                        return None  # a bad weight: linear() itself says what is wrong
                    frozen = [a for a in (self.weight, self.bias) if a is not None and a.flags.writeable]
                    for a in frozen:
                        a.flags.writeable = False
                    cache = (key, prepared, frozen)
                    self.__dict__["_fold"] = cache
        return cache[1]

    def _drop_cache(self) -> None:
        _drop_fold(self, 2)

    def macs(self, input_shape, output_shape) -> int:
        return math.prod(output_shape[1:]) * self.in_features

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation:
            s += f", activation={self.activation!r}"
        return s


class ReLU(Module):
    def forward(self, x):
        y = _relu(x)
        if is_recording(self):
            self._record(y)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        y = self._recorded()
        return _core.relu_backward(grad_output, y) if input_grad else None


class Tanh(Module):
    def forward(self, x):
        y = np.tanh(x)
        if is_recording(self):
            self._record(y)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        y = self._recorded()
        return (grad_output * (1 - np.square(y))).astype(np.float32, copy=False) if input_grad else None


class MaxPool2d(Module):
    """Max pooling (``cnnfast.max_pool2d``): stride defaults to the kernel size."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "MaxPool2d", "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "MaxPool2d", "stride", 1)
        self.padding = _pair(padding, "MaxPool2d", "padding", 0)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x):
        if is_recording(self):
            self._record(np.asarray(x))
        return _core.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def backward(self, grad_output, input_grad: bool = True):
        x = self._recorded()
        if not input_grad:
            return None
        return _core.max_pool2d_backward(grad_output, x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class AvgPool2d(Module):
    """Average pooling (``cnnfast.avg_pool2d``): stride defaults to the kernel size."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "AvgPool2d", "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "AvgPool2d", "stride", 1)
        self.padding = _pair(padding, "AvgPool2d", "padding", 0)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)

    def forward(self, x):
        if is_recording(self):
            self._record(np.asarray(x))
        return _core.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def backward(self, grad_output, input_grad: bool = True):
        x = self._recorded()
        if not input_grad:
            return None
        return _core.avg_pool2d_backward(grad_output, x, self.kernel_size, self.stride, self.padding,
                                         self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, as torch.nn.AdaptiveAvgPool2d: output cell i of n covers input
    rows floor(i*H/n) to ceil((i+1)*H/n). Output 1x1 is ``cnnfast.global_avg_pool2d``; an input already at
    the output size passes through unchanged."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _pair(output_size, "AdaptiveAvgPool2d", "output_size", 1)

    def forward(self, x):
        x = _check_4d("AdaptiveAvgPool2d", x)
        if is_recording(self):
            self._record(x)
        oh, ow = self.output_size
        h, w = x.shape[2:]
        if (oh, ow) == (1, 1):
            return _core.global_avg_pool2d(x)
        if (oh, ow) == (h, w):
            return x
        if h % oh == 0 and w % ow == 0:
            k = (h // oh, w // ow)
            return _core.avg_pool2d(x, k, k)
        return _adaptive_avg_pool2d(x, oh, ow)

    def backward(self, grad_output, input_grad: bool = True):
        x = self._recorded()
        if not input_grad:
            return None
        oh, ow = self.output_size
        h, w = x.shape[2:]
        if (oh, ow) == (1, 1):
            return _core.global_avg_pool2d_backward(grad_output, x)
        if (oh, ow) == (h, w):
            return grad_output
        if h % oh == 0 and w % ow == 0:
            k = (h // oh, w // ow)
            return _core.avg_pool2d_backward(grad_output, x, k, k)
        return _adaptive_avg_pool2d_backward(np.asarray(grad_output, np.float32), x.shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def _adaptive_avg_pool2d(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    # Window sums from a summed-area table: any window is four lookups.
    n, c, h, w = x.shape
    table = np.zeros((n, c, h + 1, w + 1), np.float64)
    np.cumsum(np.cumsum(x, axis=2, dtype=np.float64), axis=3, out=table[:, :, 1:, 1:])
    i, j = np.arange(oh), np.arange(ow)
    h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
    w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
    sums = (table[:, :, h1[:, None], w1[None, :]] - table[:, :, h0[:, None], w1[None, :]]
            - table[:, :, h1[:, None], w0[None, :]] + table[:, :, h0[:, None], w0[None, :]])
    area = (h1 - h0)[:, None] * (w1 - w0)[None, :]
    return (sums / area).astype(np.float32)


def _adaptive_avg_pool2d_backward(grad: np.ndarray, shape) -> np.ndarray:
    # Each output cell spreads its gradient evenly over its window; windows may overlap.
    n, c, h, w = shape
    oh, ow = grad.shape[2:]
    dx = np.zeros(shape, np.float32)
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            dx[:, :, h0:h1, w0:w1] += (grad[:, :, i, j] / np.float32((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx


class Dropout(Module):
    """Zeroes each value with probability ``p`` and scales the rest by 1/(1-p) in training mode; the
    identity in eval mode."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = _init.as_rng(rng)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            if is_recording(self):
                self._record(None)
            return x
        mask = (self.rng.random(np.shape(x), dtype=np.float32) >= self.p) * np.float32(1.0 / (1.0 - self.p))
        if is_recording(self):
            self._record(mask)
        return (x * mask).astype(np.float32, copy=False)

    def backward(self, grad_output, input_grad: bool = True):
        mask = self._recorded()
        if not input_grad:
            return None
        return grad_output if mask is None else (grad_output * mask).astype(np.float32, copy=False)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), as torch.flatten(x, 1)."""

    def forward(self, x):
        x = np.asarray(x)
        if is_recording(self):
            self._record(x.shape)
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_output, input_grad: bool = True):
        shape = self._recorded()
        return np.reshape(grad_output, shape) if input_grad else None


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        y = _softmax(x, axis=self.dim).astype(np.float32, copy=False)
        if is_recording(self):
            self._record(y)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        y = self._recorded()
        if not input_grad:
            return None
        g = np.asarray(grad_output, np.float32)
        return y * (g - np.sum(g * y, axis=self.dim, keepdims=True))


class LocalResponseNorm(Module):
    """Normalization across neighbouring channels (Krizhevsky et al., 2012), with PyTorch's semantics:

        b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_{c'}^2) ** beta

    the window spanning channels c - size//2 to c + (size-1)//2, clipped at the edges (the missing channels
    count as zeros, but alpha is still divided by ``size``). The paper uses size=5, alpha=1e-4, beta=0.75,
    k=2.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"LocalResponseNorm: size must be a positive int, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def forward(self, x):
        x = _check_4d("LocalResponseNorm", x)
        c = x.shape[1]
        # Window sums of squares along channels from a running sum with a zero in front.
        csum = np.zeros((x.shape[0], c + 1) + x.shape[2:], np.float64)
        np.cumsum(np.square(x, dtype=np.float64), axis=1, out=csum[:, 1:])
        ch = np.arange(c)
        hi = np.minimum(ch + (self.size - 1) // 2, c - 1) + 1
        lo = np.maximum(ch - self.size // 2, 0)
        window = csum[:, hi] - csum[:, lo]
        base = self.k + (self.alpha / self.size) * window
        if is_recording(self):
            self._record(x, base)
        return (x / base ** self.beta).astype(np.float32)

    def backward(self, grad_output, input_grad: bool = True):
        """dx_c = g_c / base_c^beta - 2 x_c (alpha beta / size) sum_{j: c in window(j)} g_j x_j / base_j^(beta+1)."""
        x, base = self._recorded()
        if not input_grad:
            return None
        g = np.asarray(grad_output, np.float64)
        c = x.shape[1]
        t = g * x / base ** (self.beta + 1)
        # Channel j's window holds c exactly when c - (size-1)//2 <= j <= c + size//2.
        tsum = np.zeros((x.shape[0], c + 1) + x.shape[2:], np.float64)
        np.cumsum(t, axis=1, out=tsum[:, 1:])
        ch = np.arange(c)
        hi = np.minimum(ch + self.size // 2, c - 1) + 1
        lo = np.maximum(ch - (self.size - 1) // 2, 0)
        dx = g / base ** self.beta - (2 * self.alpha * self.beta / self.size) * x * (tsum[:, hi] - tsum[:, lo])
        return dx.astype(np.float32)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class Sequential(Module):
    """Modules run one after the other, named "0", "1", ... (or by the keys of an OrderedDict).

    Indexable (``seq[0]``, ``seq[-1]``, ``seq[1:3]``) and iterable. In eval mode a Conv2d followed by a
    BatchNorm2d and/or a ReLU runs as one kernel call, and so does a Linear followed by a ReLU.
    """

    def __init__(self, *modules):
        super().__init__()
        named = modules[0].items() if len(modules) == 1 and isinstance(modules[0], OrderedDict) else (
            (str(i), m) for i, m in enumerate(modules))
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {name} is a {type(m).__name__}, not a Module")
            setattr(self, name, m)

    def append(self, module: Module) -> "Sequential":
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def backward(self, grad_output, input_grad: bool = True):
        return backward_chain(self.children(), grad_output, input_grad)

    def forward(self, x):
        layers = list(self._modules.values())
        if self.training or is_tracing() or is_recording(self):
            for layer in layers:
                x = layer(x)
            return x
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Conv2d) and layer.activation is None and not layer.training:
                bn = None
                if isinstance(nxt, BatchNorm2d) and not nxt.training:
                    bn, i = nxt, i + 1
                    nxt = layers[i + 1] if i + 1 < len(layers) else None
                relu = isinstance(nxt, ReLU)
                x = layer.fused(x, bn, relu)
                i += 2 if relu else 1
            elif isinstance(layer, Linear) and layer.activation is None and isinstance(nxt, ReLU):
                x = layer.fused(x, relu=True)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def conv_bn(x, conv: Conv2d, bn: BatchNorm2d | None = None, relu: bool | ReLU = False, out=None, residual=None):
    """``conv``, then ``bn``, then ``residual`` added (optional, an array of the output's shape: a residual
    block's shortcut), then a ReLU (``relu`` True or a ReLU module): one kernel call with the batch norm
    folded in when both are in eval mode, the steps one by one otherwise. ``out`` (optional) receives the
    result."""
    if (conv.training or (bn is not None and bn.training) or is_tracing() or is_recording(conv)
            or ((bn is not None or residual is not None) and conv.activation)):
        y = conv(x)
        if bn is not None:
            y = bn(y)
        if residual is not None:
            y = _core.add(y, residual, relu=bool(relu) and not isinstance(relu, Module), out=y)
        if isinstance(relu, Module):
            y = relu(y)
        elif relu and residual is None:
            y = np.maximum(y, 0, out=y)
        return _write(out, y)
    return conv.fused(x, bn, isinstance(relu, Module) or bool(relu), out, residual)
