"""Layers against float64 NumPy references (always) and PyTorch (when installed)."""

import itertools

import numpy as np
import pytest

import cnnfast
from cnnfast import nn

import nn_reference as ref


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# -- conv_output_shape ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, f, s, p, d, expected", [
    (224, 11, 4, 2, 1, 55),   # AlexNet conv1
    (224, 7, 2, 3, 1, 112),   # ResNet conv1
    (28, 5, 1, 0, 1, 24),
    (32, 5, 1, 0, 1, 28),     # LeNet C1
    (9, 3, 2, 1, 2, 4),
    (7, 7, 1, 0, 1, 1),
])
def test_conv_output_shape_formula(n, f, s, p, d, expected):
    assert cnnfast.conv_output_shape(n, f, s, p, d) == (expected, expected)


def test_conv_output_shape_agrees_with_the_kernel():
    for h, w, k, s, p, d in itertools.product((9, 25), (7, 33), (1, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        if d * (k - 1) + 1 > min(h, w) + 2 * p:
            continue
        y = cnnfast.conv2d(np.zeros((0, 1, h, w), np.float32), np.zeros((1, 1, k, k), np.float32), stride=s,
                           padding=p, dilation=d)
        assert cnnfast.conv_output_shape((h, w), k, s, p, d) == y.shape[2:]


def test_conv_output_shape_same_valid_ceil_and_errors():
    assert cnnfast.conv_output_shape((13, 17), 5, padding="same") == (13, 17)
    assert cnnfast.conv_output_shape((13, 17), 5, padding="valid") == (9, 13)
    # GoogLeNet's 3x3/2 ceil-mode pools: 112 -> 56, 56 -> 28, 14 -> 7
    assert cnnfast.conv_output_shape(112, 3, 2, ceil_mode=True) == (56, 56)
    assert cnnfast.conv_output_shape(14, 2, 2, ceil_mode=True) == (7, 7)
    y = cnnfast.max_pool2d(np.zeros((0, 1, 112, 112), np.float32), 3, 2, ceil_mode=True)
    assert y.shape[2:] == cnnfast.conv_output_shape(112, 3, 2, ceil_mode=True)
    with pytest.raises(ValueError, match="stride 1"):
        cnnfast.conv_output_shape(10, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="does not fit"):
        cnnfast.conv_output_shape(3, 5)
    with pytest.raises(TypeError):
        cnnfast.conv_output_shape(3.5, 1)


# -- Conv2d ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, stride, padding, dilation, groups, activation", [
    (3, 1, 1, 1, 1, None), (5, 2, 2, 1, 1, "relu"), (3, 1, 2, 2, 2, None), (1, 1, 0, 1, 1, "relu"),
    (3, (2, 1), (1, 0), 1, 4, "relu"),
])
def test_conv2d_layer_matches_reference(k, stride, padding, dilation, groups, activation):
    conv = nn.Conv2d(8, 12, k, stride, padding, dilation, groups, activation=activation, rng=1)
    x = rand(2, 8, 9, 11)
    expected = ref.conv2d(x, conv.weight, conv.bias, stride, padding, dilation, groups)
    if activation:
        expected = ref.relu(expected)
    ref.assert_close_to_scale(conv(x), expected, 1e-5)


def test_conv2d_same_padding_and_argument_checks():
    conv = nn.Conv2d(2, 3, 4, padding="same", bias=False)
    assert conv(rand(1, 2, 7, 6)).shape == (1, 3, 7, 6)
    with pytest.raises(ValueError, match="activation must be None or 'relu'"):
        nn.Conv2d(2, 3, 3, activation="tanh")
    with pytest.raises(ValueError, match="groups=2 must divide"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="stride 1"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, 2.5)


# -- batch norm and its folding ---------------------------------------------------------------------------

def bn_with_statistics(c, seed=0):
    bn = nn.BatchNorm2d(c, eps=1e-3)
    return ref.randomize_batch_norms(nn.Sequential(bn), np.random.default_rng(seed))[0]


def test_batchnorm_eval_matches_reference():
    bn = bn_with_statistics(6)
    x = rand(3, 6, 4, 5)
    ref.assert_close_to_scale(bn(x), ref.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, 1e-3), 1e-6)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("activation", [False, True])
def test_folded_conv_bn_equals_conv_then_explicit_batchnorm(with_bias, activation):
    conv = nn.Conv2d(5, 6, 3, stride=2, padding=1, bias=with_bias, rng=2)
    bn = bn_with_statistics(6, seed=3)
    layers = [conv, bn] + ([nn.ReLU()] if activation else [])
    seq = nn.Sequential(*layers)
    x = rand(2, 5, 11, 9)
    folded = seq(x)  # eval mode: one conv2d call with folded weights
    unfolded = ref.batch_norm(cnnfast.conv2d(x, conv.weight, conv.bias, 2, 1), bn.running_mean, bn.running_var,
                              bn.weight, bn.bias, bn.eps)
    if activation:
        unfolded = ref.relu(unfolded)
    ref.assert_close_to_scale(folded, unfolded, 1e-5)
    # and through conv_bn, writing into a preallocated non-contiguous output
    out = np.zeros((2, 8, 6, 5), np.float32)
    nn.conv_bn(x, conv, bn, relu=activation, out=out[:, 1:7])
    ref.assert_close_to_scale(out[:, 1:7], unfolded, 1e-5)
    assert not out[:, 0].any() and not out[:, 7].any()


def test_fold_is_cached_and_recomputed_on_change():
    conv, bn = nn.Conv2d(3, 4, 3, rng=0), bn_with_statistics(4)
    seq = nn.Sequential(conv, bn)
    x = rand(1, 3, 6, 6)
    seq(x)
    fold = conv._fold
    seq(x)
    assert conv._fold is fold  # reused
    bn.bias = bn.bias + 1
    y = seq(x)
    assert conv._fold is not fold
    ref.assert_close_to_scale(y, ref.conv_bn_relu(x, (conv, bn), relu_after=False), 1e-5)
    seq.train()
    assert conv._fold is None and conv.weight.flags.writeable


def test_batchnorm_training_uses_batch_statistics_and_updates_running_ones():
    bn = nn.BatchNorm2d(3).train()
    x = rand(4, 3, 5, 5) * 2 + 1
    y = bn(x)
    mean, var = x.mean(axis=(0, 2, 3), dtype=np.float64), x.var(axis=(0, 2, 3), dtype=np.float64)
    ref.assert_close_to_scale(y, ref.batch_norm(x, mean, var, 1, 0, 1e-5), 1e-5)
    n = 4 * 25
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    assert bn.num_batches_tracked == 1


# -- the other layers -------------------------------------------------------------------------------------

def test_linear_relu_and_fusion_in_sequential():
    lin = nn.Linear(7, 5, rng=0)
    x = rand(3, 7)
    ref.assert_close_to_scale(lin(x), x.astype(np.float64) @ lin.weight.T + lin.bias, 1e-5)
    seq = nn.Sequential(lin, nn.ReLU())
    ref.assert_close_to_scale(seq(x), ref.relu(x.astype(np.float64) @ lin.weight.T + lin.bias), 1e-5)


def test_pools_flatten_softmax_dropout_identity():
    x = rand(2, 3, 8, 7)
    ref.assert_close_to_scale(nn.MaxPool2d(3, 2, 1)(x), ref.max_pool2d(x, 3, 2, 1), 0)
    expected = x[:, :, :8, :6].reshape(2, 3, 4, 2, 3, 2).mean(axis=(3, 5))
    ref.assert_close_to_scale(nn.AvgPool2d(2)(x), expected, 1e-6)
    assert nn.Flatten()(x).shape == (2, 168)
    assert nn.Flatten()(x[:0]).shape == (0, 168)
    p = nn.Softmax(dim=1)(x)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert p.dtype == np.float32
    assert nn.Dropout(0.5)(x) is x  # eval mode
    assert nn.Identity()(x) is x


def test_dropout_training_zeroes_and_rescales():
    d = nn.Dropout(0.25, rng=0).train()
    x = np.ones((100, 100), np.float32)
    y = d(x)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


@pytest.mark.parametrize("size, out", [((6, 6), (6, 6)), ((12, 8), (3, 4)), ((10, 7), (3, 4)), ((5, 5), (7, 2)),
                                       ((9, 9), (1, 1))])
def test_adaptive_avg_pool_matches_definition(size, out):
    x = rand(2, 3, *size)
    y = nn.AdaptiveAvgPool2d(out)(x)
    h, w = size
    expected = np.empty((2, 3) + out)
    for i in range(out[0]):
        for j in range(out[1]):
            h0, h1 = (i * h) // out[0], -(-((i + 1) * h) // out[0])
            w0, w1 = (j * w) // out[1], -(-((j + 1) * w) // out[1])
            expected[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    ref.assert_close_to_scale(y, expected, 1e-6)


def lrn_loop(x, size, alpha, beta, k):
    x = x.astype(np.float64)
    c = x.shape[1]
    out = np.empty_like(x)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c - 1, i + (size - 1) // 2)
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        out[:, i] = x[:, i] / (k + alpha / size * s) ** beta
    return out


@pytest.mark.parametrize("size", [1, 2, 5, 8])
def test_local_response_norm_matches_definition(size):
    x = rand(2, 7, 4, 3) * 10
    ref.assert_close_to_scale(nn.LocalResponseNorm(size, 1e-2, 0.75, 2.0)(x), lrn_loop(x, size, 1e-2, 0.75, 2.0), 1e-6)


def test_sequential_indexing_and_names():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(3, 4))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[0], nn.Conv2d)
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub.state_dict()) == ["2.weight", "2.bias"]
    assert [type(m).__name__ for m in seq] == ["Conv2d", "ReLU", "Linear"]
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.ReLU(), 3)


def test_init_functions_have_the_papers_variance():
    w = nn.init.he_normal((256, 128, 3, 3), rng=0)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (128 * 9)), rtol=0.02)
    w = nn.init.he_normal((256, 128, 3, 3), rng=0, mode="fan_out")
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (256 * 9)), rtol=0.02)
    w = nn.init.glorot_uniform((300, 200), rng=0)
    a = np.sqrt(6 / 500)
    assert -a <= w.min() and w.max() <= a
    np.testing.assert_allclose(w.var(), a * a / 3, rtol=0.02)


# -- PyTorch as a second opinion --------------------------------------------------------------------------

def test_layers_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(2, 6, 10, 7) * 3
    t = torch.from_numpy(x)
    ref.assert_close_to_scale(nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x),
                              torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(t).numpy(), 1e-5)
    ref.assert_close_to_scale(nn.LocalResponseNorm(4)(x), torch.nn.LocalResponseNorm(4)(t).numpy(), 1e-5)
    for out in [(3, 4), (4, 3), (6, 6), (1, 1), (7, 5)]:
        ref.assert_close_to_scale(nn.AdaptiveAvgPool2d(out)(x), F.adaptive_avg_pool2d(t, out).numpy(), 1e-6)
    tbn = torch.nn.BatchNorm2d(6).train()
    bn = nn.BatchNorm2d(6).train()
    for _ in range(2):
        ref.assert_close_to_scale(bn(x), tbn(t).detach().numpy(), 1e-5)
    for name, value in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[name], value.numpy(), rtol=1e-5, atol=1e-6)
