"""Run the suite: every case at every thread count, cnnfast and each peer (checked against cnnfast) timed in
turns.

The result is a plain dict (what ``--json`` writes and what :mod:`cnnfast.bench.report` prints).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from typing import Callable, List, Optional, Sequence

import cnnfast

from . import check, machine
from .peers import Peer, Skip
from .suite import Case
from .timing import Timing, measure, measure_interleaved

# Seconds idle after each turn at more than one thread (measure_interleaved's ``pause``): ONNX Runtime's
# worker threads spin for about 70 ms after its last call, holding the second core from whichever library
# is timed next. One thread has no workers to wait for.
TURN_PAUSE = 0.15


def run_suite(cases: Sequence[Case], peers: Sequence[Peer], threads: Sequence[int], repeat: int = 5,
              min_time: float = 0.2, progress: bool = True, options: Optional[dict] = None) -> dict:
    """Time ``cases`` with cnnfast and ``peers`` at each thread count; return the result dict."""
    bar = Progress(len(threads) * len(cases) * (1 + len(peers)), enabled=progress)
    info = machine.machine_info()
    most = max(threads)
    if most > 1:
        info["fma_peak_parallel"] = machine.parallel_fma_peak(most)
    date = machine.now_utc()
    sections = []
    before = cnnfast.get_num_threads()
    try:
        for n in threads:
            cnnfast.set_num_threads(n)
            rows = [run_case(case, peers, n, repeat, min_time, bar) for case in cases]
            sections.append({"threads": n, "cases": rows})
    finally:
        cnnfast.set_num_threads(before)
        bar.close()
    info["load_average_1min_end"] = machine.load_average()
    info["fma_peak_gflops_per_core_end"] = machine.fma_peak_gflops()
    if most > 1:
        info["fma_peak_parallel_end"] = machine.parallel_fma_peak(most)
    return {
        "machine": info,
        "versions": machine.versions(peers),
        "date": date,
        "options": dict(options or {}, repeat=repeat, min_time=min_time, threads=list(threads)),
        "peers": [p.name for p in peers],
        "sections": sections,
    }


def run_case(case: Case, peers: Sequence[Peer], threads: int, repeat: int, min_time: float,
             bar: Optional["Progress"] = None, rounds: int = 5) -> dict:
    """One row of the table: cnnfast's timing and workspace, and each peer's timing and agreement.

    cnnfast and the peers that allow it are timed in turns (``rounds`` rounds, see
    :func:`~cnnfast.bench.timing.measure_interleaved`), each peer's output checked against cnnfast's first;
    the others (NumPy) after them, one at a time."""
    bar = bar or Progress(0, enabled=False)
    inputs = case.make_inputs()
    row = {"name": case.name, "params": case.params(), "flops": case.flops, "bytes": case.bytes_moved,
           "metric": case.metric, "peers": {}}
    bar.step(case.name, "cnnfast")
    try:
        cnnfast.set_num_threads(threads)
        workspace, expected = _with_workspace(lambda: case.run(inputs))
    except Exception as exc:  # report and go on: one broken case must not lose a long run
        row["cnnfast"] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        workspace, expected = None, None
    with contextlib.ExitStack() as stack:
        turns = []  # (peer or None for cnnfast, call, agrees, error)
        if expected is not None:
            turns.append((None, lambda: case.run(inputs), True, None))
        for peer in peers:
            if not peer.interleaved:
                continue
            bar.step(case.name, peer.name)
            bound = _bind_peer(peer, case, inputs, threads, expected, stack, row)
            if bound is not None:
                turns.append((peer,) + bound)
        pause = TURN_PAUSE if threads > 1 else 0.0
        timings = _time_in_turns(turns, repeat, min_time, rounds, pause, row) if turns else []
        for (peer, _, agrees, err), t in zip(turns, timings):  # cnnfast's turn, when there is one, comes first
            if t is None:
                continue
            if peer is None:
                row["cnnfast"] = dict(_timing_dict(t), status="ok", rate=case.rate(t.median),
                                      workspace_bytes=workspace)
            else:
                row["peers"][peer.name] = _peer_dict(t, agrees, err, row["cnnfast"].get("median_ms"))
    for peer in peers:
        if not peer.interleaved:
            bar.step(case.name, peer.name)
            _run_peer(peer, case, inputs, threads, repeat, min_time, expected, row)
    row["peers"] = {p.name: row["peers"][p.name] for p in peers if p.name in row["peers"]}  # table order
    del inputs, expected
    gc.collect()
    return row


def _bind_peer(peer: Peer, case: Case, inputs, threads: int, expected, stack: contextlib.ExitStack, row: dict):
    """(call, agrees, error) for ``peer`` configured for ``threads`` (for as long as ``stack`` lasts), or None
    with the reason in ``row`` when it cannot run the case."""
    if not peer.available():
        row["peers"][peer.name] = {"status": "skipped", "reason": "not installed"}
        return None
    if expected is None:
        row["peers"][peer.name] = {"status": "skipped", "reason": "cnnfast failed"}
        return None
    try:
        stack.enter_context(peer.configured(threads))
        bound = peer.bind(case, inputs, threads)
        agrees, err = check.agreement(case, expected, bound.to_numpy(bound.call()))
    except Skip as exc:
        row["peers"][peer.name] = {"status": "skipped", "reason": str(exc)}
        return None
    except Exception as exc:
        row["peers"][peer.name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        return None
    return bound.call, agrees, err


def _time_in_turns(turns, repeat: int, min_time: float, rounds: int, pause: float,
                   row: dict) -> List[Optional[Timing]]:
    """Timings of the turns' calls measured in turns; if one raises, each is measured alone instead, and
    the one that raises is reported as an error."""
    try:
        return measure_interleaved([t[1] for t in turns], rounds=rounds, repeat=repeat, min_time=min_time,
                                   pause=pause)
    except Exception:
        out: List[Optional[Timing]] = []
        for peer, call, _, _ in turns:
            try:
                out.append(measure(call, repeat=repeat, min_time=min_time))
            except Exception as exc:
                name = "cnnfast" if peer is None else peer.name
                reason = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
                if peer is None:
                    row["cnnfast"] = reason
                else:
                    row["peers"][name] = reason
                out.append(None)
        return out


def _peer_dict(timing: Timing, agrees: bool, err, cnnfast_ms: Optional[float]) -> dict:
    out = _timing_dict(timing)
    out.update(status="ok" if agrees else "mismatch", error=err,
               ratio=out["median_ms"] / cnnfast_ms if cnnfast_ms else None)
    return out


def _run_peer(peer: Peer, case: Case, inputs, threads: int, repeat: int, min_time: float, expected, row: dict):
    """Times ``peer`` alone and puts its entry in ``row``."""
    with contextlib.ExitStack() as stack:
        bound = _bind_peer(peer, case, inputs, threads, expected, stack, row)
        if bound is None:
            return
        call, agrees, err = bound
        try:
            timing = measure(call, repeat=repeat, min_time=min_time)
        except Exception as exc:
            row["peers"][peer.name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
            return
        row["peers"][peer.name] = _peer_dict(timing, agrees, err, row["cnnfast"].get("median_ms"))


def _with_workspace(fn: Callable[[], object]):
    """(peak scratch bytes the call allocated beyond what was in use before, the call's result)."""
    core = cnnfast._core
    if not hasattr(core, "_workspace_peak"):
        return None, fn()
    core._workspace_reset_peak()
    base = core._workspace_in_use()
    out = fn()
    return max(0, core._workspace_peak() - base), out


def _timing_dict(t: Timing) -> dict:
    return {"median_ms": t.median * 1e3, "samples_ms": [s * 1e3 for s in t.samples], "inner": t.inner}


class Progress:
    """A progress bar on stderr: tqdm when installed, else a counter that rewrites one line."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled and total > 0
        self._tqdm = None
        if self.enabled:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, file=sys.stderr, unit="run", leave=False)
            except ImportError:
                pass

    def step(self, case: str, impl: str) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            if self.done:
                self._tqdm.update(1)
            self._tqdm.set_description(f"{case} {impl}")
        else:
            sys.stderr.write(f"\r[{self.done + 1}/{self.total}] {case} {impl}".ljust(72))
            sys.stderr.flush()
        self.done += 1

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(1)
            self._tqdm.close()
        else:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()
