"""Loss functions: each returns ``(loss, gradient)``, the loss a Python float averaged over the batch and the
gradient (float32) with respect to the first argument(s), ready for ``model.backward``.

>>> logits = model(x)                                        # doctest: +SKIP
>>> loss, grad = losses.softmax_cross_entropy(logits, labels)  # doctest: +SKIP
>>> model.backward(grad)                                     # doctest: +SKIP

The arithmetic is float64 inside; gradients come back as float32 arrays of the input's shape.
"""

from __future__ import annotations

import numpy as np

__all__ = ["binary_cross_entropy_with_logits", "get", "mse", "softmax_cross_entropy", "triplet"]


def _float_array(x, fn: str, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise TypeError(f"{fn}(): {name} must be a real array, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def _same_shape(fn: str, a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{fn}(): {names} must have the same shape, got {a.shape} and {b.shape}")


def softmax_cross_entropy(logits, labels) -> tuple[float, np.ndarray]:
    """Mean over the batch of -log softmax(logits)[label], fused with the softmax and computed stably
    (log-sum-exp with the maximum subtracted), as torch.nn.functional.cross_entropy.

    ``logits`` (N, C) raw scores; ``labels`` (N,) integer classes in [0, C). Gradient: (softmax - one_hot) / N.
    """
    fn = "softmax_cross_entropy"
    z = _float_array(logits, fn, "logits")
    labels = np.asarray(labels)
    if z.ndim != 2:
        raise ValueError(f"{fn}(): logits must be (N, classes), got shape {z.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{fn}(): labels must be integer class indices, got dtype {labels.dtype}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"{fn}(): labels must have shape ({z.shape[0]},) for logits {z.shape}, got {labels.shape}")
    n, c = z.shape
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"{fn}(): labels must be in [0, {c}), got values from {labels.min()} to {labels.max()}")
    if n == 0:
        return 0.0, np.zeros(z.shape, np.float32)
    shifted = z - z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(n)
    loss = float(np.mean(log_sum - shifted[rows, labels]))
    grad = np.exp(shifted - log_sum[:, None])
    grad[rows, labels] -= 1.0
    grad /= n
    return loss, grad.astype(np.float32)


def mse(prediction, target) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements, mean((prediction - target)^2); gradient 2 (prediction - target) / size."""
    fn = "mse"
    p, t = _float_array(prediction, fn, "prediction"), _float_array(target, fn, "target")
    _same_shape(fn, p, t, "prediction and target")
    if p.size == 0:
        return 0.0, np.zeros(p.shape, np.float32)
    d = p - t
    return float(np.mean(d * d)), (2.0 / p.size * d).astype(np.float32)


def binary_cross_entropy_with_logits(logits, targets) -> tuple[float, np.ndarray]:
    """Mean over all elements of -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], computed stably as
    max(x, 0) - x t + log(1 + exp(-|x|)); ``targets`` in [0, 1]. Gradient (sigmoid(x) - t) / size."""
    fn = "binary_cross_entropy_with_logits"
    x, t = _float_array(logits, fn, "logits"), _float_array(targets, fn, "targets")
    _same_shape(fn, x, t, "logits and targets")
    if x.size == 0:
        return 0.0, np.zeros(x.shape, np.float32)
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    # sigmoid without overflow: exp(-|x|) is at most 1.
    e = np.exp(-np.abs(x))
    sigmoid = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return float(np.mean(loss)), ((sigmoid - t) / x.size).astype(np.float32)


def triplet(anchor, positive, negative, margin: float = 0.2):
    """The triplet loss of FaceNet (Schroff et al., 2015), averaged over the batch:

        L = mean(max(||a - p||^2 - ||a - n||^2 + margin, 0))

    on embeddings (N, D). Returns ``(loss, (grad_anchor, grad_positive, grad_negative))``. To train one
    network on all three, run it once on ``np.concatenate([a, p, n])`` and pass the concatenated gradients
    to ``backward``.
    """
    fn = "triplet"
    a, p, n = (_float_array(v, fn, name) for v, name in ((anchor, "anchor"), (positive, "positive"),
                                                         (negative, "negative")))
    _same_shape(fn, a, p, "anchor and positive")
    _same_shape(fn, a, n, "anchor and negative")
    if a.ndim != 2:
        raise ValueError(f"{fn}(): embeddings must be (N, D), got shape {a.shape}")
    if a.shape[0] == 0:
        z = np.zeros(a.shape, np.float32)
        return 0.0, (z, z.copy(), z.copy())
    d_ap, d_an = a - p, a - n
    hinge = np.sum(d_ap * d_ap, axis=1) - np.sum(d_an * d_an, axis=1) + margin
    active = (hinge > 0).astype(np.float64)[:, None] * (2.0 / a.shape[0])
    grads = (active * (n - p), -active * d_ap, active * d_an)
    return float(np.mean(np.maximum(hinge, 0))), tuple(g.astype(np.float32) for g in grads)


_BY_NAME = {
    "cross_entropy": softmax_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
    "mse": mse,
    "bce_with_logits": binary_cross_entropy_with_logits,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
}


def get(loss):
    """A loss function from its name ('cross_entropy', 'mse', 'bce_with_logits'), or ``loss`` itself if it
    is callable: ``loss(outputs, targets) -> (loss, grad)``."""
    if callable(loss):
        return loss
    if loss not in _BY_NAME:
        raise ValueError(f"unknown loss {loss!r}: pass a callable (outputs, targets) -> (loss, grad) or one of "
                         f"{sorted(_BY_NAME)}")
    return _BY_NAME[loss]
