"""Benchmarks of cnnfast against plain NumPy, PyTorch, ONNX Runtime and OpenCV on real network layers.

``python -m cnnfast.bench`` (or ``cnnfast-bench``) prints the table; see ``--help``. The layer suite
lives in :mod:`cnnfast.bench.suite` and is shared with the pytest-benchmark cases in ``benchmarks/``.
"""

from .cli import main
from .suite import SUITE

__all__ = ["SUITE", "main"]
