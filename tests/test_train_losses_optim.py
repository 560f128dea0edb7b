"""Losses against finite differences and torch; optimizers and schedules against torch.optim."""

import math

import numpy as np
import pytest

from cnnfast import losses, nn, optim
from numpy_reference import numeric_grad


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- losses -------------------------------------------------------------------------------------------


def test_softmax_cross_entropy_value_gradient_and_stability():
    z = rng().standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    loss, grad = losses.softmax_cross_entropy(z, labels)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), labels])), rel=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda: losses.softmax_cross_entropy(z, labels)[0], z), atol=1e-7)
    assert grad.dtype == np.float32 and grad.shape == z.shape
    # Huge logits: no overflow, the loss of a confident right answer is 0, of a confident wrong one large.
    big = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]], np.float32)
    loss, grad = losses.softmax_cross_entropy(big, np.array([0, 2]))
    assert np.isfinite(loss) and loss == pytest.approx(1e4, rel=1e-6) and np.isfinite(grad).all()


def test_loss_errors_are_clear():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        losses.mse(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")


def test_mse_and_bce_gradients():
    pred, target = rng().standard_normal((3, 4)), rng(1).standard_normal((3, 4))
    loss, grad = losses.mse(pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2))
    np.testing.assert_allclose(grad, numeric_grad(lambda: losses.mse(pred, target)[0], pred), atol=1e-7)
    logits, t = rng(2).standard_normal((4, 3)) * 4, rng(3).random((4, 3))
    loss, grad = losses.binary_cross_entropy_with_logits(logits, t)
    s = 1 / (1 + np.exp(-logits))
    assert loss == pytest.approx(-np.mean(t * np.log(s) + (1 - t) * np.log(1 - s)), rel=1e-10)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda: losses.binary_cross_entropy_with_logits(logits, t)[0], logits), atol=1e-7)
    loss, grad = losses.binary_cross_entropy_with_logits(np.array([800.0, -800.0]), np.array([1.0, 1.0]))
    assert loss == pytest.approx(400.0) and np.isfinite(grad).all()


def test_triplet_loss_value_and_gradients():
    a, p, n = (rng(i).standard_normal((6, 5)) for i in range(3))
    margin = 0.5
    loss, grads = losses.triplet(a, p, n, margin)
    hinge = ((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + margin
    assert loss == pytest.approx(np.mean(np.maximum(hinge, 0)))
    assert 0 < np.count_nonzero(hinge > 0) < 6  # both sides of the hinge are exercised
    for arr, g in zip((a, p, n), grads):
        np.testing.assert_allclose(g, numeric_grad(lambda: losses.triplet(a, p, n, margin)[0], arr), atol=1e-7)


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = rng().standard_normal((7, 5)).astype(np.float32)
    labels = rng(1).integers(0, 5, 7)
    tz = torch.from_numpy(z).requires_grad_(True)
    tl = F.cross_entropy(tz, torch.from_numpy(labels))
    tl.backward()
    loss, grad = losses.softmax_cross_entropy(z, labels)
    assert loss == pytest.approx(tl.item(), rel=1e-6)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-5, atol=1e-7)

    t = rng(2).random((7, 5)).astype(np.float32)
    tz.grad = None
    F.binary_cross_entropy_with_logits(tz, torch.from_numpy(t)).backward()
    loss, grad = losses.binary_cross_entropy_with_logits(z, t)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-5, atol=1e-7)
    tz.grad = None
    F.mse_loss(tz, torch.from_numpy(t)).backward()
    np.testing.assert_allclose(losses.mse(z, t)[1], tz.grad.numpy(), rtol=1e-5, atol=1e-7)

    a, p, n = (torch.from_numpy(rng(i).standard_normal((6, 4)).astype(np.float32)).requires_grad_(True)
               for i in range(3))
    tl = torch.clamp(((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 0.3, min=0).mean()
    tl.backward()
    loss, grads = losses.triplet(a.detach().numpy(), p.detach().numpy(), n.detach().numpy(), 0.3)
    assert loss == pytest.approx(tl.item(), rel=1e-5)
    for g, tt in zip(grads, (a, p, n)):
        np.testing.assert_allclose(g, tt.grad.numpy(), rtol=1e-5, atol=1e-6)


# ---- optimizers ---------------------------------------------------------------------------------------


def run_against_torch(make, make_torch, steps=5, frozen_grad_at=None):
    """Apply the same gradients for a few steps with a cnnfast and a torch optimizer; compare the weights."""
    torch = pytest.importorskip("torch")
    w0 = [rng(1).standard_normal((3, 4)).astype(np.float32), rng(2).standard_normal(5).astype(np.float32)]
    params = [nn.Parameter(w.copy()) for w in w0]
    tparams = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    opt, topt = make(params), make_torch(tparams)
    for step in range(steps):
        for i, (p, tp) in enumerate(zip(params, tparams)):
            g = rng(10 * step + i).standard_normal(p.shape).astype(np.float32)
            p.grad = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.05, momentum=0.9),
                                    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
                                    dict(lr=0.05, momentum=0.5, dampening=0.1, weight_decay=1e-3)])
def test_sgd_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    run_against_torch(lambda ps: optim.SGD(ps, **kwargs), lambda ps: torch.optim.SGD(ps, **kwargs))


@pytest.mark.parametrize("cls, kwargs", [("Adam", dict(lr=1e-2)), ("Adam", dict(lr=1e-2, betas=(0.8, 0.99),
                                                                                   weight_decay=1e-2)),
                                         ("AdamW", dict(lr=1e-2, weight_decay=0.1))])
def test_adam_matches_torch(cls, kwargs):
    torch = pytest.importorskip("torch")
    run_against_torch(lambda ps: getattr(optim, cls)(ps, **kwargs),
                      lambda ps: getattr(torch.optim, cls)(ps, **kwargs), steps=6)


def test_optimizer_skips_parameters_without_gradient_and_param_groups():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(a, [0.9, 0.9])
    np.testing.assert_array_equal(b, [1, 1])  # no gradient: untouched
    b.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(b, [0.5, 0.5])
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    with pytest.raises(TypeError, match="iterable of parameters"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)


def test_schedules_match_torch():
    torch = pytest.importorskip("torch")
    for make, make_torch in [
        (lambda o: optim.StepLR(o, step_size=3, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
        (lambda o: optim.CosineAnnealingLR(o, t_max=7, eta_min=0.01),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
    ]:
        opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
        topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched, tsched = make(opt), make_torch(topt)
        for _ in range(7):
            assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
            topt.step()
            sched.step()
            tsched.step()


def test_cosine_schedule_closed_form():
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, t_max=4)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 - math.cos(math.pi / 4)) / 2, 0, 0],
                               atol=1e-12)
