"""The command line of ``python -m cnnfast.bench``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import cnnfast

from . import peers as peers_mod
from . import report, suite
from .runner import run_suite


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be integers >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cnnfast.bench",
        description="Time cnnfast on layers of real networks beside plain NumPy, PyTorch, ONNX Runtime, "
                    "OpenVINO and OpenCV DNN (those installed), checking that their outputs agree.",
        epilog="Exit status: 0, or 1 when a peer's output disagrees with cnnfast's (marked '!' in the table), "
               "or 2 for bad arguments. Progress goes to stderr, so the table can be redirected to a file.")
    p.add_argument("--threads", type=_int_list, default=None,
                   help="comma-separated thread counts, one table per count (default: cnnfast.get_num_threads())")
    p.add_argument("--filter", default=None, metavar="PATTERN",
                   help="run only the cases whose name contains PATTERN or matches it as a regular expression")
    p.add_argument("--peers", default=None,
                   help=f"comma-separated peers from {','.join(peers_mod.ALL_PEERS)}, or 'none' "
                        "(default: every one installed)")
    p.add_argument("--repeat", type=int, default=5, help="least number of timed samples per call (default 5)")
    p.add_argument("--min-time", type=float, default=0.5, metavar="SECONDS",
                   help="least time spent sampling each call, after warm-up (default 0.5)")
    p.add_argument("--numpy-max-gflop", type=float, default=10.0, metavar="GFLOP",
                   help="skip the NumPy peer on cases above this many GFLOP per call (default 10)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the full result, with samples, as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--render", default=None, metavar="PATH",
                   help="print the table of a result saved with --json instead of running")
    p.add_argument("--list", action="store_true", help="list the cases (after --filter) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress indicator on stderr")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        sys.stdout.write(report.format_table(report.read_json(args.render), markdown=args.markdown))
        return 0
    cases = suite.select(args.filter)
    if not cases:
        print(f"no case matches {args.filter!r}; see --list", file=sys.stderr)
        return 2
    if args.list:
        for case in cases:
            print(case.name)
        return 0
    if args.repeat < 1:
        print("--repeat must be >= 1", file=sys.stderr)
        return 2
    names = None
    if args.peers is not None:
        names = [] if args.peers.strip().lower() == "none" else [n.strip() for n in args.peers.split(",") if n.strip()]
    try:
        peers = peers_mod.make_peers(names, numpy_max_gflop=args.numpy_max_gflop)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    threads = args.threads or [cnnfast.get_num_threads()]
    result = run_suite(cases, peers, threads, repeat=args.repeat, min_time=args.min_time,
                       progress=not args.no_progress,
                       options={"filter": args.filter, "numpy_max_gflop": args.numpy_max_gflop})
    if args.json:
        report.write_json(result, args.json)
    sys.stdout.write(report.format_table(result, markdown=args.markdown))
    mismatches = [(s["threads"], c["name"], p) for s in result["sections"] for c in s["cases"]
                  for p, r in c["peers"].items() if r.get("status") == "mismatch"]
    return 1 if mismatches else 0
