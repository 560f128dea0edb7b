"""Single-op ONNX graphs for the suite's cases, run by ONNX Runtime and OpenCV DNN.

Weights are initializers (constants), as in a deployed model, so a runtime may pre-pack them; the
activations are graph inputs. Each builder returns a serialized ModelProto and the input names in the
order the case's inputs are fed.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

OPSET = 17


def _build(nodes, inputs, outputs, initializers) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "cnnfast_bench", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # understood by every ONNX Runtime and OpenCV that read opset 17
    return model.SerializeToString()


def _value(name: str, shape, elem=None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT if elem is None else elem, list(shape))


def _const(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def conv2d(x_shape, weight: np.ndarray, bias, stride: int, padding: int, groups: int, y_shape) -> Tuple[bytes, List[str]]:
    """Y = Conv(X, W, B) with square strides and symmetric pads."""
    from onnx import helper

    inits = [_const("W", weight)] + ([_const("B", bias)] if bias is not None else [])
    node = helper.make_node("Conv", ["X", "W"] + (["B"] if bias is not None else []), ["Y"],
                            kernel_shape=list(weight.shape[2:]), strides=[stride, stride], pads=[padding] * 4,
                            group=groups)
    return _build([node], [_value("X", x_shape)], [_value("Y", y_shape)], inits), ["X"]


def max_pool2d(x_shape, kernel: int, stride: int, padding: int, y_shape) -> Tuple[bytes, List[str]]:
    """Y = MaxPool(X)."""
    from onnx import helper

    node = helper.make_node("MaxPool", ["X"], ["Y"], kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[padding] * 4)
    return _build([node], [_value("X", x_shape)], [_value("Y", y_shape)], []), ["X"]


def global_avg_pool2d(x_shape) -> Tuple[bytes, List[str]]:
    """Y = GlobalAveragePool(X)."""
    from onnx import helper

    node = helper.make_node("GlobalAveragePool", ["X"], ["Y"])
    y_shape = list(x_shape[:2]) + [1, 1]
    return _build([node], [_value("X", x_shape)], [_value("Y", y_shape)], []), ["X"]


def add_relu(shape) -> Tuple[bytes, List[str]]:
    """Y = Relu(A + B); runtimes that fuse the two do so themselves."""
    from onnx import helper

    nodes = [helper.make_node("Add", ["A", "B"], ["S"]), helper.make_node("Relu", ["S"], ["Y"])]
    return _build(nodes, [_value("A", shape), _value("B", shape)], [_value("Y", shape)], []), ["A", "B"]


def linear(x_shape, weight: np.ndarray, bias) -> Tuple[bytes, List[str]]:
    """Y = Gemm(X, W, B, transB=1): x @ weight.T + bias."""
    from onnx import helper

    inits = [_const("W", weight)] + ([_const("B", bias)] if bias is not None else [])
    node = helper.make_node("Gemm", ["X", "W"] + (["B"] if bias is not None else []), ["Y"], transB=1)
    y_shape = [x_shape[0], weight.shape[0]]
    return _build([node], [_value("X", x_shape)], [_value("Y", y_shape)], inits), ["X"]


def nms(n: int, iou_threshold: float) -> Tuple[bytes, List[str]]:
    """Indices = NonMaxSuppression(boxes (1, n, 4), scores (1, 1, n)) keeping every box that survives."""
    from onnx import TensorProto, helper

    inits = [_const("max_out", np.array([n], dtype=np.int64)),
             _const("iou", np.array([iou_threshold], dtype=np.float32))]
    node = helper.make_node("NonMaxSuppression", ["BOXES", "SCORES", "max_out", "iou"], ["Y"], center_point_box=0)
    inputs = [_value("BOXES", [1, n, 4]), _value("SCORES", [1, 1, n])]
    return _build([node], inputs, [_value("Y", ["k", 3], TensorProto.INT64)], inits), ["BOXES", "SCORES"]
