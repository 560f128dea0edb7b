"""Backward passes of the layers, blocks and models: against float64 finite differences of NumPy forwards,
and against torch.autograd when PyTorch is installed."""

from collections import OrderedDict

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import cnnfast
import nn_reference as ref
from numpy_reference import numeric_grad
from test_models import torch_lenet5 as torch_lenet  # LeNet-5 in torch, as the forward-parity tests define it
from cnnfast import models, nn


def rel_err(a, b, floor=1e-2):
    """max |a - b| relative to max |b| (at least ``floor``: a gradient that is zero in exact arithmetic comes
    out of float32 as rounding noise)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(floor, np.max(np.abs(b)))) if b.size else 0.0


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- float64 forwards, the specification for finite differences -----------------------------------------


def avg_pool64(x, k, s, p, count_include_pad):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ones = np.pad(np.ones(x.shape[2:]), p)
    sums = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s].sum(axis=(-2, -1))
    if count_include_pad:
        return sums / (k * k)
    return sums / sliding_window_view(ones, (k, k))[::s, ::s].sum(axis=(-2, -1))


def adaptive_avg_pool64(x, oh, ow):
    n, c, h, w = x.shape
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def batch_norm_train64(x, gamma, beta, eps):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)


def lrn64(x, size, alpha, beta, k):
    c = x.shape[1]
    out = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        s = np.sum(x[:, lo:hi + 1] ** 2, axis=1)
        out[:, ch] = x[:, ch] / (k + alpha / size * s) ** beta
    return out


def softmax64(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def check_finite_differences(layer, x, forward64, tol=1e-4, seed=1):
    """Run ``layer`` forward (training mode) and backward on ``x``, and compare the input and parameter
    gradients with central differences of ``forward64(x64, params64)`` (params by name)."""
    layer.train()
    y = layer(x)
    dy = rand(*np.shape(y), seed=seed)
    layer.zero_grad()
    dx = layer.backward(dy)
    x64 = x.astype(np.float64)
    params = {k: np.array(p, np.float64) for k, p in layer.named_parameters()}
    np.testing.assert_allclose(y, forward64(x64, params), rtol=1e-4, atol=1e-4 * (1 + np.abs(y).max()))

    def loss():
        return float(np.sum(forward64(x64, params) * dy))

    assert rel_err(dx, numeric_grad(loss, x64)) < tol, "input gradient"
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert rel_err(p.grad, numeric_grad(loss, params[name])) < tol, name


# ---- each layer against finite differences -----------------------------------------------------------


@pytest.mark.parametrize("kwargs", [dict(stride=1, padding=1), dict(stride=2, padding=1, activation="relu"),
                                    dict(padding=2, dilation=2, groups=2), dict(padding="same"),
                                    dict(kernel_size=1, bias=False)])
def test_conv2d_backward_finite_differences(kwargs):
    kwargs = dict(kwargs)
    k = kwargs.pop("kernel_size", 3)
    conv = nn.Conv2d(4, 6, k, rng=0, **kwargs)
    x = rand(2, 4, 7, 6)

    def forward64(x, p):
        pad = conv.padding if conv.padding != "same" else (1, 1)
        y = ref.conv2d(x, p["weight"], p.get("bias"), conv.stride, pad, conv.dilation, conv.groups)
        return ref.relu(y) if conv.activation else y

    check_finite_differences(conv, x, forward64)


@pytest.mark.parametrize("activation", [None, "relu"])
def test_linear_backward_finite_differences(activation):
    lin = nn.Linear(7, 5, activation=activation, rng=0)

    def forward64(x, p):
        y = x @ p["weight"].T + p["bias"]
        return ref.relu(y) if activation else y

    check_finite_differences(lin, rand(3, 7), forward64)


def test_batch_norm_train_backward_finite_differences():
    bn = nn.BatchNorm2d(3)
    bn.weight, bn.bias = np.array([0.5, 1.5, -1.0]), np.array([0.1, -0.2, 0.3])
    check_finite_differences(bn, rand(4, 3, 3, 2) * 2 + 1, lambda x, p: batch_norm_train64(x, p["weight"], p["bias"],
                                                                                          bn.eps), tol=2e-4)


def test_batch_norm_eval_backward_inside_enable_grad():
    bn = nn.BatchNorm2d(3)
    bn.weight, bn.bias = np.array([0.5, 1.5, -1.0]), np.array([0.1, -0.2, 0.3])
    bn.running_mean, bn.running_var = np.array([0.2, -0.1, 0.0]), np.array([0.5, 2.0, 1.0])
    x = rand(2, 3, 3, 3)
    with nn.enable_grad():
        y = bn(x)
    dy = rand(*y.shape, seed=1)
    dx = bn.backward(dy)
    scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(dx, dy * scale.reshape(1, -1, 1, 1), rtol=1e-6)
    x_hat = (x - bn.running_mean.reshape(1, -1, 1, 1)) / np.sqrt(bn.running_var + bn.eps).reshape(1, -1, 1, 1)
    np.testing.assert_allclose(bn.weight.grad, (dy * x_hat).sum(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.bias.grad, dy.sum(axis=(0, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_backward_finite_differences(k, s, p):
    pool = nn.MaxPool2d(k, s, p)
    check_finite_differences(pool, rand(2, 3, 7, 7), lambda x, _: ref.max_pool2d(x, k, s, p))


@pytest.mark.parametrize("k, s, p, cip", [(2, 2, 0, True), (3, 2, 1, True), (3, 2, 1, False)])
def test_avg_pool_backward_finite_differences(k, s, p, cip):
    pool = nn.AvgPool2d(k, s, p, count_include_pad=cip)
    check_finite_differences(pool, rand(2, 3, 7, 7), lambda x, _: avg_pool64(x, k, s, p, cip))


@pytest.mark.parametrize("out, size", [(1, 5), (2, 6), (3, 7), (7, 7), ((2, 3), (5, 7))])
def test_adaptive_avg_pool_backward_finite_differences(out, size):
    pool = nn.AdaptiveAvgPool2d(out)
    hw = size if isinstance(size, tuple) else (size, size)
    check_finite_differences(pool, rand(2, 3, *hw), lambda x, _: adaptive_avg_pool64(x, *pool.output_size))


def test_activations_softmax_flatten_finite_differences():
    check_finite_differences(nn.ReLU(), rand(2, 3, 4, 4), lambda x, _: ref.relu(x))
    check_finite_differences(nn.Tanh(), rand(2, 3, 4), lambda x, _: np.tanh(x))
    check_finite_differences(nn.Softmax(dim=1), rand(3, 5, 2), lambda x, _: softmax64(x, 1))
    check_finite_differences(nn.Flatten(), rand(2, 3, 2, 2), lambda x, _: x.reshape(2, -1))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_local_response_norm_backward_finite_differences(size):
    lrn = nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0)
    check_finite_differences(lrn, rand(2, 6, 3, 3), lambda x, _: lrn64(x, size, 0.5, 0.75, 2.0))


def test_dropout_backward_uses_the_forward_mask():
    drop = nn.Dropout(0.4, rng=0).train()
    x = np.abs(rand(4, 50)) + 0.1
    y = drop(x)
    dy = rand(4, 50, seed=1)
    dx = drop.backward(dy)
    np.testing.assert_allclose(dx, dy * (y / x), rtol=1e-6)
    assert 0.3 < np.mean(y == 0) < 0.5
    drop.eval()
    with nn.enable_grad():
        assert drop(x) is x
    assert drop.backward(dy) is dy


def test_sequential_backward_finite_differences():
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=0), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(12, 4, rng=1), nn.Tanh())

    def forward64(x, p):
        y = ref.conv2d(x, p["0.weight"], p["0.bias"], 1, 1)
        y = ref.relu(batch_norm_train64(y, p["1.weight"], p["1.bias"], 1e-5))
        y = ref.max_pool2d(y, 2, 2).reshape(x.shape[0], -1)
        return np.tanh(y @ p["5.weight"].T + p["5.bias"])

    check_finite_differences(seq, rand(3, 2, 4, 4), forward64, tol=2e-4)


def test_basic_block_backward_finite_differences():
    block = nn.BasicBlock(2, 3, stride=2, rng=0)

    def forward64(x, p):
        def bn(y, name):
            return batch_norm_train64(y, p[f"{name}.weight"], p[f"{name}.bias"], 1e-5)

        y = ref.relu(bn(ref.conv2d(x, p["conv1.weight"], None, 2, 1), "bn1"))
        y = bn(ref.conv2d(y, p["conv2.weight"], None, 1, 1), "bn2")
        shortcut = bn(ref.conv2d(x, p["downsample.0.weight"], None, 2, 0), "downsample.1")
        return ref.relu(y + shortcut)

    check_finite_differences(block, rand(3, 2, 5, 5), forward64, tol=3e-4)


# ---- gradients and parameters: accumulation, freezing, errors ------------------------------------------


def test_gradients_accumulate_until_zero_grad():
    lin = nn.Linear(4, 3, rng=0).train()
    x, dy = rand(5, 4), rand(5, 3, seed=1)
    lin(x)
    lin.backward(dy)
    first = lin.weight.grad.copy()
    lin(x)
    lin.backward(dy)
    np.testing.assert_allclose(lin.weight.grad, 2 * first, rtol=1e-6)
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None
    lin(x)
    lin.backward(dy)
    lin.zero_grad(set_to_none=False)
    assert np.all(lin.weight.grad == 0)


def test_frozen_parameters_get_no_gradient_and_no_kernel_work(monkeypatch):
    from cnnfast.nn import layers

    calls = []
    real = layers._core.conv2d_backward

    def spy(*args):
        calls.append(args[-3:])  # input_grad, weight_grad, bias_grad
        return real(*args)

    monkeypatch.setattr(layers._core, "conv2d_backward", spy)
    net = models.lenet5(rng=0).train()
    net.c1.weight.requires_grad = False
    net.c3.requires_grad_(False)
    y = net(rand(2, 1, 32, 32))
    net.backward(rand(*y.shape, seed=1), input_grad=False)
    assert net.c1.weight.grad is None and net.c1.bias.grad is not None
    assert net.c3.weight.grad is None and net.c3.bias.grad is None
    assert net.c5.weight.grad is not None
    # c5: all; c3: input gradient only (c1 below still learns its bias); c1: bias only.
    assert calls == [(True, True, True), (True, False, False), (False, False, True)]


def test_backward_stops_below_the_last_trainable_layer(monkeypatch):
    from cnnfast.nn import layers

    calls = []
    real = layers._core.conv2d_backward
    monkeypatch.setattr(layers._core, "conv2d_backward", lambda *a: calls.append(1) or real(*a))
    net = models.lenet5(rng=0).train()
    net.requires_grad_(False)
    net.output.requires_grad_(True)
    y = net(rand(2, 1, 32, 32))
    assert net.backward(rand(*y.shape), input_grad=False) is None
    assert calls == [] and net.output.weight.grad is not None and net.f6.weight.grad is None
    y = net(rand(2, 1, 32, 32))
    assert net.backward(rand(*y.shape)).shape == (2, 1, 32, 32)  # the input's gradient, still available
    assert len(calls) == 3


def test_frozen_state_survives_load_state_dict():
    net = models.lenet5(rng=0)
    net.c1.requires_grad_(False)
    net.load_state_dict(models.lenet5(rng=1).state_dict())
    assert not net.c1.weight.requires_grad and net.c3.weight.requires_grad
    assert isinstance(net.c1.weight, nn.Parameter)


def test_parameter_arithmetic_gives_plain_arrays():
    lin = nn.Linear(3, 2, rng=0)
    w = lin.weight
    assert type(w * 2) is np.ndarray and type(w @ np.ones(3)) is np.ndarray and type(w.sum()) is not nn.Parameter
    before = w.copy()
    w -= np.float32(1.0)  # in place keeps the parameter
    assert lin.weight is w and isinstance(w, nn.Parameter)
    np.testing.assert_allclose(w, before - 1)
    assert "requires_grad=False" in repr(nn.Parameter(np.zeros(2), requires_grad=False))


def test_backward_without_forward_is_a_clear_error():
    net = models.lenet5(rng=0)
    net(rand(1, 1, 32, 32))  # eval mode: nothing recorded
    with pytest.raises(RuntimeError, match="no forward pass to go back through"):
        net.backward(np.zeros((1, 10), np.float32))
    net.train()
    net(rand(1, 1, 32, 32))
    net.backward(np.zeros((1, 10), np.float32))
    with pytest.raises(RuntimeError, match="once per forward"):
        net.backward(np.zeros((1, 10), np.float32))


def test_no_grad_records_nothing_in_training_mode():
    lin = nn.Linear(3, 2, rng=0).train()
    with nn.no_grad():
        lin(rand(1, 3))
    with pytest.raises(RuntimeError):
        lin.backward(np.zeros((1, 2), np.float32))


def test_train_mode_batch_norm_updates_running_statistics_like_torch():
    torch = pytest.importorskip("torch")
    bn, tbn = nn.BatchNorm2d(3, momentum=0.2).train(), torch.nn.BatchNorm2d(3, momentum=0.2).train()
    for seed in range(3):
        x = rand(4, 3, 5, 5, seed=seed) * 3 + 1
        bn(x)
        tbn(torch.from_numpy(x))
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 3


# ---- against torch.autograd ---------------------------------------------------------------------------


def torch_check(torch, module, tmodule, x, tol=1e-5, seed=1, train=True, double=False, l2_tol=None):
    """Forward and backward through a cnnfast module and a torch module with the same weights; compare the
    outputs, the input gradients and every parameter gradient (by state dict name). ``double`` runs torch
    in float64, for networks whose batch norms see few values and so magnify float32 rounding.
    ``l2_tol``: compare gradients by relative L2 error instead, for deep networks: a ReLU whose input lies
    within float32 rounding of zero can switch sides between float32 and float64, which changes a few
    gradient elements entirely (and, through a training-mode batch norm, a whole channel slightly)."""
    tmodule.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()})
    if double:
        tmodule.double()
    module.train(train)
    tmodule.train(train)
    if train:
        y = module(x)
    else:
        with nn.enable_grad():
            y = module(x)
    tx = torch.from_numpy(x.astype(np.float64) if double else x.copy()).requires_grad_(True)
    ty = tmodule(tx)
    assert rel_err(y, ty.detach().numpy()) < tol
    dy = rand(*y.shape, seed=seed)
    module.zero_grad()
    dx = module.backward(dy)
    ty.backward(torch.from_numpy(dy).to(tx.dtype))
    def close(a, b):
        if l2_tol is None:
            return rel_err(a, b) < tol
        b = np.asarray(b, np.float64)
        return np.linalg.norm(a - b) <= l2_tol * np.linalg.norm(b)

    assert close(dx, tx.grad.numpy()), "input gradient"
    tparams = dict(tmodule.named_parameters())
    for name, p in module.named_parameters():
        assert close(p.grad, tparams[name].grad.numpy()), name
    tbuffers = dict(tmodule.named_buffers())
    for name, b in module.named_buffers():
        assert rel_err(b, tbuffers[name].numpy()) < tol, name


@pytest.mark.parametrize("layer", ["conv", "conv_relu", "conv_groups", "linear", "bn", "maxpool", "avgpool",
                                   "adaptive", "lrn", "softmax", "tanh"])
def test_layer_backward_matches_torch(layer):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    x = rand(3, 4, 9, 8)
    if layer == "conv":
        m, t = nn.Conv2d(4, 6, 3, stride=2, padding=1, rng=0), tnn.Conv2d(4, 6, 3, stride=2, padding=1)
    elif layer == "conv_relu":
        m = nn.Conv2d(4, 6, 3, padding=2, dilation=2, activation="relu", rng=0)
        t = tnn.Sequential()
        t.add_module("conv", tnn.Conv2d(4, 6, 3, padding=2, dilation=2))
        t.add_module("relu", tnn.ReLU())
        m = nn.Sequential(OrderedDict(conv=m))
    elif layer == "conv_groups":
        m, t = nn.Conv2d(4, 8, 3, groups=4, bias=False, rng=0), tnn.Conv2d(4, 8, 3, groups=4, bias=False)
    elif layer == "linear":
        x = rand(5, 11)
        m, t = nn.Linear(11, 7, rng=0), tnn.Linear(11, 7)
    elif layer == "bn":
        m, t = nn.BatchNorm2d(4), tnn.BatchNorm2d(4)
        x = x * 2 + 0.5
    elif layer == "maxpool":
        m, t = nn.MaxPool2d(3, 2, 1, ceil_mode=True), tnn.MaxPool2d(3, 2, 1, ceil_mode=True)
    elif layer == "avgpool":
        m, t = nn.AvgPool2d(3, 2, 1, count_include_pad=False), tnn.AvgPool2d(3, 2, 1, count_include_pad=False)
    elif layer == "adaptive":
        m, t = nn.AdaptiveAvgPool2d((4, 3)), tnn.AdaptiveAvgPool2d((4, 3))
    elif layer == "lrn":
        m, t = nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=2.0), tnn.LocalResponseNorm(3, 0.1, 0.75, 2.0)
    elif layer == "softmax":
        m, t = nn.Softmax(dim=1), tnn.Softmax(dim=1)
    else:
        m, t = nn.Tanh(), tnn.Tanh()
    torch_check(torch, m, t, x)


@pytest.mark.parametrize("activation, pooling", [("relu", "max"), ("tanh", "avg")])
def test_lenet5_gradients_match_torch(activation, pooling):
    torch = pytest.importorskip("torch")
    net = models.lenet5(activation=activation, pooling=pooling, rng=0)
    for m in net.modules():  # non-zero biases
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.bias = rand(*m.bias.shape, seed=3) * 0.1
    torch_check(torch, net, torch_lenet(torch, activation, pooling), rand(4, 1, 32, 32))


def torch_resnet(torch, block, layers, num_classes):
    from test_nn_blocks import torch_blocks

    tnn = torch.nn
    TBasic, TBottleneck, _ = torch_blocks(torch)
    tblock, expansion = (TBasic, 1) if block == "basic" else (TBottleneck, 4)

    class ResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (width, count) in enumerate(zip((64, 128, 256, 512), layers)):
                blocks = []
                for j in range(count):
                    blocks.append(tblock(cin, width, 2 if (i > 0 and j == 0) else 1))
                    cin = width * expansion
                setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


@pytest.mark.parametrize("train", [True, False])
def test_tiny_resnet_gradients_match_torch(train):
    # Train mode: batch statistics and their gradient. Eval mode inside enable_grad: running statistics,
    # unfused (the gradient with respect to the input of a trained network).
    torch = pytest.importorskip("torch")
    net = models.ResNet(nn.BasicBlock, (1, 1, 1, 1), num_classes=5, rng=0)
    ref.randomize_batch_norms(net, np.random.default_rng(0))
    for m in net.modules():  # the exact path: Winograd's rounding would flip a few ReLU masks at tol 1e-4
        if isinstance(m, nn.Conv2d):
            m.algorithm = "direct"
    torch_check(torch, net, torch_resnet(torch, "basic", (1, 1, 1, 1), 5), rand(4, 3, 64, 64), tol=1e-4,
                train=train, double=True, l2_tol=2e-2)  # strict per-layer checks are above


def test_bottleneck_and_inception_gradients_match_torch():
    torch = pytest.importorskip("torch")
    from test_nn_blocks import torch_blocks

    _, TBottleneck, TInception = torch_blocks(torch)
    block = nn.Bottleneck(16, 8, stride=2, rng=0)
    torch_check(torch, block, TBottleneck(16, 8, 2), rand(2, 16, 9, 9), tol=1e-4)
    config = (24, 8, 6, 8, 4, 6, 4)
    inception = nn.Inception(*config, branch3_kernel_size=5, rng=0)
    torch_check(torch, inception, TInception(*config, 5), rand(2, 24, 7, 7), tol=1e-4)


def test_vgg_style_input_gradient_in_eval_mode_matches_torch():
    # What style transfer does: the gradient of a feature map with respect to the image, model frozen.
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=0), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, rng=1),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
    ref.randomize_batch_norms(seq, np.random.default_rng(1))
    seq.requires_grad_(False)
    tseq = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), tnn.Conv2d(8, 8, 3, padding=1),
                          tnn.BatchNorm2d(8), tnn.ReLU(), tnn.MaxPool2d(2))
    tseq.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in seq.state_dict().items()})
    tseq.eval()
    x = rand(1, 3, 12, 12)
    with nn.enable_grad():
        y = seq(x)
    np.testing.assert_allclose(y, seq(x), rtol=1e-5, atol=1e-5)  # same as the fused eval forward
    dy = rand(*y.shape, seed=2)
    dx = seq.backward(dy)
    assert all(p.grad is None for p in seq.parameters())
    tx = torch.from_numpy(x).requires_grad_(True)
    tseq(tx).backward(torch.from_numpy(dy))
    assert rel_err(dx, tx.grad.numpy()) < 1e-5


def test_every_model_runs_backward():
    # Shapes only, at small sizes: every model's backward reaches the input and every parameter.
    cases = [(models.lenet5(rng=0), (2, 1, 32, 32)),
             (models.ResNet(nn.Bottleneck, (1, 1, 1, 1), num_classes=3, rng=0), (2, 3, 32, 32)),
             (models.alexnet(num_classes=3, local_response_norm=True, rng=0), (1, 3, 63, 63)),
             (models.googlenet(num_classes=3, transform_input=True, rng=0), (2, 3, 32, 32))]
    for net, shape in cases:
        net.train()
        y = net(rand(*shape))
        dx = net.backward(rand(*y.shape, seed=1))
        assert dx.shape == shape and dx.dtype == np.float32 and np.isfinite(dx).all(), type(net).__name__
        missing = [k for k, p in net.named_parameters() if p.grad is None or p.grad.shape != p.shape]
        assert missing == [], (type(net).__name__, missing)


def test_eval_after_training_folds_the_trained_weights():
    # Training runs unfused and updates weights in place; the next eval forward folds the new values.
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=0), nn.BatchNorm2d(3), nn.ReLU())
    x = rand(4, 2, 5, 5)
    before = seq(x)  # eval: folded, the weights read-only meanwhile
    opt = cnnfast.optim.SGD(seq.parameters(), lr=0.5)
    seq.train()
    y = seq(x)
    seq.backward(rand(*y.shape, seed=1))
    opt.step()
    seq.eval()
    after = seq(x)
    conv, bn = seq[0], seq[1]
    expected = ref.relu(ref.batch_norm(ref.conv2d(x, conv.weight, conv.bias, 1, 1), bn.running_mean, bn.running_var,
                                       bn.weight, bn.bias, bn.eps))
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(after, before)
