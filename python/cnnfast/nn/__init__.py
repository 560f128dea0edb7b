"""Layers, blocks and the Module base class: networks built from cnnfast's kernels.

>>> from cnnfast import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
"""

from . import init
from .blocks import BasicBlock, BasicConv2d, Bottleneck, Inception
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Sequential,
    Softmax,
    Tanh,
    conv_bn,
)
from .module import LoadResult, Module, StateDictError
from .summary import Summary, SummaryRow
from .weights import load_state_dict_file, save_state_dict

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BasicBlock",
    "BasicConv2d",
    "BatchNorm2d",
    "Bottleneck",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Identity",
    "Inception",
    "Linear",
    "LoadResult",
    "LocalResponseNorm",
    "MaxPool2d",
    "Module",
    "ReLU",
    "Sequential",
    "Softmax",
    "StateDictError",
    "Summary",
    "SummaryRow",
    "Tanh",
    "conv_bn",
    "init",
    "load_state_dict_file",
    "save_state_dict",
]
