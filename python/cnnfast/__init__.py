"""cnnfast: fast CPU kernels for convolutional networks, called on NumPy arrays.

Activations are float32 NCHW, convolution weights OIHW (PyTorch's layouts), boxes (x1, y1, x2, y2).
"""

from __future__ import annotations

import os as _os

# GNU OpenMP reads GOMP_SPINCOUNT once, when it loads (with _core, below): how long an idle worker thread
# spins before it sleeps. A sleeping thread whose core has gone idle can take a millisecond or more to wake
# on a virtual machine, and then keeps its partner waiting past a short spin, which sends that one to sleep
# in turn. With 20,000 spins (about 1.3 ms), two-thread layers called in a loop after a pause ran 3-20x
# slower for tens of calls (a 1x1 192 -> 64 on 28x28: median 0.20-1.35 ms against 0.07; 46-58% of the calls
# of a 5x5 192 -> 32 over 2 ms). With 100,000 spins (about 4 ms) the 1x1 ran at 0.07-0.08 ms and 10-13% of
# the 5x5's calls took over 2 ms, about as with the runtime's default of 300,000 spins (5-7%), which keep a
# core busy for about 10 ms after every call. Set for the load only, so that other libraries' OpenMP
# runtimes loaded later keep their own defaults, and not at all where the user chose a wait policy or spin
# count.
_spin_default = "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ
if _spin_default:
    _os.environ["GOMP_SPINCOUNT"] = "100000"
try:
    from . import _core
finally:
    if _spin_default:
        _os.environ.pop("GOMP_SPINCOUNT", None)
del _spin_default

try:
    _core._init_isa_from_env()
except ValueError as exc:  # CNNFAST_ISA names an ISA this CPU cannot run
    raise ImportError(f"cnnfast: {exc}") from None

from ._core import (  # noqa: E402
    add,
    avg_pool2d,
    avg_pool2d_backward,
    batched_nms,
    box_iou,
    conv2d,
    conv2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    linear,
    linear_backward,
    max_pool2d,
    max_pool2d_backward,
    nms,
    relu_backward,
)
from ._config import (  # noqa: E402
    config,
    empty_cache,
    get_cache_limit,
    get_num_threads,
    num_threads,
    set_cache_limit,
    set_num_threads,
    show_config,
)
from ._functional import relu, softmax  # noqa: E402
from ._shapes import conv_output_shape  # noqa: E402
from ._version import __version__  # noqa: E402
from . import data, filters, losses, models, nn, optim, preprocess, train  # noqa: E402

__all__ = [
    "__version__",
    "add",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batched_nms",
    "box_iou",
    "config",
    "conv2d",
    "conv2d_backward",
    "conv_output_shape",
    "data",
    "empty_cache",
    "filters",
    "get_cache_limit",
    "get_num_threads",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "linear",
    "linear_backward",
    "losses",
    "max_pool2d",
    "max_pool2d_backward",
    "models",
    "nms",
    "nn",
    "num_threads",
    "optim",
    "preprocess",
    "relu",
    "relu_backward",
    "set_cache_limit",
    "set_num_threads",
    "show_config",
    "softmax",
    "train",
]
