"""VGG (Simonyan & Zisserman, 2015): configuration D, VGG-16."""

from __future__ import annotations

import numpy as np

from ..nn import AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential, init

# Channels of each 3x3 convolution, "M" a 2x2 max pool: the paper's table 1, column D.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(Module):
    """Stacks of 3x3 convolutions (padding 1) with ReLU, 2x2 max pools, and three fully connected layers
    with dropout, on 224x224 RGB images; torchvision's names (``features.N``, ``classifier.N``).

    Weights are Glorot-uniform (the paper notes that this initialization trains the deep configurations
    without its shallow-network pre-training); biases zero.
    """

    input_size = 224

    def __init__(self, layers=VGG16_LAYERS, num_classes: int = 1000, dropout: float = 0.5, rng=None):
        super().__init__()
        rng = init.as_rng(rng)
        features, channels = [], 3
        for v in layers:
            if v == "M":
                features.append(MaxPool2d(2, stride=2))
            else:
                features += [Conv2d(channels, v, 3, padding=1, init=init.glorot_uniform, rng=rng), ReLU()]
                channels = v
        self.features = Sequential(*features)
        self.avgpool = AdaptiveAvgPool2d((7, 7))
        self.flatten = Flatten()
        self.classifier = Sequential(
            Linear(channels * 7 * 7, 4096, init=init.glorot_uniform, rng=rng), ReLU(), Dropout(dropout),
            Linear(4096, 4096, init=init.glorot_uniform, rng=rng), ReLU(), Dropout(dropout),
            Linear(4096, num_classes, init=init.glorot_uniform, rng=rng),
        )
        for m in self.modules():
            if isinstance(m, (Conv2d, Linear)):
                m.bias = np.zeros_like(m.bias)

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def vgg16(num_classes: int = 1000, dropout: float = 0.5, rng=None) -> VGG:
    """VGG-16 (configuration D): 13 convolutions and 3 fully connected layers, 138,357,544 parameters."""
    return VGG(VGG16_LAYERS, num_classes, dropout, rng)
