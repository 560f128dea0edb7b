"""Wall-clock timing of a call: warm-up, an adaptive number of calls per sample, the median of samples."""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence


@dataclass
class Timing:
    """Samples of one call's time in seconds; each sample is the mean over ``inner`` back-to-back calls."""

    samples: List[float]
    inner: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def measure(fn: Callable[[], object], repeat: int = 5, min_time: float = 0.2, sample_time: float = 0.005,
            warmup: int = 1, max_samples: int = 1000, inner: Optional[int] = None) -> Timing:
    """Time ``fn()``.

    After ``warmup`` calls, one more call sets how many calls make a sample, so that a sample lasts at
    least ``sample_time`` seconds (timer resolution and loop overhead then matter little), unless ``inner``
    gives that number. Samples are taken until there are ``repeat`` of them and ``min_time`` seconds have
    passed (at most ``max_samples``). The garbage collector is off while sampling, as in ``timeit``.
    """
    if repeat < 1:
        raise ValueError(f"measure(): repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn()
    if inner is None:
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        inner = 1 if once >= sample_time else min(max(1, math.ceil(sample_time / max(once, 1e-7))), 100_000)
    samples: List[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < repeat or (time.perf_counter() - start < min_time and len(samples) < max_samples):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(samples, inner)


def measure_interleaved(fns: Sequence[Callable[[], object]], rounds: int = 5, repeat: int = 5,
                        min_time: float = 0.2, sample_time: float = 0.005, pause: float = 0.0) -> List[Timing]:
    """Time several calls in turns: ``rounds`` rounds, each giving every call ``min_time / rounds`` seconds
    (and ``repeat / rounds`` samples, at least one) in order, so that a stretch of other work on a noisy
    machine slows them all alike instead of the one that happened to be running (their ratios hold when the
    times themselves do not). Each call is warmed up and calibrated in the first round only.

    ``pause`` seconds pass idle after each turn, so that worker threads the last call left spinning have
    gone to sleep before the next call's turn starts (ONNX Runtime's pool spins for about 70 ms after a
    run: a two-thread call that starts meanwhile waits for its second core, 5 ms instead of 1)."""
    if rounds < 1:
        raise ValueError(f"measure_interleaved(): rounds must be >= 1, got {rounds}")
    if pause < 0:
        raise ValueError(f"measure_interleaved(): pause must be >= 0, got {pause}")
    per_round = max(1, math.ceil(repeat / rounds))
    timings: List[Optional[Timing]] = [None] * len(fns)
    for r in range(rounds):
        for i, fn in enumerate(fns):
            first = timings[i] is None
            t = measure(fn, repeat=per_round, min_time=min_time / rounds, sample_time=sample_time,
                        warmup=1 if first else 0, inner=None if first else timings[i].inner)
            if first:
                timings[i] = t
            else:
                timings[i].samples.extend(t.samples)
            if pause > 0:
                time.sleep(pause)
    return [t for t in timings if t is not None]
