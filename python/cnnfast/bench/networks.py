"""Whole networks for the benchmark: cnnfast's models and, for the peers, the same networks in PyTorch
(torchvision's models, or an equivalent module for LeNet-5) with the same weights, and that PyTorch model
exported to ONNX. Models are built once per process and cached: VGG-16 has 138 million parameters."""

from __future__ import annotations

import functools
import io
from typing import Tuple

from .. import models

# name -> (builder, input shape without the batch)
NETWORKS = {
    "lenet5": (models.lenet5, (1, 32, 32)),
    "alexnet": (models.alexnet, (3, 224, 224)),
    "vgg16": (models.vgg16, (3, 224, 224)),
    "resnet50": (models.resnet50, (3, 224, 224)),
    "googlenet": (models.googlenet, (3, 224, 224)),
}


def input_shape(name: str) -> Tuple[int, int, int]:
    return NETWORKS[name][1]


@functools.lru_cache(maxsize=None)
def cnnfast_model(name: str):
    """The cnnfast model, seeded, in inference mode."""
    model = NETWORKS[name][0](rng=0)
    model.eval()
    return model


@functools.lru_cache(maxsize=None)
def macs(name: str) -> int:
    """Multiply-accumulates of one image through the network."""
    from ..nn.summary import summarize

    return summarize(cnnfast_model(name), input_shape(name)).total_macs


def _torch_lenet5():
    import torch.nn as tnn

    class LeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.s2 = tnn.Conv2d(1, 6, 5), tnn.MaxPool2d(2)
            self.c3, self.s4 = tnn.Conv2d(6, 16, 5), tnn.MaxPool2d(2)
            self.c5, self.f6, self.output = tnn.Conv2d(16, 120, 5), tnn.Linear(120, 84), tnn.Linear(84, 10)

        def forward(self, x):
            r = tnn.functional.relu
            x = self.s2(r(self.c1(x)))
            x = self.s4(r(self.c3(x)))
            x = r(self.c5(x)).flatten(1)
            return self.output(r(self.f6(x)))

    return LeNet5()


@functools.lru_cache(maxsize=None)
def torch_model(name: str):
    """The same network in PyTorch with cnnfast's weights, in eval mode. Raises ImportError when it needs
    torchvision and torchvision does not import."""
    import numpy as np
    import torch

    if name == "lenet5":
        tm = _torch_lenet5()
    else:
        import torchvision.models as tvm

        if name == "googlenet":
            tm = tvm.googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=False)
        else:
            tm = getattr(tvm, name)(weights=None)
    state = {k: torch.from_numpy(np.array(v)) for k, v in cnnfast_model(name).state_dict().items()}
    tm.load_state_dict(state)
    return tm.eval()


@functools.lru_cache(maxsize=None)
def onnx_model(name: str, batch: int) -> bytes:
    """The PyTorch model exported to ONNX (opset 17) for a fixed batch size."""
    import torch

    tm = torch_model(name)
    x = torch.zeros((batch, *input_shape(name)))
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(tm, (x,), buf, input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    return buf.getvalue()
