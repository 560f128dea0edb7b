"""Per-layer times of a whole network inside its forward pass: cnnfast beside ONNX Runtime.

    python benchmarks/layer_profile.py resnet50 --threads 1 --batch 1

A layer timed alone finds its weights and input in cache; inside a network, the layers before it have
pushed them out. This runs the network the benchmark command times (``cnnfast.bench.networks``), times
every kernel call of cnnfast's forward pass, and reads ONNX Runtime's own profile of the same torchvision
model exported to ONNX (the run the benchmark command times, with profiling on). Layers of the same shapes
are grouped: calls per pass, the median time of one call on each side, and the ratio ONNX Runtime /
cnnfast (above 1: cnnfast is faster). Both sides fuse the batch norms, the ReLUs and a residual add into
the convolution before them; a convolution with a residual is marked ``+res``. Rows on one side only (ONNX
Runtime's layout reorders and concatenations, for instance) are listed with the other side blank.

Needs PyTorch and torchvision (to export the model) and onnxruntime. The hooks cost each side a few
microseconds per call, so the sums run above the plain forward pass, which is printed for both.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def _shape(a) -> str:
    return "x".join(str(d) for d in a)


def cnnfast_layers(name: str, threads: int, batch: int, iters: int):
    """{key: [seconds of each call]} over ``iters`` forward passes, and the median time of a plain pass."""
    import cnnfast
    from cnnfast import _core
    from cnnfast.bench.networks import cnnfast_model, input_shape

    cnnfast.set_num_threads(threads)
    model = cnnfast_model(name)
    x = np.random.default_rng(0).random((batch, *input_shape(name)), dtype=np.float32)
    for _ in range(3):
        model(x)
    plain = []
    for _ in range(iters):
        t0 = time.perf_counter()
        model(x)
        plain.append(time.perf_counter() - t0)

    times = collections.defaultdict(list)

    def key_of(fn: str, args, y) -> str:
        xs = np.shape(args[0])
        if fn == "conv2d":
            res = " +res" if len(args) > 11 and args[11] is not None else ""
            return f"conv {_shape(xs)} * {_shape(np.shape(args[1]))} -> {_shape(y.shape)}{res}"
        return f"{fn} {_shape(xs)} -> {_shape(np.shape(y))}"

    def hook(fn: str, f):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            y = f(*args, **kwargs)
            dt = time.perf_counter() - t0
            times[key_of(fn, args, y)].append(dt)
            return y

        return timed

    names = ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "linear", "add"]
    saved = {n: getattr(_core, n) for n in names if hasattr(_core, n)}
    try:
        for n, f in saved.items():
            setattr(_core, n, hook(n, f))
        for _ in range(iters):
            model(x)
    finally:
        for n, f in saved.items():
            setattr(_core, n, f)
    return times, statistics.median(plain)


_ORT_OPS = {"MaxPool": "max_pool2d", "AveragePool": "avg_pool2d", "GlobalAveragePool": "global_avg_pool2d",
            "Gemm": "linear", "FusedGemm": "linear", "Add": "add", "Sum": "add"}


def ort_layers(name: str, threads: int, batch: int, iters: int):
    """ONNX Runtime's profile: {key: [seconds of each node run]}, and the median time of a plain run."""
    from cnnfast.bench.networks import input_shape, onnx_model
    from cnnfast.bench.peers import ort_session

    model = onnx_model(name, batch)
    x = np.random.default_rng(0).random((batch, *input_shape(name)), dtype=np.float32)

    sess = ort_session(model, threads)
    for _ in range(3):
        sess.run(None, {"x": x})
    plain = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        plain.append(time.perf_counter() - t0)

    times = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(model, threads, os.path.join(tmp, "profile"))
        for _ in range(3 + iters):
            sess.run(None, {"x": x})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(runs) // (3 + iters)
    for e in runs[3 * per_run:]:
        a = e["args"]
        op = a.get("op_name", "?")
        ins = [next(iter(d.values())) for d in a.get("input_type_shape", [])]
        outs = [next(iter(d.values())) for d in a.get("output_type_shape", [])]
        y = _shape(outs[0]) if outs else "?"
        if op in ("Conv", "FusedConv") and len(ins) >= 2:
            res = " +res" if len(ins) >= 4 else ""
            key = f"conv {_shape(ins[0])} * {_shape(ins[1])} -> {y}{res}"
        elif op in _ORT_OPS and ins:
            key = f"{_ORT_OPS[op]} {_shape(ins[0])} -> {y}"
        else:
            key = f"({op}) {_shape(ins[0]) if ins else ''} -> {y}"
        times[key].append(e["dur"] * 1e-6)
    return times, statistics.median(plain)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("network", help="one of the benchmark command's networks: lenet5, alexnet, vgg16, resnet50, googlenet")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=20, help="forward passes timed on each side (default 20)")
    p.add_argument("--top", type=int, default=0, help="only the N groups that take most time (default: all)")
    args = p.parse_args(argv)
    if args.threads < 1 or args.batch < 1 or args.iters < 1:
        p.error("--threads, --batch and --iters must be positive")

    from cnnfast.bench.networks import NETWORKS

    if args.network not in NETWORKS:
        p.error(f"network must be one of {', '.join(sorted(NETWORKS))}, got {args.network!r}")
    for module in ("onnxruntime", "torch", "torchvision"):
        try:
            __import__(module)
        except ImportError as exc:
            print(f"layer_profile.py needs {module} ({exc})", file=sys.stderr)
            return 2
    ours, our_pass = cnnfast_layers(args.network, args.threads, args.batch, args.iters)
    theirs, their_pass = ort_layers(args.network, args.threads, args.batch, args.iters)

    rows = []
    for key in set(ours) | set(theirs):
        a, b = ours.get(key, []), theirs.get(key, [])
        calls = (len(a) or len(b)) / args.iters
        ma = statistics.median(a) if a else None
        mb = statistics.median(b) if b else None
        rows.append((calls * max(ma or 0.0, mb or 0.0), key, calls, ma, mb))
    rows.sort(reverse=True)
    if args.top > 0:
        rows = rows[:args.top]

    def ms(v):
        return f"{v * 1e3:9.3f}" if v is not None else " " * 9

    print(f"{args.network}, batch {args.batch}, {args.threads} thread(s), {args.iters} passes; ms per call (median)")
    print(f"{'calls':>5}  {'cnnfast':>9}  {'ORT':>9}  {'ORT/cf':>6}  layer")
    sum_a = sum_b = 0.0
    for _, key, calls, ma, mb in rows:
        ratio = f"{mb / ma:6.2f}" if ma and mb else " " * 6
        sum_a += calls * (ma or 0.0)
        sum_b += calls * (mb or 0.0)
        print(f"{calls:5.0f}  {ms(ma)}  {ms(mb)}  {ratio}  {key}")
    print(f"sum of the rows: cnnfast {sum_a * 1e3:.2f} ms, ONNX Runtime {sum_b * 1e3:.2f} ms")
    print(f"a plain forward pass (median): cnnfast {our_pass * 1e3:.2f} ms, ONNX Runtime {their_pass * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
