"""The implementations cnnfast is compared with: plain NumPy, PyTorch, ONNX Runtime, OpenVINO and OpenCV DNN.

A peer binds a case's inputs once (converting or building whatever it needs, outside the timing) to a
zero-argument call that runs the op the way that library is normally used for inference, returning a
freshly allocated output, and a function that turns that output into a NumPy array for the agreement
check. ``configured(threads)`` sets the peer's own thread count around the binding and the timing.
Peers whose library is not importable are left out; an op a peer lacks raises :class:`Skip`.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from . import numpy_ops, onnx_graphs
from .suite import Case, Inputs


class Skip(Exception):
    """The peer does not run this case; the message says why."""


@dataclass
class Bound:
    """A peer's call on one case's inputs, and the conversion of its result to NumPy."""

    call: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray] = np.asarray


def _module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken install that fails while importing
        return None


class Peer:
    """Base class: subclasses define one ``bind_<op>`` method per op they run."""

    name = ""
    module = ""
    # Whether its calls are timed in turns with cnnfast's and the other peers' (runner.run_case).
    interleaved = True

    def available(self) -> bool:
        return _module(self.module) is not None

    def version(self) -> Optional[str]:
        mod = _module(self.module)
        return getattr(mod, "__version__", None) if mod is not None else None

    @contextlib.contextmanager
    def configured(self, threads: int) -> Iterator[None]:
        yield

    def bind(self, case: Case, inputs: Inputs, threads: int) -> Bound:
        method = getattr(self, f"bind_{case.op}", None)
        if method is None:
            raise Skip(f"{self.name} has no {case.op}")
        return method(case, inputs, threads)


class NumpyPeer(Peer):
    """The plain NumPy baseline of :mod:`cnnfast.bench.numpy_ops`, its BLAS limited to ``threads``."""

    name = "numpy"
    module = "numpy"
    # NOTE: OpenBLAS's threads spin for about 0.1 s after a BLAS call, holding a core from whatever runs
    # next; NumPy, a baseline rather than a peer to beat, is timed on its own after the others.
    interleaved = False

    def __init__(self, max_gflop: float = 8.0):
        self.max_gflop = max_gflop

    @contextlib.contextmanager
    def configured(self, threads):
        tpc = _module("threadpoolctl")
        if tpc is None:
            yield
            return
        with tpc.threadpool_limits(limits=threads, user_api="blas"):
            yield

    def bind(self, case, inputs, threads):
        if case.flops > self.max_gflop * 1e9:
            raise Skip(f"over the NumPy budget of {self.max_gflop:g} GFLOP")
        return super().bind(case, inputs, threads)

    def bind_conv2d(self, case, inp, threads):
        return Bound(lambda: numpy_ops.conv2d(inp["x"], inp["weight"], inp["bias"], case.stride, case.padding,
                                              case.groups))

    def bind_max_pool2d(self, case, inp, threads):
        return Bound(lambda: numpy_ops.max_pool2d(inp["x"], case.kernel, case.stride, case.padding))

    def bind_global_avg_pool2d(self, case, inp, threads):
        return Bound(lambda: numpy_ops.global_avg_pool2d(inp["x"]))

    def bind_add_relu(self, case, inp, threads):
        return Bound(lambda: numpy_ops.add_relu(inp["a"], inp["b"]))

    def bind_linear(self, case, inp, threads):
        return Bound(lambda: numpy_ops.linear(inp["x"], inp["weight"], inp["bias"]))

    def bind_nms(self, case, inp, threads):
        return Bound(lambda: numpy_ops.nms(inp["boxes"], inp["scores"], case.iou_threshold))


class TorchPeer(Peer):
    """torch.nn.functional under ``torch.inference_mode()``; NMS from torchvision.ops when it imports."""

    name = "torch"
    module = "torch"

    @contextlib.contextmanager
    def configured(self, threads):
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(before)

    @staticmethod
    def _tensors(inp: Inputs) -> Dict[str, Any]:
        import torch

        return {k: torch.from_numpy(v) for k, v in inp.items()}

    @staticmethod
    def _numpy(t) -> np.ndarray:
        return t.numpy()

    def bind_conv2d(self, case, inp, threads):
        import torch.nn.functional as F

        t = self._tensors(inp)
        return Bound(lambda: F.conv2d(t["x"], t["weight"], t["bias"], case.stride, case.padding, 1, case.groups),
                     self._numpy)

    def bind_max_pool2d(self, case, inp, threads):
        import torch.nn.functional as F

        t = self._tensors(inp)
        return Bound(lambda: F.max_pool2d(t["x"], case.kernel, case.stride, case.padding), self._numpy)

    def bind_global_avg_pool2d(self, case, inp, threads):
        import torch.nn.functional as F

        t = self._tensors(inp)
        return Bound(lambda: F.adaptive_avg_pool2d(t["x"], 1), self._numpy)

    def bind_add_relu(self, case, inp, threads):
        import torch

        t = self._tensors(inp)
        return Bound(lambda: torch.relu_(torch.add(t["a"], t["b"])), self._numpy)

    def bind_linear(self, case, inp, threads):
        import torch.nn.functional as F

        t = self._tensors(inp)
        return Bound(lambda: F.linear(t["x"], t["weight"], t["bias"]), self._numpy)

    def bind_network(self, case, inp, threads):
        from . import networks

        try:
            tm = networks.torch_model(case.network)
        except ImportError as exc:
            raise Skip(f"needs torchvision ({exc})") from None
        t = self._tensors(inp)
        return Bound(lambda: tm(t["x"]), self._numpy)

    def bind_nms(self, case, inp, threads):
        tv_ops = _module("torchvision.ops")
        if tv_ops is None:
            raise Skip("torchvision does not import")
        t = self._tensors(inp)
        return Bound(lambda: tv_ops.nms(t["boxes"], t["scores"], case.iou_threshold), self._numpy)


def _onnx_model(case: Case, inp: Inputs):
    """The single-op ONNX graph of ``case`` and its input names."""
    if case.op == "conv2d":
        y_shape = [case.batch, case.cout, *case.out_hw]
        return onnx_graphs.conv2d(inp["x"].shape, inp["weight"], inp["bias"], case.stride, case.padding,
                                  case.groups, y_shape)
    if case.op == "max_pool2d":
        y_shape = [case.batch, case.c, *case.out_hw]
        return onnx_graphs.max_pool2d(inp["x"].shape, case.kernel, case.stride, case.padding, y_shape)
    if case.op == "global_avg_pool2d":
        return onnx_graphs.global_avg_pool2d(inp["x"].shape)
    if case.op == "add_relu":
        return onnx_graphs.add_relu(inp["a"].shape)
    if case.op == "linear":
        return onnx_graphs.linear(inp["x"].shape, inp["weight"], inp["bias"])
    raise Skip(f"no ONNX graph for {case.op}")


def _graph_inputs(case: Case, inp: Inputs) -> List[np.ndarray]:
    """The arrays fed to the graph's inputs, in order (the weights are constants inside it)."""
    if case.op == "add_relu":
        return [inp["a"], inp["b"]]
    if case.op == "nms":
        return [inp["boxes"][None], inp["scores"][None, None]]
    return [inp["x"]]


def _onnx_graph(case: Case, inputs: Inputs):
    """The ONNX graph a runtime peer runs for ``case`` and its input names: the single op, the ONNX NMS op, or
    the torchvision network exported from PyTorch."""
    if case.op == "nms":
        return onnx_graphs.nms(case.boxes, case.iou_threshold)
    if case.op == "network":
        from . import networks

        if _module("torch") is None:
            raise Skip("the ONNX model is exported from PyTorch, which does not import")
        try:
            return networks.onnx_model(case.network, case.batch), ["x"]
        except ImportError as exc:
            raise Skip(f"needs torchvision ({exc})") from None
    return _onnx_model(case, inputs)


def ort_session(model: bytes, threads: int, profile_prefix: Optional[str] = None):
    """An ONNX Runtime CPU session on ``model`` as the benchmarks run it: intra-op threads = ``threads``, one
    inter-op thread, sequential execution, all graph optimizations; with ``profile_prefix``, ONNX Runtime's
    own per-node profiling on, its JSON file named from that prefix."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OnnxRuntimePeer(Peer):
    """ONNX Runtime's CPU provider on a single-op graph: intra-op threads = ``threads``, one inter-op
    thread, sequential execution, all graph optimizations; inputs bound once with IOBinding."""

    name = "onnxruntime"
    module = "onnxruntime"

    def available(self):
        return super().available() and _module("onnx") is not None

    def bind(self, case, inputs, threads):
        model, names = _onnx_graph(case, inputs)
        sess = ort_session(model, threads)
        io = sess.io_binding()
        for name, arr in zip(names, _graph_inputs(case, inputs)):
            io.bind_cpu_input(name, np.ascontiguousarray(arr))
        io.bind_output(sess.get_outputs()[0].name)

        def call():
            sess.run_with_iobinding(io)

        def result(_):
            y = io.copy_outputs_to_cpu()[0]
            return y[:, 2] if case.op == "nms" else y

        return Bound(call, result)


class OpenVINOPeer(Peer):
    """OpenVINO's CPU plugin on the same ONNX graphs as ONNX Runtime, compiled for latency: ``threads``
    inference threads, one stream, float32 inference precision (it would pick bfloat16 on CPUs that have
    it); inputs set once on one infer request."""

    name = "openvino"
    module = "openvino"

    def available(self):
        return super().available() and _module("onnx") is not None

    def version(self):
        mod = _module(self.module)
        return mod.get_version().split("-")[0] if mod is not None else None

    def bind(self, case, inputs, threads):
        import os
        import tempfile

        import openvino as ov

        model, _ = _onnx_graph(case, inputs)
        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:  # read_model takes ONNX from a file
            path = os.path.join(tmp, "model.onnx")
            with open(path, "wb") as f:
                f.write(model)
            try:
                net = core.read_model(path)
                compiled = core.compile_model(net, "CPU", {
                    "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": "f32"})
            except RuntimeError as exc:
                raise Skip(f"OpenVINO cannot run it: {str(exc).strip().splitlines()[0][:120]}") from None
        request = compiled.create_infer_request()
        for i, arr in enumerate(_graph_inputs(case, inputs)):
            request.set_input_tensor(i, ov.Tensor(np.ascontiguousarray(arr)))

        def result(_):
            y = np.array(request.get_output_tensor(0).data)
            return y[:, 2] if case.op == "nms" else y

        return Bound(request.infer, result)


class OpenCVPeer(Peer):
    """OpenCV DNN (its default CPU backend) on the same single-op ONNX graphs; cv2.dnn.NMSBoxes for NMS."""

    name = "opencv"
    module = "cv2"

    def available(self):
        return super().available() and _module("onnx") is not None

    @contextlib.contextmanager
    def configured(self, threads):
        import cv2

        before = cv2.getNumThreads()
        cv2.setNumThreads(threads)
        try:
            yield
        finally:
            cv2.setNumThreads(before)

    def bind(self, case, inputs, threads):
        import cv2

        if case.op == "nms":
            b = inputs["boxes"].astype(np.float64)
            rects = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
            scores = inputs["scores"]
            return Bound(lambda: cv2.dnn.NMSBoxes(rects, scores, 0.0, case.iou_threshold),
                         lambda keep: np.asarray(keep, dtype=np.int64).reshape(-1))
        model, names = _onnx_model(case, inputs)
        try:
            net = cv2.dnn.readNetFromONNX(np.frombuffer(model, dtype=np.uint8))
            for name, arr in zip(names, _graph_inputs(case, inputs)):
                net.setInput(arr, name)
            net.forward()
        except cv2.error as exc:
            raise Skip(f"OpenCV DNN cannot run it: {str(exc).strip().splitlines()[-1]}") from None
        return Bound(net.forward)


ALL_PEERS = {"numpy": NumpyPeer, "torch": TorchPeer, "onnxruntime": OnnxRuntimePeer, "openvino": OpenVINOPeer,
             "opencv": OpenCVPeer}


def make_peers(names: Optional[List[str]] = None, numpy_max_gflop: float = 8.0) -> List[Peer]:
    """The peers called ``names`` (default: every one installed), in table order; unknown names raise."""
    if names is None:
        names = list(ALL_PEERS)
        only_available = True
    else:
        unknown = [n for n in names if n not in ALL_PEERS]
        if unknown:
            raise ValueError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(ALL_PEERS)}")
        only_available = False
    peers = []
    for name in names:
        peer = NumpyPeer(numpy_max_gflop) if name == "numpy" else ALL_PEERS[name]()
        if peer.available() or not only_available:
            peers.append(peer)
    return peers
