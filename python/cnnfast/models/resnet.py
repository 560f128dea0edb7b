"""ResNet (He, Zhang, Ren & Sun, 2016): ResNet-18, -34 and -50, in torchvision's layout."""

from __future__ import annotations

from ..nn import (AdaptiveAvgPool2d, BasicBlock, BatchNorm2d, Bottleneck, Conv2d, Flatten, Linear, MaxPool2d, Module,
                  ReLU, Sequential, conv_bn, init)


class ResNet(Module):
    """A 7x7/2 convolution and 3x3/2 max pool (the stem), four stages of residual blocks at 64, 128, 256
    and 512 channels (each stage after the first halving the resolution in its first block), global
    average pooling and a fully connected layer; torchvision's names (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ``layer2.0.downsample.0``, ``fc``).

    Convolutions are He-normal (fan out), batch norms start at weight 1, bias 0. Global pooling makes any
    input of 32x32 or more work; ImageNet models run on 224x224.
    """

    input_size = 224

    def __init__(self, block, blocks_per_stage, num_classes: int = 1000, rng=None):
        super().__init__()
        rng = init.as_rng(rng)
        self.conv1 = Conv2d(3, 64, 7, stride=2, padding=3, bias=False, rng=rng)
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            stride = 1 if i == 0 else 2
            stage = [block(channels, width, stride, rng)]
            channels = width * block.expansion
            stage += [block(channels, width, 1, rng) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", Sequential(*stage))
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.fc = Linear(channels, num_classes, rng=rng)
        for m in self.modules():
            if isinstance(m, Conv2d):
                m.weight = init.he_normal(m.weight.shape, rng, mode="fan_out")

    def forward(self, x):
        x = self.maxpool(conv_bn(x, self.conv1, self.bn1, relu=self.relu))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def resnet18(num_classes: int = 1000, rng=None) -> ResNet:
    """ResNet-18: basic blocks, 2-2-2-2; 11,689,512 parameters."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, rng)


def resnet34(num_classes: int = 1000, rng=None) -> ResNet:
    """ResNet-34: basic blocks, 3-4-6-3; 21,797,672 parameters."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, rng)


def resnet50(num_classes: int = 1000, rng=None) -> ResNet:
    """ResNet-50: bottleneck blocks, 3-4-6-3; 25,557,032 parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, rng)
