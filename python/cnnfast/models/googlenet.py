"""GoogLeNet (Inception v1; Szegedy et al., 2015), without the auxiliary classifiers, in torchvision's layout."""

from __future__ import annotations

import numpy as np

from ..nn import (AdaptiveAvgPool2d, BasicConv2d, Conv2d, Dropout, Flatten, Inception, Linear, MaxPool2d,
                  Module, init)

# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj): the paper's table 1.
INCEPTION_3A = (192, 64, 96, 128, 16, 32, 32)
INCEPTION_3B = (256, 128, 128, 192, 32, 96, 64)
INCEPTION_4A = (480, 192, 96, 208, 16, 48, 64)
INCEPTION_4B = (512, 160, 112, 224, 24, 64, 64)
INCEPTION_4C = (512, 128, 128, 256, 24, 64, 64)
INCEPTION_4D = (512, 112, 144, 288, 32, 64, 64)
INCEPTION_4E = (528, 256, 160, 320, 32, 128, 128)
INCEPTION_5A = (832, 256, 160, 320, 32, 128, 128)
INCEPTION_5B = (832, 384, 192, 384, 48, 128, 128)


class GoogLeNet(Module):
    """The 22-layer network of the paper's table 1 on 224x224 RGB images: a stem of 7x7/2 conv, pool, 1x1
    and 3x3 convs, pool; nine Inception modules (3a-3b, pool, 4a-4e, pool, 5a-5b); global average pooling,
    dropout and a fully connected layer. Every convolution is followed by batch norm (torchvision's
    version, whose weights load by name; the paper predates batch norm).

    ``branch3_kernel_size``: torchvision's GoogLeNet has a 3x3 convolution where the paper's Inception
    module has a 5x5 (6,624,904 parameters with 1000 classes); pass 5 for the paper's. ``transform_input``
    re-normalizes inputs prepared with ImageNet mean/std to the (x - 0.5) / 0.5 the original weights expect,
    as torchvision's pretrained model does. Weights are Glorot-uniform (the reference Caffe model's
    "xavier"), biases zero.
    """

    input_size = 224

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, transform_input: bool = False,
                 branch3_kernel_size: int = 3, rng=None):
        super().__init__()
        rng = init.as_rng(rng)
        self.transform_input = transform_input

        def inception(config):
            return Inception(*config, branch3_kernel_size=branch3_kernel_size, rng=rng)

        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3, rng=rng)
        self.maxpool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1, rng=rng)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, rng=rng)
        self.maxpool2 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = inception(INCEPTION_3A)
        self.inception3b = inception(INCEPTION_3B)
        self.maxpool3 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(INCEPTION_4A)
        self.inception4b = inception(INCEPTION_4B)
        self.inception4c = inception(INCEPTION_4C)
        self.inception4d = inception(INCEPTION_4D)
        self.inception4e = inception(INCEPTION_4E)
        self.maxpool4 = MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = inception(INCEPTION_5A)
        self.inception5b = inception(INCEPTION_5B)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.dropout = Dropout(dropout)
        self.flatten = Flatten()
        self.fc = Linear(1024, num_classes, rng=rng)
        for m in self.modules():
            if isinstance(m, (Conv2d, Linear)):
                m.weight = init.glorot_uniform(m.weight.shape, rng)
                if m.bias is not None:
                    m.bias = np.zeros_like(m.bias)

    def _transform_input(self, x):
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        scale = (std / 0.5).astype(np.float32).reshape(1, 3, 1, 1)
        shift = ((mean - 0.5) / 0.5).astype(np.float32).reshape(1, 3, 1, 1)
        return np.asarray(x, np.float32) * scale + shift

    def forward(self, x):
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4c(self.inception4b(self.inception4a(x)))
        x = self.maxpool4(self.inception4e(self.inception4d(x)))
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))


def googlenet(num_classes: int = 1000, dropout: float = 0.2, transform_input: bool = False,
              branch3_kernel_size: int = 3, rng=None) -> GoogLeNet:
    """GoogLeNet / Inception v1 without auxiliary classifiers, torchvision's layout (see :class:`GoogLeNet`)."""
    return GoogLeNet(num_classes, dropout, transform_input, branch3_kernel_size, rng)
