"""The classic CNN architectures, with torchvision's parameter names.

>>> from cnnfast import models
>>> net = models.resnet18()
>>> net.summary((3, 224, 224))  # doctest: +SKIP
"""

from .alexnet import AlexNet, alexnet
from .googlenet import GoogLeNet, googlenet
from .lenet import LeNet5, lenet5
from .resnet import ResNet, resnet18, resnet34, resnet50
from .torch_weights import from_torch, model_for_state_dict
from .vgg import VGG, vgg16

__all__ = [
    "AlexNet",
    "GoogLeNet",
    "LeNet5",
    "ResNet",
    "VGG",
    "alexnet",
    "from_torch",
    "googlenet",
    "lenet5",
    "model_for_state_dict",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
]
