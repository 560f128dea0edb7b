"""Runtime configuration: the ISA in use, threads, the memory cache."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Iterator

from . import _core

# The count fixed with set_num_threads(), or None while cnnfast follows OpenMP.
_fixed_threads: int | None = None


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads(): n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads(): n must be >= 1, got {n}")
    return n


def set_num_threads(n: int) -> None:
    """Run kernels on ``n`` threads (``n >= 1``), for calls from any Python thread.

    Until this is called cnnfast follows OpenMP: ``OMP_NUM_THREADS``, or ``threadpoolctl`` limits, or one
    thread per core.
    """
    global _fixed_threads
    _core._set_num_threads(_check_n(n))
    _fixed_threads = n


def get_num_threads() -> int:
    """The number of threads the kernels run on."""
    return _core._get_num_threads()


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager: run the kernels on ``n`` threads inside the ``with`` block, then go back to the previous
    setting (a fixed count, or following OpenMP)."""
    global _fixed_threads
    _check_n(n)
    fixed_before = _fixed_threads
    openmp_before = _core._get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        if fixed_before is not None:
            _core._set_num_threads(fixed_before)
        else:
            # set_num_threads(n) also set OpenMP's count for this thread: put that back, then follow OpenMP
            _core._set_num_threads(openmp_before)
            _core._set_num_threads(0)
        _fixed_threads = fixed_before


def set_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of freed memory for reuse (default 512 MiB; 0 keeps none).

    The arrays cnnfast returns and its scratch memory come from a cache of freed blocks, so that a network's
    calls reuse pages already mapped: a large block fresh from the operating system costs a page fault per
    page on first touch, which at batch 8 made ResNet-50 a quarter slower on two threads. The cache holds
    only freed blocks (arrays still referenced are never touched); lowering the limit frees the oldest
    blocks at once.
    """
    _core._set_cache_limit(nbytes)  # TypeError / ValueError naming nbytes for anything but an int >= 0


def get_cache_limit() -> int:
    """The most freed memory, in bytes, that cnnfast keeps for reuse (see :func:`set_cache_limit`)."""
    return _core._cache_limit()


def empty_cache() -> None:
    """Give every freed block cnnfast holds for reuse back to the system (the limit stays as it is)."""
    limit = _core._cache_limit()
    _core._set_cache_limit(0)
    _core._set_cache_limit(limit)


def config() -> dict:
    """The build and runtime configuration as a dict."""
    from ._version import __version__

    return {
        "version": __version__,
        "isa": _core._current_isa(),
        "supported_isas": list(_core._supported_isas()),
        "compiled_isas": list(_core._compiled_isas()),
        "full_width_avx512": _core._full_width_avx512(),
        "num_threads": _core._get_num_threads(),
        "workers_pinned": _core._workers_pinned(),
        "cache_limit": _core._cache_limit(),
        "cached_bytes": _core._cached_bytes(),
        "cnnfast_isa_env": os.environ.get("CNNFAST_ISA"),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def show_config() -> None:
    """Print :func:`config` as an aligned table."""
    cfg = config()
    width = max(len(k) for k in cfg)
    for key, value in cfg.items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:<{width}} : {value}")
