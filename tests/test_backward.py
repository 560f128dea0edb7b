"""Gradients: every ISA path against the plain reference kernels, the reference against float64 finite
differences of a NumPy forward, and everything against torch.autograd when PyTorch is installed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core
from numpy_reference import numeric_grad

ISAS = list(_core._supported_isas())


@pytest.fixture(params=ISAS)
def isa(request):
    before = _core._current_isa()
    _core._set_isa(request.param)
    yield request.param
    _core._set_isa(before)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / (1.0 + np.max(np.abs(b))))


# ---- float64 NumPy forwards, for finite differences ---------------------------------------------


def conv_forward64(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    y = np.zeros((n, o, oh, ow))
    ocg = o // groups
    for oc in range(o):
        g = oc // ocg
        for ki in range(kh):
            for kj in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, ki * dil: ki * dil + stride * (oh - 1) + 1: stride,
                           kj * dil: kj * dil + stride * (ow - 1) + 1: stride]
                y[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, ki, kj])
        if b is not None:
            y[:, oc] += b[oc]
    return y


CONV_CASES = [
    # n, c, h, w, o, k, stride, pad, dil, groups
    (1, 2, 5, 4, 3, 3, 1, 1, 1, 1),
    (2, 2, 6, 5, 2, 3, 2, 1, 1, 1),
    (1, 4, 5, 5, 4, 3, 1, 1, 1, 4),
    (1, 4, 7, 7, 8, 3, 2, 2, 2, 2),
    (2, 3, 4, 4, 5, 1, 1, 0, 1, 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_backward_reference_matches_finite_differences(case):
    n, c, h, w, o, k, s, p, d, g = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c // g, k, k))
    b = rng.standard_normal(o)
    y = conv_forward64(x, wt, b, s, p, d, g)
    dy = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(conv_forward64(x, wt, b, s, p, d, g) * dy))

    dx, dw, db = _core.reference.conv2d_backward(dy, x, wt, stride=s, padding=p, dilation=d, groups=g)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-5
    assert rel_err(dw, numeric_grad(loss, wt)) < 1e-5
    assert rel_err(db, numeric_grad(loss, b)) < 1e-5


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 2), cg=st.integers(1, 9), groups=st.sampled_from([1, 2, 3]), mult=st.integers(1, 20),
    h=st.integers(1, 13), w=st.integers(1, 13), k=st.integers(1, 4), stride=st.integers(1, 3),
    pad=st.integers(0, 2), dil=st.integers(1, 2), relu=st.booleans(), seed=st.integers(0, 2**16),
)
def test_conv2d_backward_isa_matches_reference(n, cg, groups, mult, h, w, k, stride, pad, dil, relu, seed):
    c, o = cg * groups, mult * groups
    if h + 2 * pad < dil * (k - 1) + 1 or w + 2 * pad < dil * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, cg, k, k), dtype=np.float32)
    act = "relu" if relu else None
    y = cnnfast.conv2d(x, wt, stride=stride, padding=pad, dilation=dil, groups=groups, activation=act)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups, activation=act, output=y)
    want = _core.reference.conv2d_backward(dy, x, wt, **kw)
    for isa_name in ISAS:
        _core._set_isa(isa_name)
        got = cnnfast.conv2d_backward(dy, x, wt, **kw)
        for gv, wv in zip(got, want):
            assert gv.shape == wv.shape and gv.dtype == np.float32
            assert rel_err(gv, wv) < 2e-5, isa_name


def test_conv2d_backward_large_reduction(isa):
    # K blocked (C*k*k > 256) and the pixel reduction of the weight gradient over several images.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 40, 12, 11), dtype=np.float32)
    wt = rng.standard_normal((20, 40, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((3, 20, 12, 11), dtype=np.float32)
    got = cnnfast.conv2d_backward(dy, x, wt, padding=1)
    want = _core.reference.conv2d_backward(dy, x, wt, padding=1)
    for gv, wv in zip(got, want):
        assert rel_err(gv, wv) < 2e-5


def test_conv2d_backward_only_some_gradients():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 6, 6), dtype=np.float32)
    wt = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((1, 4, 4, 4), dtype=np.float32)
    dx, dw, db = cnnfast.conv2d_backward(dy, x, wt, weight_grad=False, bias_grad=False)
    assert dw is None and db is None and dx.shape == x.shape
    dx, dw, db = cnnfast.conv2d_backward(dy, x, wt, input_grad=False, weight_grad=False)
    assert dx is None and dw is None
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)


def test_conv2d_backward_errors():
    x = np.zeros((1, 3, 6, 6), np.float32)
    wt = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="grad_output"):
        cnnfast.conv2d_backward(np.zeros((1, 4, 5, 5), np.float32), x, wt)
    with pytest.raises(ValueError, match="output"):
        cnnfast.conv2d_backward(np.zeros((1, 4, 4, 4), np.float32), x, wt, activation="relu")
    with pytest.raises(TypeError, match="grad_output"):
        cnnfast.conv2d_backward(np.zeros((1, 4, 4, 4), np.int32), x, wt)


POOL_CASES = [((2, 3, 9, 9), 3, 2, 1, True, True), ((1, 2, 8, 7), 2, 2, 0, False, True),
              ((1, 2, 10, 10), 3, 3, 1, True, False), ((2, 1, 5, 6), (2, 3), (1, 2), (1, 1), False, False)]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_backward_isa_matches_reference(isa, case, kind):
    shape, k, s, p, ceil, cip = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape, dtype=np.float32)
    extra = {} if kind == "max" else {"count_include_pad": cip}
    y = getattr(cnnfast, f"{kind}_pool2d")(x, k, s, p, ceil, **extra)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    got = getattr(cnnfast, f"{kind}_pool2d_backward")(dy, x, k, s, p, ceil, **extra)
    want = getattr(_core.reference, f"{kind}_pool2d_backward")(dy, x, k, s, p, ceil, **extra)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the gradient is the adjoint of the forward: <dy, pool(x + t e)> changes at the rate <dx, e>
    if kind == "avg":
        e = rng.standard_normal(shape, dtype=np.float32)
        lhs = float(np.sum(dy.astype(np.float64) * getattr(_core.reference, "avg_pool2d")(e, k, s, p, ceil, **extra)))
        assert abs(lhs - float(np.sum(got.astype(np.float64) * e))) < 1e-4 * (1 + abs(lhs))


def test_max_pool_backward_routes_to_the_maximum():
    x = np.array([[[[1, 5], [3, 2]]]], np.float32)
    dx = cnnfast.max_pool2d_backward(np.array([[[[7]]]], np.float32), x, 2)
    np.testing.assert_array_equal(dx, [[[[0, 7], [0, 0]]]])


def test_global_avg_pool_backward(isa):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 4), dtype=np.float32)
    dy = rng.standard_normal((2, 5, 1, 1), dtype=np.float32)
    got = cnnfast.global_avg_pool2d_backward(dy, x)
    np.testing.assert_allclose(got, np.broadcast_to(dy / 12, x.shape), rtol=1e-6)


@pytest.mark.parametrize("batch,inp,out", [(1, 5, 3), (4, 300, 17), (9, 50, 70), (33, 7, 1)])
def test_linear_backward(isa, batch, inp, out):
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, inp), dtype=np.float32)
    w = rng.standard_normal((out, inp), dtype=np.float32)
    dy = rng.standard_normal((batch, out), dtype=np.float32)
    dx, dw, db = cnnfast.linear_backward(dy, x, w)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    assert rel_err(dx, dy64 @ w64) < 1e-5
    assert rel_err(dw, dy64.T @ x64) < 1e-5
    assert rel_err(db, dy64.sum(0)) < 1e-5


def test_relu_backward(isa):
    y = np.array([-1.0, 0.0, 2.0, np.nan, 3.0], np.float32)
    dy = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    np.testing.assert_array_equal(cnnfast.relu_backward(dy, y), [0, 0, 3, 0, 5])


# ---- PyTorch as a second opinion ---------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES + [(2, 8, 13, 11, 16, 3, 1, 1, 1, 1), (1, 6, 9, 9, 12, 3, 2, 1, 1, 6)])
def test_conv2d_backward_matches_torch(isa, case):
    torch = pytest.importorskip("torch")
    n, c, h, w, o, k, s, p, d, g = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c // g, k, k), dtype=np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    y = cnnfast.conv2d(x, wt, b, stride=s, padding=p, dilation=d, groups=g, activation="relu")
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    got = cnnfast.conv2d_backward(dy, x, wt, stride=s, padding=p, dilation=d, groups=g, activation="relu", output=y)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, dilation=d, groups=g))
    ty.backward(torch.tensor(dy))
    for gv, tv in zip(got, (tx.grad, tw.grad, tb.grad)):
        assert rel_err(gv, tv.numpy().astype(np.float64)) < 1e-5


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_backward_matches_torch(isa, kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 11, 10), dtype=np.float32)
    y = getattr(cnnfast, f"{kind}_pool2d")(x, 3, 2, 1, True)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    tx = torch.tensor(x, requires_grad=True)
    getattr(torch.nn.functional, f"{kind}_pool2d")(tx, 3, 2, 1, ceil_mode=True).backward(torch.tensor(dy))
    got = getattr(cnnfast, f"{kind}_pool2d_backward")(dy, x, 3, 2, 1, True)
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
