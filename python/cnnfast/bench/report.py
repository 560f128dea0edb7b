"""The result of a run as a plain-text or Markdown table, and as JSON."""

from __future__ import annotations

import json
from typing import List, Optional

from .machine import header_lines, peak_per_core

MARK_MISMATCH = "!"


def fmt_ms(ms: Optional[float]) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 10:
        return f"{ms:.2f}"
    if ms >= 1:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def fmt_bytes(n: Optional[int]) -> str:
    if n is None:
        return "n/a"
    if n == 0:
        return "0"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def fmt_rate(rate: Optional[float], metric: Optional[str], peak: Optional[float] = None) -> str:
    """'123.4 GFLOP/s', with the share of the FMA peak of the cores in use when that peak is known."""
    if not rate or not metric:
        return ""
    text = f"{rate:.1f} {metric}"
    if peak and metric == "GFLOP/s":
        text += f" ({100 * rate / peak:.0f}%)"
    return text


def _peer_cell(p: dict, notes: List[str], case: str, peer: str) -> str:
    status = p.get("status")
    if status in ("ok", "mismatch"):
        ratio = p.get("ratio")
        cell = fmt_ms(p["median_ms"]) + (f" ({ratio:.2f}x)" if ratio else "")
        if status == "mismatch":
            notes.append(f"{MARK_MISMATCH} {case}, {peer}: output disagrees with cnnfast's (error {p['error']:.3g})")
            cell += " " + MARK_MISMATCH
        return cell
    reason = p.get("reason", "")
    if status == "error":
        notes.append(f"error in {case}, {peer}: {reason}")
        return "error"
    if "budget" in reason:
        return "(budget)"
    return "-"


def section_rows(section: dict, peers: List[str], notes: List[str], peak_per_core: Optional[float] = None
                 ) -> List[List[str]]:
    peak = peak_per_core * section["threads"] if peak_per_core else None
    rows = []
    for c in section["cases"]:
        cf = c["cnnfast"]
        if cf.get("status") != "ok":
            notes.append(f"error in {c['name']}, cnnfast: {cf.get('reason')}")
            row = [c["name"], "error", "", ""]
        else:
            row = [c["name"], fmt_ms(cf["median_ms"]), fmt_rate(cf.get("rate"), c.get("metric"), peak),
                   fmt_bytes(cf.get("workspace_bytes"))]
        row += [_peer_cell(c["peers"].get(p, {}), notes, c["name"], p) for p in peers]
        rows.append(row)
    return rows


def _align(table: List[List[str]], right: List[bool]) -> List[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)).rstrip()
            for row in table]


LEGEND = ("Times are medians in ms per call (each call returns a new output); a peer's (Nx) is its time "
          "over cnnfast's, above 1 when cnnfast is faster. cnnfast and the peers are timed in turns (five "
          "rounds, each a fifth of the sampling time, so that other work on the machine slows them alike; at 2+ "
          "threads 0.15 s idle after each turn, for the threads a peer leaves spinning to stop), "
          "NumPy alone after them. Convolutions and fully connected layers run with their weights prepared once, "
          "outside the timing, as the layers do in eval mode and as the peers' sessions prepack theirs; "
          "networks run in eval mode. Workspace: peak scratch memory of the cnnfast "
          "call; (N%): share of the FP32 FMA peak of the threads in use, where measured. '-': the peer lacks the op or is not installed; '(budget)': skipped above --numpy-max-gflop.")


BUSY_LOAD = 1.0


def busy_note(result: dict) -> Optional[str]:
    """A warning when other work was running: a thread that another process displaces stalls every
    parallel region that waits for it, so multi-threaded times on a busy machine mean little.

    The load at the start is others' work; the load at the end also counts this run's own threads.
    """
    m = result["machine"]
    start, end = m.get("load_average_1min"), m.get("load_average_1min_end")
    own = max(result.get("options", {}).get("threads") or [1])
    busy = (start is not None and start >= BUSY_LOAD) or (end is not None and end >= own + BUSY_LOAD)
    peak = peak_per_core(m)
    probes = [p for p in (m.get("fma_peak_parallel"), m.get("fma_peak_parallel_end")) if p]
    held = [p for p in probes if (peak and p["gflops"] < 0.85 * p["threads"] * peak)
            or p.get("conv_speedup", p["threads"]) < 0.8 * p["threads"]]
    if held:
        p = held[0]
        return (f"Warning: on {p['threads']} threads the FMA loop reached {p['gflops'] / (peak or p['gflops']):.2f}x "
                f"and a 3x3 convolution {p.get('conv_speedup', float('nan')):.2f}x one thread's speed: other work "
                "held a core during the run, so the multi-threaded times mean little.")
    if not busy:
        return None
    def fmt(v):
        return "unknown" if v is None else f"{v:.2f}"

    return (f"Warning: the machine was busy (1-minute load average {fmt(start)} at start, {fmt(end)} at end, on "
            f"{m['cores']} cores, this run using up to {own}); the times include waits for threads displaced "
            "by other processes, on several threads most of all.")


def format_table(result: dict, markdown: bool = False) -> str:
    """The whole result: the header, one table per thread count, then notes on mismatches and errors."""
    peers = result["peers"]
    columns = ["case", "cnnfast ms", "rate", "workspace"] + [f"{p} ms (ratio)" for p in peers]
    right = [False, True, True, True] + [True] * len(peers)
    notes: List[str] = []
    out = []
    head = header_lines(result)
    if markdown:
        out += [line + "  " for line in head] + [""]
    else:
        out += head
    for section in result["sections"]:
        rows = section_rows(section, peers, notes, peak_per_core(result["machine"]))
        title = f"Threads: {section['threads']}"
        if markdown:
            out += [f"### {title}", "", "| " + " | ".join(columns) + " |",
                    "|" + "|".join("---:" if r else "---" for r in right) + "|"]
            out += ["| " + " | ".join(row) + " |" for row in rows]
            out.append("")
        else:
            out += ["", title] + _align([columns] + rows, right)
    out += [LEGEND] if markdown else ["", LEGEND]
    busy = busy_note(result)
    if busy:
        notes.insert(0, busy)
    if notes:
        out += [""] + [("- " if markdown else "") + n for n in dict.fromkeys(notes)]
    return "\n".join(out).rstrip() + "\n"


def write_json(result: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
