"""The building blocks of ResNet and GoogLeNet, with torchvision's attribute names."""

from __future__ import annotations

import numpy as np

from .. import _core
from .layers import BatchNorm2d, Conv2d, MaxPool2d, ReLU, Sequential, conv_bn, _write
from .module import Module, backward_chain, is_recording


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, rng=None) -> Conv2d:
    return Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, rng=rng)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, rng=None) -> Conv2d:
    return Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, rng=rng)


def projection(in_channels: int, out_channels: int, stride: int, rng=None) -> Sequential:
    """The shortcut used when a block changes shape: a strided 1x1 convolution and a batch norm (He et al.,
    2016, option B), named ``downsample.0`` / ``downsample.1``."""
    return Sequential(conv1x1(in_channels, out_channels, stride, rng), BatchNorm2d(out_channels))


class BasicBlock(Module):
    """Two 3x3 convolutions with batch norm and a shortcut (ResNet-18/34):

        y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    The shortcut is the identity, or ``downsample`` (a projection) when the stride or width changes. In
    eval mode each conv+bn(+relu) is one kernel call, the last one adding the shortcut and applying the
    ReLU as it stores its output.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, rng=None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride, rng)
        self.bn1 = BatchNorm2d(channels)
        self.relu = ReLU()
        self.conv2 = conv3x3(channels, channels, 1, rng)
        self.bn2 = BatchNorm2d(channels)
        out_channels = channels * self.expansion
        if stride != 1 or in_channels != out_channels:
            self.downsample = projection(in_channels, out_channels, stride, rng)
        else:
            self.downsample = None

    def forward(self, x):
        y = conv_bn(x, self.conv1, self.bn1, relu=self.relu)
        return _residual_join(self, x, y, self.conv2, self.bn2)

    def backward(self, grad_output, input_grad: bool = True):
        return _residual_backward(self, grad_output, input_grad,
                                  (self.conv1, self.bn1, self.relu, self.conv2, self.bn2))


class Bottleneck(Module):
    """1x1 reduce, 3x3, 1x1 expand (by 4), with batch norm and a shortcut (ResNet-50 and deeper):

        y = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))

    The stride is on the 3x3 convolution, as in torchvision ("ResNet v1.5"); the original paper put it on
    the first 1x1. Same parameters, same names.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, rng=None):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels, 1, rng)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride, rng)
        self.bn2 = BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels, 1, rng)
        self.bn3 = BatchNorm2d(out_channels)
        self.relu = ReLU()
        if stride != 1 or in_channels != out_channels:
            self.downsample = projection(in_channels, out_channels, stride, rng)
        else:
            self.downsample = None

    def forward(self, x):
        y = conv_bn(x, self.conv1, self.bn1, relu=self.relu)
        y = conv_bn(y, self.conv2, self.bn2, relu=self.relu)
        return _residual_join(self, x, y, self.conv3, self.bn3)

    def backward(self, grad_output, input_grad: bool = True):
        return _residual_backward(self, grad_output, input_grad,
                                  (self.conv1, self.bn1, self.relu, self.conv2, self.bn2, self.relu,
                                   self.conv3, self.bn3))


def _residual_join(block, x, h, conv, bn):
    """The end of a residual block: relu(bn(conv(h)) + shortcut(x)), the add and ReLU fused into the
    convolution's store in eval mode."""
    shortcut = x if block.downsample is None else block.downsample(x)
    y = conv_bn(h, conv, bn, relu=True, residual=shortcut)
    if is_recording(block):
        block._record(y)
    return y


def _residual_backward(block, grad_output, input_grad: bool, main_path):
    # relu(main(x) + shortcut(x)): the fused add+ReLU passes the masked gradient to both terms.
    y = block._recorded()
    g = _core.relu_backward(grad_output, y)
    dx = backward_chain(main_path, g, input_grad)
    if block.downsample is not None:
        ds = block.downsample.backward(g, input_grad)
        return dx + ds if input_grad else None
    return dx + g if input_grad else None


class BasicConv2d(Module):
    """Convolution without bias, batch norm (eps 0.001) and ReLU: GoogLeNet's unit, as torchvision names it
    (``conv``, ``bn``). One kernel call in eval mode."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, rng=None):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False, rng=rng)
        self.bn = BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x, out=None):
        if is_recording(self):
            y = conv_bn(x, self.conv, self.bn, relu=True)
            self._record(y)
            return _write(out, y)
        return conv_bn(x, self.conv, self.bn, relu=True, out=out)

    def backward(self, grad_output, input_grad: bool = True):
        y = self._recorded()
        g = _core.relu_backward(grad_output, y)
        return backward_chain((self.conv, self.bn), g, input_grad)


class Inception(Module):
    """The Inception module of GoogLeNet (Szegedy et al., 2015): four branches on the same input, their
    outputs concatenated on channels in this order:

        branch1: 1x1 conv                       -> ch1x1
        branch2: 1x1 conv -> 3x3 conv           -> ch3x3   (ch3x3red in between)
        branch3: 1x1 conv -> 5x5 conv           -> ch5x5   (ch5x5red in between)
        branch4: 3x3 max pool (stride 1) -> 1x1 -> pool_proj

    Every conv is a :class:`BasicConv2d`. ``branch3_kernel_size`` is 5 as in the paper; torchvision's
    GoogLeNet uses 3 there, and :func:`cnnfast.models.googlenet` follows it so its weights load. In eval mode
    each branch's last convolution writes straight into its channels of the output.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, branch3_kernel_size: int = 5, rng=None):
        super().__init__()
        k = branch3_kernel_size
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, rng=rng)
        self.branch2 = Sequential(BasicConv2d(in_channels, ch3x3red, 1, rng=rng),
                                  BasicConv2d(ch3x3red, ch3x3, 3, padding=1, rng=rng))
        self.branch3 = Sequential(BasicConv2d(in_channels, ch5x5red, 1, rng=rng),
                                  BasicConv2d(ch5x5red, ch5x5, k, padding=k // 2, rng=rng))
        self.branch4 = Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                  BasicConv2d(in_channels, pool_proj, 1, rng=rng))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x):
        x = np.asarray(x)
        n, _, h, w = x.shape
        out = _core._empty((n, self.out_channels, h, w))
        start = 0
        for first, last in ((None, self.branch1), (self.branch2[0], self.branch2[1]),
                            (self.branch3[0], self.branch3[1]), (self.branch4[0], self.branch4[1])):
            y = x if first is None else first(x)
            c = last.conv.out_channels
            last(y, out=out[:, start:start + c])
            start += c
        return out

    def backward(self, grad_output, input_grad: bool = True):
        """The gradient is split by channel among the branches; their input gradients add up."""
        g = np.asarray(grad_output, np.float32)
        dx, start = None, 0
        for branch in (self.branch1, self.branch2, self.branch3, self.branch4):
            last = branch if isinstance(branch, BasicConv2d) else branch[1]
            c = last.conv.out_channels
            steps = [branch] if isinstance(branch, BasicConv2d) else [branch[0], branch[1]]
            d = backward_chain(steps, np.ascontiguousarray(g[:, start:start + c]), input_grad)
            start += c
            if d is not None:
                dx = d if dx is None else dx + d
        return dx
