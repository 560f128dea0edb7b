"""Output-size arithmetic of convolutions and pooling, for users who only want the numbers."""

from __future__ import annotations

from typing import Tuple, Union

IntPair = Union[int, Tuple[int, int]]


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"conv_output_shape(): {name} must be an int or a pair of ints, got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"conv_output_shape(): {name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"conv_output_shape(): {name} must be >= {minimum}, got {value!r}")
    return pair


def conv_output_shape(
    input_hw: IntPair,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> tuple[int, int]:
    """(H_out, W_out) of a convolution or pooling window over an (H, W) input.

    n_out = floor((n + 2p - d(f - 1) - 1) / s) + 1 per dimension (ceil instead of floor with ``ceil_mode``,
    as pooling does, keeping only windows that start inside the input or its left padding).
    ``padding='valid'`` means 0; ``padding='same'`` (stride 1 only) returns the input size.

    >>> conv_output_shape(224, 11, stride=4, padding=2)
    (55, 55)
    """
    hw = _pair(input_hw, "input_hw", 1)
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride, "stride", 1)
    d = _pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding == "valid":
            p = (0, 0)
        elif padding == "same":
            if s != (1, 1):
                raise ValueError(f"conv_output_shape(): padding='same' needs stride 1, got stride {stride!r}")
            return hw
        else:
            raise ValueError(f"conv_output_shape(): padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        p = _pair(padding, "padding", 0)
    out = []
    for n, f, si, pi, di in zip(hw, k, s, p, d):
        span = n + 2 * pi - di * (f - 1) - 1
        if span < 0:
            raise ValueError(
                f"conv_output_shape(): a kernel of size {kernel_size!r} (dilation {dilation!r}) does not fit in the "
                f"padded input {input_hw!r} + 2 * {padding!r}"
            )
        o = -(-span // si) + 1 if ceil_mode else span // si + 1
        if ceil_mode and (o - 1) * si >= n + pi:  # the last window would start in the right padding
            o -= 1
        out.append(o)
    return out[0], out[1]
