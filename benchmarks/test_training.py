"""One training step (forward, loss, backward, SGD update) of LeNet-5 at batch 64 and ResNet-18 at batch 16
on 3x64x64 images: cnnfast beside PyTorch on the same number of threads.

    pip install torch==2.13.0        # optional: the PyTorch side is skipped without it
    python -m pytest benchmarks/test_training.py --benchmark-group-by=group

Each pair shares a group; the PyTorch benchmark records cnnfast's time over PyTorch's as ``extra_info``
(``ratio`` > 1: cnnfast slower). The threads are cnnfast's current setting (``OMP_NUM_THREADS`` or
``cnnfast.set_num_threads``), given to PyTorch too.
"""

import numpy as np
import pytest

import cnnfast
from cnnfast import losses, models, optim

CASES = {
    # name: (cnnfast model, input shape, classes)
    "lenet5-b64": (lambda: models.lenet5(num_classes=10, rng=0), (64, 1, 32, 32), 10),
    "resnet18-b16-64px": (lambda: models.resnet18(num_classes=10, rng=0), (16, 3, 64, 64), 10),
}
ROUNDS = {"lenet5-b64": 50, "resnet18-b16-64px": 5}
_means: dict = {}


def batch(name):
    _, shape, classes = CASES[name]
    rng = np.random.default_rng(0)
    return rng.standard_normal(shape, dtype=np.float32), rng.integers(0, classes, shape[0])


def torch_model(torch, name):
    tnn = torch.nn
    if name.startswith("lenet5"):
        return tnn.Sequential(tnn.Conv2d(1, 6, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(),
                              tnn.MaxPool2d(2), tnn.Conv2d(16, 120, 5), tnn.ReLU(), tnn.Flatten(),
                              tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    try:
        import torchvision

        return torchvision.models.resnet18(num_classes=10)
    except ImportError:
        pass

    class Block(tnn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(cin, c, 3, stride, 1, bias=False), tnn.BatchNorm2d(c)
            self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False), tnn.BatchNorm2d(c)
            self.downsample = None
            if stride != 1 or cin != c:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, c, 1, stride, bias=False), tnn.BatchNorm2d(c))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    layers, cin = [tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)], 64
    for i, width in enumerate((64, 128, 256, 512)):
        layers += [Block(cin, width, 1 if i == 0 else 2), Block(width, width, 1)]
        cin = width
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(512, 10))


@pytest.mark.parametrize("name", list(CASES))
def test_train_step_cnnfast(benchmark, name):
    model = CASES[name][0]().train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = batch(name)

    def step():
        out = model(x)
        _, grad = losses.softmax_cross_entropy(out, y)
        model.zero_grad()
        model.backward(grad, input_grad=False)
        opt.step()

    benchmark.group = name
    benchmark.extra_info["threads"] = cnnfast.get_num_threads()
    benchmark.pedantic(step, rounds=ROUNDS[name], warmup_rounds=1)
    if benchmark.stats is not None:
        _means[name] = benchmark.stats.stats.mean


@pytest.mark.parametrize("name", list(CASES))
def test_train_step_torch(benchmark, name):
    torch = pytest.importorskip("torch")
    threads = cnnfast.get_num_threads()
    torch.set_num_threads(threads)
    model = torch_model(torch, name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = (torch.from_numpy(a) for a in batch(name))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    benchmark.group = name
    benchmark.extra_info["threads"] = threads
    benchmark.pedantic(step, rounds=ROUNDS[name], warmup_rounds=1)
    if benchmark.stats is not None and name in _means:
        ratio = _means[name] / benchmark.stats.stats.mean
        benchmark.extra_info["ratio"] = round(ratio, 3)
        print(f"\n{name}: cnnfast / PyTorch time = {ratio:.2f} on {threads} thread(s)")
