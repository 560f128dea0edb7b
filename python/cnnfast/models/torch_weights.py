"""Weights from PyTorch: a torchvision model or state dict into the matching cnnfast model.

torch is imported by the caller, never here: this module only reads what it is given.
"""

from __future__ import annotations

import re

import numpy as np

from ..nn import BasicBlock, Bottleneck, Module
from .alexnet import AlexNet
from .googlenet import GoogLeNet
from .resnet import ResNet
from .vgg import VGG


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _block_counts(keys, block_param: str) -> tuple[int, ...]:
    counts = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for k in keys for m in [re.match(rf"layer{stage}\.(\d+)\.{block_param}$", k)] if m}
        counts.append(max(indices) + 1 if indices else 0)
    return tuple(counts)


def _vgg_layers(state) -> tuple:
    indices = sorted(int(m.group(1)) for k in state for m in [re.match(r"features\.(\d+)\.weight$", k)] if m)
    layers, previous = [], None
    for i in indices:
        if previous is not None and i - previous == 3:  # conv, ReLU, pool, conv
            layers.append("M")
        layers.append(int(state[f"features.{i}.weight"].shape[0]))
        previous = i
    return tuple(layers) + ("M",)


def model_for_state_dict(state) -> Module:
    """A new cnnfast model with the architecture a torchvision state dict describes: AlexNet, VGG without
    batch norm, ResNet (basic or bottleneck blocks, any depth) or GoogLeNet."""
    keys = set(state)
    if "inception3a.branch1.conv.weight" in keys:
        k = state["inception3a.branch3.1.conv.weight"].shape[-1]
        return GoogLeNet(num_classes=state["fc.weight"].shape[0], branch3_kernel_size=int(k))
    if "layer1.0.conv1.weight" in keys and "fc.weight" in keys:
        if "layer1.0.conv3.weight" in keys:
            return ResNet(Bottleneck, _block_counts(keys, "conv3.weight"), num_classes=state["fc.weight"].shape[0])
        return ResNet(BasicBlock, _block_counts(keys, "conv2.weight"), num_classes=state["fc.weight"].shape[0])
    if "features.0.weight" in keys and "classifier.6.weight" in keys:
        num_classes = state["classifier.6.weight"].shape[0]
        if tuple(state["features.0.weight"].shape[-2:]) == (11, 11):
            return AlexNet(num_classes=num_classes)
        if any(k.endswith("running_mean") for k in keys):
            raise ValueError("from_torch(): VGG with batch norm is not among cnnfast's models")
        return VGG(_vgg_layers(state), num_classes=num_classes)
    raise ValueError("from_torch(): cannot tell which model these weights are for (AlexNet, VGG, ResNet and "
                     "GoogLeNet are recognized); build the model and pass it as model=")


def from_torch(module_or_state_dict, model: Module | None = None, strict: bool = True) -> Module:
    """Copy weights from a PyTorch module (a torchvision model, or any module with the same parameter names)
    or its state dict into ``model``, and return ``model`` in eval mode.

    Without ``model`` the architecture is recognized from the names and shapes (see
    :func:`model_for_state_dict`). GoogLeNet's auxiliary classifiers (``aux1``, ``aux2``) are dropped, and a
    torch GoogLeNet's ``transform_input`` is carried over. Names and shapes are checked as in
    :meth:`cnnfast.nn.Module.load_state_dict`.
    """
    source = module_or_state_dict
    if hasattr(source, "state_dict") and callable(source.state_dict):
        state = source.state_dict()
    elif hasattr(source, "items"):
        state = source
    else:
        raise TypeError(f"from_torch(): expected a torch module or a state dict, got {type(source).__name__}")
    state = {str(k): _to_numpy(v) for k, v in state.items()}
    if model is None:
        model = model_for_state_dict(state)
    if isinstance(model, GoogLeNet):
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        if hasattr(source, "transform_input"):
            model.transform_input = bool(source.transform_input)
    model.load_state_dict(state, strict=strict)
    return model.eval()
