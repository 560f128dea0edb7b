"""Type stubs for the compiled module cnnfast._core."""

from types import ModuleType
from typing import Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Pair = Union[int, Tuple[int, int], Sequence[int]]
_Array = npt.ArrayLike
_F32 = npt.NDArray[np.float32]

def conv2d(
    x: _Array,
    weight: _Array,
    bias: Optional[_Array] = None,
    stride: _Pair = 1,
    padding: Union[_Pair, Literal["valid", "same"]] = 0,
    dilation: _Pair = 1,
    groups: int = 1,
    activation: Optional[Literal["relu"]] = None,
    out: Optional[_F32] = None,
    algorithm: Literal["auto", "direct", "winograd"] = "auto",
    prepared: Optional["PreparedConv2d"] = None,
    residual: Optional[_Array] = None,
) -> _F32: ...

class PreparedConv2d:
    @property
    def kind(self) -> Literal["none", "panels", "transposed", "winograd"]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def isa(self) -> str: ...

def conv2d_prepare(
    x: _Array,
    weight: _Array,
    stride: _Pair = 1,
    padding: Union[_Pair, Literal["valid", "same"]] = 0,
    dilation: _Pair = 1,
    groups: int = 1,
    algorithm: Literal["auto", "direct", "winograd"] = "auto",
) -> PreparedConv2d: ...
def max_pool2d(
    x: _Array, kernel_size: _Pair, stride: Optional[_Pair] = None, padding: _Pair = 0, ceil_mode: bool = False
) -> _F32: ...
def avg_pool2d(
    x: _Array,
    kernel_size: _Pair,
    stride: Optional[_Pair] = None,
    padding: _Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> _F32: ...
def global_avg_pool2d(x: _Array) -> _F32: ...
def add(a: _Array, b: _Array, relu: bool = False, out: Optional[_F32] = None) -> _F32: ...
class PreparedLinear:
    @property
    def nbytes(self) -> int: ...
    @property
    def isa(self) -> str: ...

def linear_prepare(weight: _Array) -> PreparedLinear: ...
def linear(
    x: _Array,
    weight: _Array,
    bias: Optional[_Array] = None,
    activation: Optional[Literal["relu"]] = None,
    prepared: Optional[PreparedLinear] = None,
) -> _F32: ...
def conv2d_backward(
    grad_output: _Array,
    x: _Array,
    weight: _Array,
    stride: _Pair = 1,
    padding: Union[_Pair, Literal["valid", "same"]] = 0,
    dilation: _Pair = 1,
    groups: int = 1,
    activation: Optional[Literal["relu"]] = None,
    output: Optional[_Array] = None,
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
) -> Tuple[Optional[_F32], Optional[_F32], Optional[_F32]]: ...
def max_pool2d_backward(
    grad_output: _Array,
    x: _Array,
    kernel_size: _Pair,
    stride: Optional[_Pair] = None,
    padding: _Pair = 0,
    ceil_mode: bool = False,
) -> _F32: ...
def avg_pool2d_backward(
    grad_output: _Array,
    x: _Array,
    kernel_size: _Pair,
    stride: Optional[_Pair] = None,
    padding: _Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> _F32: ...
def global_avg_pool2d_backward(grad_output: _Array, x: _Array) -> _F32: ...
def linear_backward(
    grad_output: _Array,
    x: _Array,
    weight: _Array,
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
) -> Tuple[Optional[_F32], Optional[_F32], Optional[_F32]]: ...
def relu_backward(grad_output: _Array, output: _Array) -> _F32: ...
def box_iou(a: _Array, b: _Array) -> _F32: ...
def nms(
    boxes: _Array,
    scores: _Array,
    iou_threshold: float,
    score_threshold: Optional[float] = None,
    max_output: Optional[int] = None,
) -> npt.NDArray[np.int64]: ...
def batched_nms(
    boxes: _Array,
    scores: _Array,
    class_ids: _Array,
    iou_threshold: float,
    score_threshold: Optional[float] = None,
    max_output: Optional[int] = None,
) -> npt.NDArray[np.int64]: ...

reference: ModuleType

def _init_isa_from_env() -> None: ...
def _current_isa() -> str: ...
def _set_isa(isa: str) -> None: ...
def _supported_isas() -> list[str]: ...
def _compiled_isas() -> list[str]: ...
def _full_width_avx512() -> bool: ...
def _set_num_threads(n: int) -> None: ...
def _get_num_threads() -> int: ...
def _set_min_work_per_thread(macs: int) -> None: ...
def _get_min_work_per_thread() -> int: ...
def _measure_fma_peak(threads: int = 1) -> float: ...
def _workspace_peak() -> int: ...
def _workspace_in_use() -> int: ...
def _workspace_reset_peak() -> None: ...
def _cached_bytes() -> int: ...
def _cache_limit() -> int: ...
def _set_cache_limit(nbytes: int) -> None: ...
def _empty(shape: Sequence[int]) -> _F32: ...
