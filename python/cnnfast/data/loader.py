"""Batches of (x, y) arrays, shuffled with a seed, optionally augmented."""

from __future__ import annotations

import math

import numpy as np


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` pairs of ``batch_size`` samples taken from arrays ``x`` and ``y``
    (the first axis indexes samples; ``y`` may be None, then batches are ``(x_batch, None)``).

    ``shuffle``: a new order each epoch (each ``iter()``), drawn from ``rng`` (a seed or a
    ``numpy.random.Generator``), so that a seed gives the same batches every run. ``transform``: a function
    ``(x_batch, rng) -> x_batch`` applied to each batch, such as the augmentations of
    :mod:`cnnfast.data.augment`, drawing from the same generator. ``drop_last`` drops a final incomplete batch.
    Batches are float32 C-contiguous copies; the arrays given are never modified.
    """

    def __init__(self, x, y=None, batch_size: int = 32, shuffle: bool = False, rng=None, transform=None,
                 drop_last: bool = False):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"DataLoader: x must have a sample axis, got shape {x.shape}")
        if y is not None:
            y = np.asarray(y)
            if y.ndim < 1 or len(y) != len(x):
                raise ValueError(f"DataLoader: x and y must have as many samples, got {len(x)} and "
                                 f"{len(y) if y.ndim else 'a scalar'}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable (x_batch, rng) -> x_batch, got {transform!r}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last, self.transform = int(batch_size), shuffle, drop_last, transform
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __iter__(self):
        n = len(self.x)
        order = self.rng.permutation(n) if self.shuffle else None
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            xb = np.ascontiguousarray(self.x[index], dtype=np.float32)
            if order is None and np.shares_memory(xb, self.x):
                xb = xb.copy()
            if self.transform is not None:
                xb = np.ascontiguousarray(self.transform(xb, self.rng), dtype=np.float32)
            yield xb, (None if self.y is None else self.y[index])


def split(x, y, test_fraction: float = 0.25, rng=None, stratify: bool = True):
    """Split arrays into ``(x_train, y_train), (x_test, y_test)`` at random (a seed in ``rng`` gives the same
    split every time). With ``stratify`` each class of ``y`` is split in the same proportion."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"split(): x and y must have as many samples, got {len(x)} and {len(y)}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"split(): test_fraction must be in (0, 1), got {test_fraction!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if stratify:
        test = []
        for c in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == c))
            test.append(members[:int(round(len(members) * test_fraction))])
        test = np.sort(np.concatenate(test))
    else:
        test = np.sort(rng.permutation(len(x))[:int(round(len(x) * test_fraction))])
    train = np.setdiff1d(np.arange(len(x)), test)
    train = rng.permutation(train)
    return (x[train], y[train]), (x[test], y[test])
