"""Optimizers and learning-rate schedules, with PyTorch's update rules.

>>> opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)  # doctest: +SKIP
>>> sched = optim.CosineAnnealingLR(opt, t_max=epochs)                           # doctest: +SKIP
>>> model.zero_grad(); model.backward(grad); opt.step()                          # doctest: +SKIP

An optimizer updates the parameter arrays in place from their ``.grad``; parameters whose ``grad`` is None
(frozen, or not reached by the backward pass) are left alone. Parameters are held by identity: after
replacing a model's parameters (assigning new arrays, ``load_state_dict``), make a new optimizer.
Parameter groups work as in PyTorch: a list of dicts with ``"params"`` and any option overriding the
defaults, e.g. a lower ``"lr"`` for the layers being fine-tuned.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "Adam", "AdamW", "CosineAnnealingLR", "Optimizer", "StepLR"]


class Optimizer:
    """Base class: ``param_groups`` (a list of dicts, each with ``params`` and options) and per-parameter
    ``state``."""

    def __init__(self, params, defaults: dict):
        if isinstance(params, np.ndarray):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of parameters "
                            "(model.parameters()), not one array")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got no parameters to optimize")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        seen = set()
        for group in groups:
            group = {**self.defaults, **group, "params": list(group["params"])}
            for p in group["params"]:
                if not isinstance(p, np.ndarray) or p.dtype != np.float32:
                    raise TypeError(f"{type(self).__name__}: parameters must be float32 arrays, got "
                                    f"{type(p).__name__} {getattr(p, 'dtype', '')}")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
                seen.add(id(p))
            self._check(group)
            group.setdefault("initial_lr", group["lr"])
            self.param_groups.append(group)

    def _check(self, group: dict) -> None:
        if not group["lr"] >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {group['lr']!r}")
        if not group.get("weight_decay", 0.0) >= 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {group['weight_decay']!r}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter optimized (to None, or to zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                grad = getattr(p, "grad", None)
                if grad is None:
                    continue
                if grad.shape != p.shape:
                    raise ValueError(f"{type(self).__name__}: a gradient of shape {grad.shape} for a parameter of "
                                     f"shape {p.shape}")
                if not p.flags.writeable:
                    raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} is read-only: its layer "
                                     "holds it prepared for inference (eval mode); call model.train() before "
                                     "training it")
                self._update(p, np.asarray(grad, np.float32), group, self.state.setdefault(id(p), {}))

    def _update(self, p, grad, group, state) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (Nesterov too) and L2 weight decay:

        g = grad + weight_decay * p
        buf = g (first step), momentum * buf + (1 - dampening) * g (after)
        p -= lr * (g + momentum * buf if nesterov else buf)
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        if not momentum >= 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _update(self, p, grad, group, state) -> None:
        lr, momentum, wd = np.float32(group["lr"]), group["momentum"], group["weight_decay"]
        if wd:
            grad = grad + np.float32(wd) * p
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(grad, np.float32)
            else:
                buf *= np.float32(momentum)
                buf += np.float32(1.0 - group["dampening"]) * grad
            grad = grad + np.float32(momentum) * buf if group["nesterov"] else buf
        p -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) as torch.optim.Adam: moment estimates with bias correction,

        m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2, as torch.optim.Adam); see
    :class:`AdamW` for the decoupled form.
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"{type(self).__name__}: eps must be >= 0, got {eps!r}")
        super().__init__(params, dict(lr=lr, betas=(float(b1), float(b2)), eps=eps, weight_decay=weight_decay))

    def _update(self, p, grad, group, state) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd and self.decoupled:
            p *= np.float32(1.0 - lr * wd)
        elif wd:
            grad = grad + np.float32(wd) * p
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(np.asarray(p))
            state["exp_avg_sq"] = np.zeros_like(np.asarray(p))
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= np.float32(b1)
        m += np.float32(1 - b1) * grad
        v *= np.float32(b2)
        v += np.float32(1 - b2) * grad * grad
        denom = np.sqrt(v) / np.float32(math.sqrt(1 - b2 ** t))
        denom += np.float32(eps)
        p -= np.float32(lr / (1 - b1 ** t)) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as torch.optim.AdamW: ``p *= 1 - lr *
    weight_decay`` before the Adam step. Default weight_decay 0.01."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


class _Schedule:
    """Sets each group's ``lr`` from its ``initial_lr`` and the epoch count; ``step()`` once per epoch."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.last_epoch = 0
        self._apply()

    def factor(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.factor(self.last_epoch, group["initial_lr"])

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(_Schedule):
    """lr = initial_lr * gamma ** (epoch // step_size), as torch.optim.lr_scheduler.StepLR."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer)

    def factor(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2 (SGDR without restarts;
    the closed form of torch.optim.lr_scheduler.CosineAnnealingLR), held at eta_min after t_max."""

    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0):
        if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1:
            raise ValueError(f"CosineAnnealingLR: t_max must be a positive int, got {t_max!r}")
        self.t_max, self.eta_min = t_max, float(eta_min)
        super().__init__(optimizer)

    def factor(self, epoch: int, base_lr: float) -> float:
        epoch = min(epoch, self.t_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.t_max)) / 2
