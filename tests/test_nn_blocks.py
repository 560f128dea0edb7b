"""Residual and Inception blocks: against a float64 NumPy computation (always) and PyTorch (when installed)."""

import numpy as np
import pytest

from cnnfast import models, nn
from cnnfast.models.googlenet import INCEPTION_3A
from cnnfast.nn.module import tracing

import nn_reference as ref


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def basic_block_reference(b, x):
    y = ref.conv_bn_relu(x, (b.conv1, b.bn1))
    y = ref.conv_bn_relu(y, (b.conv2, b.bn2), relu_after=False)
    shortcut = x if b.downsample is None else ref.conv_bn_relu(x, tuple(b.downsample), relu_after=False)
    return ref.relu(y + shortcut)


def bottleneck_reference(b, x):
    y = ref.conv_bn_relu(x, (b.conv1, b.bn1))
    y = ref.conv_bn_relu(y, (b.conv2, b.bn2))
    y = ref.conv_bn_relu(y, (b.conv3, b.bn3), relu_after=False)
    shortcut = x if b.downsample is None else ref.conv_bn_relu(x, tuple(b.downsample), relu_after=False)
    return ref.relu(y + shortcut)


def inception_reference(m, x):
    def unit(u, v):
        return ref.conv_bn_relu(v, (u.conv, u.bn))

    b1 = unit(m.branch1, x)
    b2 = unit(m.branch2[1], unit(m.branch2[0], x))
    b3 = unit(m.branch3[1], unit(m.branch3[0], x))
    b4 = unit(m.branch4[1], ref.max_pool2d(x, 3, 1, 1))
    return np.concatenate([b1, b2, b3, b4], axis=1)


def unfused(module, x):
    """The eval-mode forward with every layer run on its own (the path summary() traces)."""
    with tracing(lambda *args: None):
        return module(x)


@pytest.mark.parametrize("cin, c, stride", [(8, 8, 1), (8, 16, 2)])
def test_basic_block_matches_numpy(cin, c, stride):
    block = ref.randomize_batch_norms(nn.BasicBlock(cin, c, stride, rng=0), np.random.default_rng(1))
    assert (block.downsample is not None) == (stride != 1 or cin != c)
    x = rand(2, cin, 9, 9)
    expected = basic_block_reference(block, x)
    ref.assert_close_to_scale(block(x), expected, 1e-5)
    ref.assert_close_to_scale(unfused(block, x), expected, 1e-5)


@pytest.mark.parametrize("cin, c, stride", [(16, 4, 1), (8, 4, 2)])
def test_bottleneck_matches_numpy(cin, c, stride):
    block = ref.randomize_batch_norms(nn.Bottleneck(cin, c, stride, rng=0), np.random.default_rng(1))
    x = rand(2, cin, 8, 8)
    x_before = x.copy()
    ref.assert_close_to_scale(block(x), bottleneck_reference(block, x), 1e-5)
    ref.assert_close_to_scale(unfused(block, x), bottleneck_reference(block, x), 1e-5)
    np.testing.assert_array_equal(x, x_before)  # the shortcut is read, never written


@pytest.mark.parametrize("n", [1, 3])  # each branch writes its channels of the output: contiguous, or a slice
@pytest.mark.parametrize("k", [5, 3])
def test_inception_matches_numpy(n, k):
    m = ref.randomize_batch_norms(nn.Inception(12, 4, 3, 6, 2, 5, 3, branch3_kernel_size=k, rng=0),
                                  np.random.default_rng(1))
    x = rand(n, 12, 7, 6)
    expected = inception_reference(m, x)
    y = m(x)
    assert y.shape == (n, 18, 7, 6)
    ref.assert_close_to_scale(y, expected, 1e-5)
    ref.assert_close_to_scale(unfused(m, x), expected, 1e-5)


def test_block_state_dict_names_follow_torchvision():
    keys = list(nn.BasicBlock(8, 16, 2).state_dict())
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked", "conv2.weight"]
    assert "downsample.0.weight" in keys and "downsample.1.running_var" in keys
    keys = list(nn.Inception(*INCEPTION_3A, rng=0).state_dict())
    for k in ["branch1.conv.weight", "branch1.bn.running_mean", "branch2.0.conv.weight", "branch2.1.bn.weight",
              "branch3.0.conv.weight", "branch3.1.conv.weight", "branch4.1.conv.weight", "branch4.1.bn.bias"]:
        assert k in keys


# -- PyTorch equivalents ----------------------------------------------------------------------------------

def torch_blocks(torch):
    tnn = torch.nn

    class BasicBlock(tnn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, c, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(c)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c)
            self.downsample = None
            if stride != 1 or cin != c:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, c, 1, stride, bias=False), tnn.BatchNorm2d(c))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + identity)

    class Bottleneck(tnn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(cin, c, 1, bias=False), tnn.BatchNorm2d(c)
            self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, stride, 1, bias=False), tnn.BatchNorm2d(c)
            self.conv3, self.bn3 = tnn.Conv2d(c, 4 * c, 1, bias=False), tnn.BatchNorm2d(4 * c)
            self.relu = tnn.ReLU()
            self.downsample = None
            if stride != 1 or cin != 4 * c:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, 4 * c, 1, stride, bias=False), tnn.BatchNorm2d(4 * c))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            return self.relu(self.bn3(self.conv3(y)) + identity)

    class BasicConv2d(tnn.Module):
        def __init__(self, cin, cout, **kwargs):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, bias=False, **kwargs)
            self.bn = tnn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    class Inception(tnn.Module):
        def __init__(self, cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, k):
            super().__init__()
            self.branch1 = BasicConv2d(cin, ch1x1, kernel_size=1)
            self.branch2 = tnn.Sequential(BasicConv2d(cin, ch3x3red, kernel_size=1),
                                          BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
            self.branch3 = tnn.Sequential(BasicConv2d(cin, ch5x5red, kernel_size=1),
                                          BasicConv2d(ch5x5red, ch5x5, kernel_size=k, padding=k // 2))
            self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                          BasicConv2d(cin, pool_proj, kernel_size=1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    return BasicBlock, Bottleneck, Inception


def randomize_torch_batch_norms(torch, module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return module.eval()


@pytest.mark.parametrize("kind, cin, c, stride", [("basic", 16, 16, 1), ("basic", 16, 32, 2),
                                                  ("bottleneck", 64, 16, 1), ("bottleneck", 32, 16, 2)])
def test_residual_blocks_match_torch(kind, cin, c, stride):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    TBasic, TBottleneck, _ = torch_blocks(torch)
    tblock = randomize_torch_batch_norms(torch, (TBasic if kind == "basic" else TBottleneck)(cin, c, stride))
    block = (nn.BasicBlock if kind == "basic" else nn.Bottleneck)(cin, c, stride)
    models.from_torch(tblock, model=block)
    x = rand(2, cin, 14, 14)
    with torch.no_grad():
        expected = tblock(torch.from_numpy(x)).numpy()
    ref.assert_close_to_scale(block(x), expected, 1e-4)


@pytest.mark.parametrize("k", [5, 3])
def test_inception_block_matches_torch(k):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    _, _, TInception = torch_blocks(torch)
    config = INCEPTION_3A
    tblock = randomize_torch_batch_norms(torch, TInception(*config, k))
    block = models.from_torch(tblock, model=nn.Inception(*config, branch3_kernel_size=k))
    x = rand(2, 192, 14, 14)
    with torch.no_grad():
        expected = tblock(torch.from_numpy(x)).numpy()
    ref.assert_close_to_scale(block(x), expected, 1e-4)
