"""What the numbers were measured on: CPU, ISA, library versions, date."""

from __future__ import annotations

import datetime
import os
import platform
import time
from typing import Dict, List, Optional

import numpy as np

import cnnfast


def cpu_model() -> str:
    """The CPU's model name, family and model from /proc/cpuinfo, else what the platform module knows."""
    fields: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def fma_peak_gflops(threads: int = 1) -> Optional[float]:
    """The FP32 FMA peak in GFLOP/s for the ISA in use on ``threads`` threads at once (their total),
    measured now (about 0.1 s)."""
    return float(cnnfast._core._measure_fma_peak(threads))


def parallel_fma_peak(threads: int) -> Dict[str, float]:
    """The FMA peak of ``threads`` threads together (well short of ``threads`` times one core's when other
    work holds a core), and how much faster a compute-bound 3x3 convolution runs on ``threads`` threads than
    on one: on a virtual machine the second can fall to about 1 while the first stays at 2, which no load
    average shows."""
    x = np.random.default_rng(0).random((1, 64, 56, 56), dtype=np.float32)
    w = np.random.default_rng(1).random((64, 64, 3, 3), dtype=np.float32)
    before = cnnfast.get_num_threads()
    medians = []
    try:
        for n in (1, threads):
            cnnfast.set_num_threads(n)
            for _ in range(3):
                cnnfast.conv2d(x, w, padding=1, algorithm="direct")
            samples = []
            for _ in range(15):
                t0 = time.perf_counter()
                cnnfast.conv2d(x, w, padding=1, algorithm="direct")
                samples.append(time.perf_counter() - t0)
            medians.append(float(np.median(samples)))
    finally:
        cnnfast.set_num_threads(before)
    return {"threads": threads, "gflops": fma_peak_gflops(threads), "conv_speedup": medians[0] / medians[1]}


def machine_info() -> Dict[str, object]:
    cfg = cnnfast.config()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "isa": cfg.get("isa"),
        "supported_isas": cfg.get("supported_isas"),
        "fma_peak_gflops_per_core": fma_peak_gflops(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1min": load_average(),
    }


def load_average() -> Optional[float]:
    """The 1-minute load average: other work on the machine makes the times noisy (with 2 threads on 2
    cores, a parallel region waits whole scheduler ticks for a thread that another process displaced)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def versions(peers) -> Dict[str, Optional[str]]:
    """Versions of cnnfast, NumPy and each peer library in use."""
    out: Dict[str, Optional[str]] = {"cnnfast": cnnfast.__version__, "numpy": np.__version__}
    for peer in peers:
        if peer.name != "numpy":
            out[peer.name] = peer.version()
    return out


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def peak_per_core(m: dict) -> Optional[float]:
    """One core's FP32 FMA peak from a result's machine record: the larger of the probes at the start and at
    the end of the run. Other work on the machine can only slow the loop, so the faster reading is nearer the
    hardware's; a single probe taken in a busy moment put this 2-core guest at 160 GFLOP/s, and 1x1 layers
    at "112%" of it, where quiet probes read 224."""
    probes = [p for p in (m.get("fma_peak_gflops_per_core"), m.get("fma_peak_gflops_per_core_end")) if p]
    return max(probes) if probes else None


def header_lines(result: dict) -> List[str]:
    """The machine line and the versions line of a result, for the table's head."""
    m = result["machine"]
    peak = peak_per_core(m)
    start, end = m.get("fma_peak_gflops_per_core"), m.get("fma_peak_gflops_per_core_end")
    probes = f"; {start:.1f} at start, {end:.1f} at end" if start and end else ""
    peak_text = f", FP32 FMA peak {peak:.1f} GFLOP/s per core (measured{probes})" if peak else ""
    for key, when in (("fma_peak_parallel", "at start"), ("fma_peak_parallel_end", "at end")):
        par = m.get(key)
        if peak and par and par["threads"] > 1:
            peak_text += (f"; {par['threads']} threads together {par['gflops']:.0f} "
                          f"({par['gflops'] / peak:.2f}x one), a 3x3 convolution "
                          f"{par.get('conv_speedup', float('nan')):.2f}x as fast as on one, {when}")
    load, load_end = m.get("load_average_1min"), m.get("load_average_1min_end")
    load_text = f", load average {load:.2f} at start" if load is not None else ""
    load_text += f" and {load_end:.2f} at end" if load is not None and load_end is not None else ""
    machine = f"Machine: {m['cpu']}, {m['cores']} cores, ISA {m['isa']}{peak_text}; {result['date']}{load_text}"
    vers = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    return [machine, f"Versions: {vers}"]
