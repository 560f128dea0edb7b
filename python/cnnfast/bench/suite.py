"""The benchmark suite: layer shapes taken from real networks, as data.

``SUITE`` is the one registry that ``python -m cnnfast.bench`` and the pytest-benchmark cases in
``benchmarks/`` both read. Every case is float32, batch 1 unless its name says ``xN<batch>``; 3x3
convolutions are padded 'same' (padding 1). A case knows how to make its inputs (seeded), how to call
cnnfast on them, and how much work one call does, so rates (GFLOP/s or GB/s) follow from a time.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional

import numpy as np

import cnnfast

Inputs = Dict[str, np.ndarray]

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Case:
    """One benchmark case. Subclasses set ``op`` and define the inputs, the call and the work."""

    name: str

    op: ClassVar[str] = ""

    def make_inputs(self, seed: Optional[int] = None) -> Inputs:
        """The call's arguments as float32 arrays, reproducible: the seed defaults to one derived from the name."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return self._inputs(rng)

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    def run(self, inputs: Inputs):
        """Call cnnfast on ``inputs`` once and return its output."""
        raise NotImplementedError

    @property
    def flops(self) -> int:
        """Floating-point operations of one call (2 per multiply-add); 0 for memory-bound ops."""
        return 0

    @property
    def bytes_moved(self) -> int:
        """Bytes read plus bytes written by one call, for the memory-bound ops; 0 otherwise."""
        return 0

    @property
    def metric(self) -> Optional[str]:
        """The rate reported for this case: 'GFLOP/s', 'GB/s' or None."""
        if self.flops:
            return "GFLOP/s"
        if self.bytes_moved:
            return "GB/s"
        return None

    def rate(self, seconds: float) -> Optional[float]:
        """GFLOP/s or GB/s for a call that took ``seconds``."""
        work = self.flops or self.bytes_moved
        return work / seconds / 1e9 if work and seconds > 0 else None

    def params(self) -> dict:
        """The case's parameters, for JSON output."""
        out = {"op": self.op}
        out.update({k: v for k, v in self.__dict__.items() if k != "name"})
        return out

    def _inputs(self, rng: np.random.Generator) -> Inputs:
        raise NotImplementedError


def _uniform(rng: np.random.Generator, shape, scale: float = 1.0) -> np.ndarray:
    return (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(scale)


def _window_out_hw(h: int, w: int, kernel: int, stride: int, padding: int):
    """Output size of a square window sliding over h x w with symmetric padding (floor mode)."""
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


# The last case's weights prepared for the kernels: (weight array, ISA, prepared).
_last_prepared: list = [None]


def _prepared(inputs: Inputs, make):
    """The case's weights prepared once by ``make(inputs)`` (outside the timing), as a layer in eval mode
    holds them and as the peers' sessions prepack theirs."""
    w, isa, last = inputs["weight"], cnnfast._core._current_isa(), _last_prepared[0]
    if last is None or last[0] is not w or last[1] != isa:
        last = (w, isa, make(inputs))
        _last_prepared[0] = last
    return last[2]


@dataclass(frozen=True)
class Conv2dCase(Case):
    """conv2d with bias, no activation: x (batch, cin, h, w), weight (cout, cin/groups, k, k)."""

    cin: int = 1
    cout: int = 1
    h: int = 1
    w: int = 1
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    batch: int = 1

    op: ClassVar[str] = "conv2d"

    @property
    def out_hw(self):
        return _window_out_hw(self.h, self.w, self.kernel, self.stride, self.padding)

    @property
    def macs(self) -> int:
        oh, ow = self.out_hw
        return self.batch * self.cout * oh * ow * (self.cin // self.groups) * self.kernel * self.kernel

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def _inputs(self, rng):
        fan_in = (self.cin // self.groups) * self.kernel * self.kernel
        return {
            "x": _uniform(rng, (self.batch, self.cin, self.h, self.w)),
            "weight": _uniform(rng, (self.cout, self.cin // self.groups, self.kernel, self.kernel), (3 / fan_in) ** 0.5),
            "bias": _uniform(rng, (self.cout,), 0.1),
        }

    def run(self, inputs):
        return cnnfast._core.conv2d(inputs["x"], inputs["weight"], inputs["bias"], self.stride, self.padding, 1,
                                    self.groups, None, None, "auto", _prepared(inputs, self._prepare))

    def _prepare(self, inputs):
        return cnnfast._core.conv2d_prepare(inputs["x"], inputs["weight"], self.stride, self.padding, 1, self.groups,
                                            "auto")


@dataclass(frozen=True)
class MaxPool2dCase(Case):
    """max_pool2d of x (batch, c, h, w) with a square window."""

    c: int = 1
    h: int = 1
    w: int = 1
    kernel: int = 2
    stride: int = 2
    padding: int = 0
    batch: int = 1

    op: ClassVar[str] = "max_pool2d"

    @property
    def out_hw(self):
        return _window_out_hw(self.h, self.w, self.kernel, self.stride, self.padding)

    @property
    def bytes_moved(self) -> int:
        oh, ow = self.out_hw
        return FLOAT32_BYTES * self.batch * self.c * (self.h * self.w + oh * ow)

    def _inputs(self, rng):
        return {"x": _uniform(rng, (self.batch, self.c, self.h, self.w))}

    def run(self, inputs):
        return cnnfast.max_pool2d(inputs["x"], self.kernel, self.stride, self.padding)


@dataclass(frozen=True)
class GlobalAvgPool2dCase(Case):
    """global_avg_pool2d of x (batch, c, h, w) -> (batch, c, 1, 1)."""

    c: int = 1
    h: int = 1
    w: int = 1
    batch: int = 1

    op: ClassVar[str] = "global_avg_pool2d"

    @property
    def bytes_moved(self) -> int:
        return FLOAT32_BYTES * self.batch * self.c * (self.h * self.w + 1)

    def _inputs(self, rng):
        return {"x": _uniform(rng, (self.batch, self.c, self.h, self.w))}

    def run(self, inputs):
        return cnnfast.global_avg_pool2d(inputs["x"])


@dataclass(frozen=True)
class AddReluCase(Case):
    """The residual add of a ResNet block: relu(a + b), a and b (batch, c, h, w), into a new array."""

    c: int = 1
    h: int = 1
    w: int = 1
    batch: int = 1

    op: ClassVar[str] = "add_relu"

    @property
    def bytes_moved(self) -> int:
        return 3 * FLOAT32_BYTES * self.batch * self.c * self.h * self.w

    def _inputs(self, rng):
        shape = (self.batch, self.c, self.h, self.w)
        return {"a": _uniform(rng, shape), "b": _uniform(rng, shape)}

    def run(self, inputs):
        return cnnfast.add(inputs["a"], inputs["b"], relu=True)


@dataclass(frozen=True)
class LinearCase(Case):
    """The fully connected layer with bias: x (batch, in_features), weight (out_features, in_features)."""

    in_features: int = 1
    out_features: int = 1
    batch: int = 1

    op: ClassVar[str] = "linear"

    @property
    def macs(self) -> int:
        return self.batch * self.in_features * self.out_features

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def _inputs(self, rng):
        return {
            "x": _uniform(rng, (self.batch, self.in_features)),
            "weight": _uniform(rng, (self.out_features, self.in_features), (3 / self.in_features) ** 0.5),
            "bias": _uniform(rng, (self.out_features,), 0.1),
        }

    def run(self, inputs):
        prepared = _prepared(inputs, lambda i: cnnfast._core.linear_prepare(i["weight"]))
        return cnnfast._core.linear(inputs["x"], inputs["weight"], inputs["bias"], None, prepared)


@dataclass(frozen=True)
class NmsCase(Case):
    """Greedy NMS of ``boxes`` clustered boxes with uniform random scores, as a detector's output looks."""

    boxes: int = 1000
    clusters: int = 50
    iou_threshold: float = 0.5

    op: ClassVar[str] = "nms"

    def _inputs(self, rng):
        return clustered_boxes(rng, self.boxes, self.clusters)

    def run(self, inputs):
        return cnnfast.nms(inputs["boxes"], inputs["scores"], self.iou_threshold)


@dataclass(frozen=True)
class NetworkCase(Case):
    """A forward pass of a whole network (see :mod:`cnnfast.bench.networks`) on a batch of random images."""

    network: str
    batch: int

    op: ClassVar[str] = "network"

    @property
    def flops(self) -> int:
        from . import networks

        return 2 * networks.macs(self.network) * self.batch

    def _inputs(self, rng):
        from . import networks

        return {"x": _uniform(rng, (self.batch, *networks.input_shape(self.network)))}

    def run(self, inputs):
        from . import networks

        return networks.cnnfast_model(self.network)(inputs["x"])


def clustered_boxes(rng: np.random.Generator, n: int, clusters: int, image_size: float = 1024.0) -> Inputs:
    """``n`` boxes (x1, y1, x2, y2) jittered around ``clusters`` objects in a square image, and scores in (0, 1].

    Each object has a centre and a size (16 to 160 pixels a side); its boxes move the centre by about a
    tenth of the size and scale each side by up to about 20%, so that boxes of one object overlap
    (IoU mostly 0.3 to 0.9) as the candidates of a detector do.
    """
    centre = rng.uniform(0, image_size, size=(clusters, 2))
    size = rng.uniform(16, 160, size=(clusters, 2))
    owner = rng.integers(0, clusters, size=n)
    c = centre[owner] + rng.normal(0, 0.1, size=(n, 2)) * size[owner]
    wh = size[owner] * np.exp(rng.normal(0, 0.2, size=(n, 2)))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)
    scores = 1 - rng.random(n, dtype=np.float32)  # in (0, 1]: every box passes a score threshold of 0
    return {"boxes": boxes, "scores": scores}


def _conv(net: str, cin: int, cout: int, hw: int, k: int, stride: int = 1, padding: Optional[int] = None,
          batch: int = 1) -> Conv2dCase:
    if padding is None:
        padding = k // 2  # 'same' for the odd kernels of the suite at stride 1
    name = f"{net}/conv{k}x{k}{f's{stride}' if stride != 1 else ''}_{cin}-{cout}@{hw}"
    if batch != 1:
        name += f"xN{batch}"
    return Conv2dCase(name, cin=cin, cout=cout, h=hw, w=hw, kernel=k, stride=stride, padding=padding, batch=batch)


def _max_pool(c: int, hw: int, k: int, stride: int, padding: int = 0) -> MaxPool2dCase:
    pad = f"p{padding}" if padding else ""
    return MaxPool2dCase(f"pool/max{k}x{k}s{stride}{pad}_{c}x{hw}x{hw}", c=c, h=hw, w=hw, kernel=k, stride=stride,
                         padding=padding)


def _nms(n: int) -> NmsCase:
    return NmsCase(f"nms/boxes{n}", boxes=n, clusters=min(200, max(50, n // 100)))


SUITE: List[Case] = [
    # VGG-16's 3x3 layers at 224.
    _conv("vgg16", 3, 64, 224, 3),
    _conv("vgg16", 64, 64, 224, 3),
    _conv("vgg16", 64, 128, 112, 3),
    _conv("vgg16", 128, 128, 112, 3),
    _conv("vgg16", 128, 256, 56, 3),
    _conv("vgg16", 256, 256, 56, 3),
    _conv("vgg16", 256, 512, 28, 3),
    _conv("vgg16", 512, 512, 28, 3),
    _conv("vgg16", 512, 512, 14, 3),
    # ResNet-50.
    _conv("resnet50", 3, 64, 224, 7, stride=2, padding=3),
    _conv("resnet50", 64, 256, 56, 1),
    _conv("resnet50", 64, 64, 56, 3),
    _conv("resnet50", 128, 128, 56, 3, stride=2),
    _conv("resnet50", 256, 64, 56, 1),
    _conv("resnet50", 128, 128, 28, 3),
    _conv("resnet50", 1024, 256, 14, 1),
    _conv("resnet50", 512, 512, 7, 3),
    # GoogLeNet's Inception 3a on 192x28x28.
    _conv("inception3a", 192, 64, 28, 1),
    _conv("inception3a", 192, 96, 28, 1),
    _conv("inception3a", 96, 128, 28, 3),
    _conv("inception3a", 192, 16, 28, 1),
    _conv("inception3a", 16, 32, 28, 5),
    _conv("inception3a", 192, 32, 28, 5),
    # AlexNet's first layer, LeNet-5's first layer at batch 64.
    _conv("alexnet", 3, 96, 227, 11, stride=4, padding=0),
    _conv("lenet5", 1, 6, 32, 5, padding=0, batch=64),
    # A call's fixed cost: a 1x1 convolution with 16K multiply-adds, well under a microsecond's work.
    _conv("call", 16, 16, 8, 1),
    # Pooling, the residual add.
    _max_pool(64, 224, 2, 2),
    _max_pool(64, 112, 3, 2, padding=1),
    GlobalAvgPool2dCase("pool/global_avg_2048x7x7", c=2048, h=7, w=7),
    AddReluCase("eltwise/add_relu_256x56x56", c=256, h=56, w=56),
    # Fully connected layers at batch 1.
    LinearCase("fc/vgg16_25088-4096", in_features=25088, out_features=4096),
    LinearCase("fc/vgg16_4096-4096", in_features=4096, out_features=4096),
    LinearCase("fc/resnet50_2048-1000", in_features=2048, out_features=1000),
    LinearCase("fc/alexnet_9216-4096xN8", in_features=9216, out_features=4096, batch=8),
    # Non-maximum suppression of clustered detector boxes at IoU 0.5.
    _nms(1000),
    _nms(5000),
    _nms(20000),
    # Whole networks (the models of cnnfast.models, random weights) at batch 1 and 8; LeNet-5 at 64.
    NetworkCase("net/lenet5xN64", network="lenet5", batch=64),
    *(NetworkCase(f"net/{net}xN{b}", network=net, batch=b)
      for net in ("alexnet", "vgg16", "resnet50", "googlenet") for b in (1, 8)),
]


def case_names() -> List[str]:
    return [case.name for case in SUITE]


def select(pattern: Optional[str] = None, suite: Optional[List[Case]] = None) -> List[Case]:
    """The cases whose name contains ``pattern`` as a substring or matches it as a regular expression."""
    suite = SUITE if suite is None else suite
    if not pattern:
        return list(suite)
    try:
        regex = re.compile(pattern)
    except re.error:
        regex = None
    return [c for c in suite if pattern in c.name or (regex is not None and regex.search(c.name))]


def get(name: str) -> Case:
    """The case called ``name``."""
    for case in SUITE:
        if case.name == name:
            return case
    raise KeyError(f"no benchmark case named {name!r}; the cases are: {', '.join(case_names())}")
