"""Data for training: batches with a seed, augmentations of image batches, the sample digits.

>>> from cnnfast import data
>>> x, y = data.load_digits()                                   # doctest: +SKIP
>>> (xtr, ytr), (xte, yte) = data.split(x, y, 0.25, rng=0)      # doctest: +SKIP
>>> batches = data.DataLoader(xtr, ytr, batch_size=32, shuffle=True, rng=0,
...                           transform=data.augment.RandomCrop(padding=2))  # doctest: +SKIP
"""

from . import augment
from .augment import (Compose, RandomColorShift, RandomCrop, RandomMirror, RandomRotation, RandomShear, color_shift,
                      mirror, rotate, shear)
from .digits import load_digits
from .loader import DataLoader, split

__all__ = [
    "Compose",
    "DataLoader",
    "RandomColorShift",
    "RandomCrop",
    "RandomMirror",
    "RandomRotation",
    "RandomShear",
    "augment",
    "color_shift",
    "load_digits",
    "mirror",
    "rotate",
    "shear",
    "split",
]
