"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012), in torchvision's single-tower layout."""

from __future__ import annotations

import numpy as np

from ..nn import (AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Module, ReLU,
                  Sequential, init)


class AlexNet(Module):
    """Five convolutions (11x11/4, 5x5, 3x3, 3x3, 3x3) with ReLU and three 3x3/2 max pools, then three fully
    connected layers with dropout, on 224x224 RGB images.

    This is torchvision's version (64-192-384-256-256 channels, one tower, no local response normalization),
    whose weights load by name: 61,100,840 parameters with 1000 classes. ``local_response_norm=True`` adds
    the paper's normalization (size 5, alpha 1e-4, beta 0.75, k 2) after the first two ReLUs; the layer
    indices in ``features`` then shift and torchvision weights no longer load. Weights are He-normal
    (the paper drew them from N(0, 0.01), which later work replaced for ReLU networks), biases zero.
    """

    input_size = 224

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, local_response_norm: bool = False, rng=None):
        super().__init__()
        rng = init.as_rng(rng)

        def conv(cin, cout, k, stride=1, padding=0):
            return Conv2d(cin, cout, k, stride=stride, padding=padding, init=init.he_normal, rng=rng)

        def lrn():
            return [LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if local_response_norm else []

        self.features = Sequential(
            conv(3, 64, 11, stride=4, padding=2), ReLU(), *lrn(), MaxPool2d(3, stride=2),
            conv(64, 192, 5, padding=2), ReLU(), *lrn(), MaxPool2d(3, stride=2),
            conv(192, 384, 3, padding=1), ReLU(),
            conv(384, 256, 3, padding=1), ReLU(),
            conv(256, 256, 3, padding=1), ReLU(), MaxPool2d(3, stride=2),
        )
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.flatten = Flatten()
        self.classifier = Sequential(
            Dropout(dropout), Linear(256 * 6 * 6, 4096, init=init.he_normal, rng=rng), ReLU(),
            Dropout(dropout), Linear(4096, 4096, init=init.he_normal, rng=rng), ReLU(),
            Linear(4096, num_classes, init=init.glorot_uniform, rng=rng),
        )
        for m in self.modules():
            if isinstance(m, (Conv2d, Linear)):
                m.bias = np.zeros_like(m.bias)

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def alexnet(num_classes: int = 1000, dropout: float = 0.5, local_response_norm: bool = False, rng=None) -> AlexNet:
    """AlexNet in torchvision's layout (see :class:`AlexNet`)."""
    return AlexNet(num_classes, dropout, local_response_norm, rng)
