"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998)."""

from __future__ import annotations

import numpy as np

from ..nn import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Module, Tanh, init


class LeNet5(Module):
    """LeNet-5 on 32x32 single-channel images, layers named as in the paper:

        C1  5x5 conv, 6 maps       28x28
        S2  2x2 subsampling        14x14
        C3  5x5 conv, 16 maps      10x10
        S4  2x2 subsampling         5x5
        C5  5x5 conv, 120 maps      1x1
        F6  fully connected, 84
        output, num_classes

    ``activation`` 'relu' (fused into each conv and linear kernel) or 'tanh' (the paper's squashing
    function); ``pooling`` 'max' or 'avg'. The paper's subsampling layers also had a trainable scale and
    bias per map, and C3 connected to a subset of S2's maps; this is the fully connected form with plain
    pooling used today (61,706 parameters with 10 classes). Weights are Glorot-uniform, biases zero.
    """

    input_size = 32

    def __init__(self, num_classes: int = 10, activation: str = "relu", pooling: str = "max", in_channels: int = 1,
                 rng=None):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"LeNet5: activation must be 'relu' or 'tanh', got {activation!r}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"LeNet5: pooling must be 'max' or 'avg', got {pooling!r}")
        rng = init.as_rng(rng)
        fused = "relu" if activation == "relu" else None
        pool = MaxPool2d if pooling == "max" else AvgPool2d
        self.c1 = Conv2d(in_channels, 6, 5, activation=fused, init=init.glorot_uniform, rng=rng)
        self.s2 = pool(2)
        self.c3 = Conv2d(6, 16, 5, activation=fused, init=init.glorot_uniform, rng=rng)
        self.s4 = pool(2)
        self.c5 = Conv2d(16, 120, 5, activation=fused, init=init.glorot_uniform, rng=rng)
        self.flatten = Flatten()
        self.f6 = Linear(120, 84, activation=fused, init=init.glorot_uniform, rng=rng)
        self.output = Linear(84, num_classes, init=init.glorot_uniform, rng=rng)
        self.act = Tanh() if activation == "tanh" else None
        for m in (self.c1, self.c3, self.c5, self.f6, self.output):
            m.bias = np.zeros_like(m.bias)

    def _squash(self, x):
        return x if self.act is None else self.act(x)

    def forward(self, x):
        x = self.s2(self._squash(self.c1(x)))
        x = self.s4(self._squash(self.c3(x)))
        x = self.flatten(self._squash(self.c5(x)))
        x = self._squash(self.f6(x))
        return self.output(x)


def lenet5(num_classes: int = 10, activation: str = "relu", pooling: str = "max", in_channels: int = 1,
           rng=None) -> LeNet5:
    """LeNet-5 for 32x32 images (see :class:`LeNet5`)."""
    return LeNet5(num_classes, activation, pooling, in_channels, rng)
