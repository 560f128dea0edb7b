"""Module: the base class of every layer, block and model."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Callable, Iterator, NamedTuple

import numpy as np

# While summary() traces a forward pass: a function called as hook(module, inputs, output) after every
# module call; fused paths are switched off so every layer is called on its own.
_trace_hook: Callable | None = None


@contextlib.contextmanager
def tracing(hook: Callable) -> Iterator[None]:
    """Call ``hook(module, inputs, output)`` after every module call inside the block, layers unfused."""
    global _trace_hook
    before = _trace_hook
    _trace_hook = hook
    try:
        yield
    finally:
        _trace_hook = before


def is_tracing() -> bool:
    return _trace_hook is not None


@contextlib.contextmanager
def evaluating(model: "Module") -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then put every module back in the mode it was in."""
    modes = [(m, m.training) for m in model.modules()]
    if not any(training for _, training in modes):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)
            m._drop_cache()


class LoadResult(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class StateDictError(ValueError):
    """A state dict that does not match the module: missing, unexpected or wrongly shaped keys."""


def _as_parameter(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a torch tensor that requires grad
        raise TypeError(f"parameter '{name}': cannot convert {type(value).__name__} to a NumPy array ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"parameter '{name}' must be a real array, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


class Module:
    """Base class of layers and models: parameters, buffers and submodules, found by name.

    * Parameters are float32 NumPy arrays (``register_parameter``); buffers are the other state that is
      saved but not learned, such as a batch norm's running statistics (``register_buffer``). Assigning a
      Module to an attribute registers it as a submodule; assigning an array to a registered name replaces
      the parameter or buffer (same shape required). No copy is made of a float32 C-contiguous array.
    * ``state_dict()`` holds parameters and buffers under dotted names (``layer1.0.conv1.weight``), as
      PyTorch names them, so a torchvision state dict loads without renaming.
    * Modules start in eval (inference) mode; ``train()`` switches to training behaviour (batch statistics
      in batch norm, dropout). In eval mode a batch norm that follows a convolution is folded into it, and
      the arrays folded are made read-only until the mode changes or they are replaced: edit a parameter by
      assigning a new array (or call ``train()`` first), not in place.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", False)
        object.__setattr__(self, "_version", 0)  # bumped when a parameter or buffer is replaced

    # -- registration -----------------------------------------------------------------------------------

    def register_parameter(self, name: str, value) -> None:
        """Add a float32 parameter (None for an absent optional one, such as a conv without bias)."""
        self._check_new_name(name)
        self._parameters[name] = None if value is None else _as_parameter(value, name)
        self._changed()

    def register_buffer(self, name: str, value) -> None:
        """Add a saved, non-learned array (its dtype is kept: ``num_batches_tracked`` is int64)."""
        self._check_new_name(name)
        self._buffers[name] = np.asarray(value)
        self._changed()

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"invalid name {name!r}: a non-empty string without '.'")
        if name in self._parameters or name in self._buffers or name in self._modules:
            raise ValueError(f"{type(self).__name__} already has an attribute named '{name}'")

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Module):
            if name in self._parameters or name in self._buffers:
                raise TypeError(f"cannot assign a module to '{name}', a parameter or buffer")
            self._modules[name] = value
        elif name in self._parameters:
            if value is not None:
                value = _as_parameter(value, name)
                old = self._parameters[name]
                if old is not None and old.shape != value.shape:
                    raise ValueError(f"parameter '{name}' has shape {old.shape}, cannot assign shape {value.shape}")
            self._parameters[name] = value
            self._changed()
        elif name in self._buffers:
            value = np.asarray(value)
            old = self._buffers[name]
            if old.shape != value.shape:
                raise ValueError(f"buffer '{name}' has shape {old.shape}, cannot assign shape {value.shape}")
            self._buffers[name] = value.astype(old.dtype, copy=False)
            self._changed()
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule '{name}' (a Module or None)")
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: parameters, buffers and submodules live in the dicts.
        for table in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._changed()
                return
        object.__delattr__(self, name)

    def _changed(self) -> None:
        object.__setattr__(self, "_version", self._version + 1)
        self._drop_cache()

    def _drop_cache(self) -> None:
        """Forget anything derived from the parameters (overridden by layers that cache)."""

    # -- running ----------------------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if _trace_hook is not None:
            _trace_hook(self, args, out)
        return out

    def train(self, mode: bool = True) -> "Module":
        """Training mode (``mode=True``) or eval mode, for this module and all below it."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
            m._drop_cache()
        return self

    def eval(self) -> "Module":
        """Inference mode: running statistics, no dropout, batch norm folded into convolutions."""
        return self.train(False)

    # -- walking the tree ------------------------------------------------------------------------------

    def children(self) -> Iterator["Module"]:
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(dotted name, module) for this module ('' or ``prefix``) and every module below it."""
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[np.ndarray]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self) -> int:
        """The number of learned values (parameters; buffers such as running statistics are not counted)."""
        return int(sum(p.size for p in self.parameters()))

    # -- state -----------------------------------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers by dotted name, in PyTorch's order (each module's own, then its children's).

        The arrays are the module's own, not copies.
        """
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        self._collect_state(out, "")
        return out

    def _collect_state(self, out: dict, prefix: str) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p
        for name, b in self._buffers.items():
            out[prefix + name] = b
        for name, m in self.named_children():
            m._collect_state(out, f"{prefix}{name}.")

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadResult:
        """Copy parameters and buffers from a mapping of dotted names to arrays (NumPy, or anything
        ``np.asarray`` takes).

        Every key is checked before anything is loaded. A wrongly shaped key is always an error; with
        ``strict`` (the default) missing and unexpected keys are too. One StateDictError lists them all.
        Returns the (missing_keys, unexpected_keys) that were tolerated.
        """
        own = self.state_dict()
        given = {str(k): v for k, v in state_dict.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        wrong_shape = []
        for k, target in own.items():
            if k in given:
                shape = tuple(np.shape(given[k]))
                if shape != target.shape:
                    wrong_shape.append(f"{k}: expected {target.shape}, got {shape}")
        if wrong_shape or (strict and (missing or unexpected)):
            lines = [f"cannot load state dict into {type(self).__name__}:"]
            if missing and strict:
                lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
            if unexpected and strict:
                lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
            if wrong_shape:
                lines.append(f"  wrong shapes ({len(wrong_shape)}): {'; '.join(wrong_shape)}")
            raise StateDictError("\n".join(lines))
        owners = {}
        for mod_name, m in self.named_modules():
            for name in list(m._parameters) + list(m._buffers):
                owners[f"{mod_name}.{name}" if mod_name else name] = (m, name)
        for k in own:
            if k in given:
                m, name = owners[k]
                # A fresh array: the caller's dict stays independent of the module.
                value = np.array(given[k], dtype=own[k].dtype, order="C", copy=True)
                setattr(m, name, value)
        return LoadResult(missing, unexpected)

    # -- conveniences shared by every model ------------------------------------------------------------

    def summary(self, input_shape, print_fn: Callable | None = print):
        """A table of the layers run on an input of ``input_shape`` ((C, H, W) or (N, C, H, W)): output
        shape, parameters and multiply-accumulates of each, and totals. Printed with ``print_fn`` (None: not
        printed) and returned as a :class:`cnnfast.nn.summary.Summary` (``.rows``, ``str()``)."""
        from .summary import summarize

        result = summarize(self, input_shape)
        if print_fn is not None:
            print_fn(str(result))
        return result

    def save(self, path, format: str | None = None) -> None:
        """Write the state dict to ``path``: ``.npz`` or ``.safetensors`` (from the suffix, or ``format``)."""
        from .weights import save_state_dict

        save_state_dict(self.state_dict(), path, format=format)

    def load(self, path, strict: bool = True, format: str | None = None) -> LoadResult:
        """Load weights written by :meth:`save` (or any ``.npz`` / ``.safetensors`` with the same names)."""
        from .weights import load_state_dict_file

        return self.load_state_dict(load_state_dict_file(path, format=format), strict=strict)

    def predict(self, images, batch_size: int = 32, progress: bool | None = None, **preprocess_options):
        """Run the model on many inputs, ``batch_size`` at a time, and return the stacked outputs.

        ``images``: an NCHW floating-point array ready for the model, or images (one HWC array, a list, or
        an NHWC integer batch) that :func:`cnnfast.preprocess.prepare` turns into one (``preprocess_options`` are
        passed to it; the crop size defaults to the model's ``input_size``). ``progress``: True shows a
        tqdm progress bar, False never, None (default) shows one only for runs that last more than two
        seconds.
        """
        from .predict import predict

        return predict(self, images, batch_size=batch_size, progress=progress, **preprocess_options)

    # -- display ---------------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        if not children:
            return lines[0] + ")"
        for name, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
