"""Module: the base class of every layer, block and model."""

from __future__ import annotations

import contextlib
import threading
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


# Gradient recording. None: modules in training mode record what backward needs; True (enable_grad): every
# module does, in eval mode too; False (no_grad): none does. ``pass_id`` counts outermost module calls, so
# that state left by an earlier forward pass is dropped when a module records again.
class _GradState(threading.local):
    mode: bool | None = None
    depth: int = 0
    pass_id: int = 0
    recording: bool = False  # decided by the outermost module call of the pass


_grad = _GradState()


@contextlib.contextmanager
def _grad_mode(mode: bool | None) -> Iterator[None]:
    before = _grad.mode
    _grad.mode = mode
    try:
        yield
    finally:
        _grad.mode = before


def enable_grad():
    """Context manager: forward passes inside the block record what ``backward`` needs even in eval mode
    (running statistics, no dropout), with the eval-mode fusions off. For gradients with respect to an
    input of a trained model, as style transfer and adversarial examples need."""
    return _grad_mode(True)


def no_grad():
    """Context manager: forward passes inside the block record nothing, in training mode too."""
    return _grad_mode(False)


def is_recording(module: "Module | None" = None) -> bool:
    """Whether the forward pass under way records what backward needs: when the module it was called on
    (the outermost) is in training mode, or always inside :func:`enable_grad`, never inside :func:`no_grad`.
    Outside any module call, ``module``'s own mode decides."""
    if _grad.depth > 0:
        return _grad.recording
    if _grad.mode is not None:
        return _grad.mode
    return module is not None and module.training


class Parameter(np.ndarray):
    """A learned float32 array: an ``np.ndarray`` with two attributes more, as in PyTorch.

    * ``grad``: None, or an array of the same shape that backward passes add into (``zero_grad()`` resets).
    * ``requires_grad``: False freezes the parameter; backward passes then compute no gradient for it.

    Arithmetic on a parameter gives plain arrays; views of one (``w.T``, ``w[0]``) are parameters without
    a gradient.
    """

    def __new__(cls, value, requires_grad: bool = True):
        p = np.asarray(value, dtype=np.float32, order="C").view(cls)
        p.requires_grad = bool(requires_grad)
        p.grad = None
        return p

    def __array_finalize__(self, obj) -> None:
        self.requires_grad = getattr(obj, "requires_grad", True)
        self.grad = None

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        # Computed on plain views, so that results are plain arrays; ``out`` is written and returned as given.
        inputs = tuple(np.asarray(a) if isinstance(a, Parameter) else a for a in inputs)
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, Parameter) else o for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result

    def __reduce__(self):
        return (Parameter, (np.asarray(self), self.requires_grad))

    def __repr__(self) -> str:
        body = repr(np.asarray(self)).replace("array(", "Parameter(", 1)
        return body if self.requires_grad else body[:-1] + ", requires_grad=False)"


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


def needs_grad(p) -> bool:
    """Whether a backward pass computes a gradient for parameter ``p`` (present and not frozen)."""
    return p is not None and getattr(p, "requires_grad", True)


def accumulate_grad(p, grad) -> None:
    """Add ``grad`` into ``p.grad`` (which becomes ``grad`` itself when it was None)."""
    if grad is None:
        return
    if p.grad is None:
        grad = np.asarray(grad)
        own = grad.dtype == np.float32 and grad.flags.owndata and grad.flags.c_contiguous
        p.grad = grad if own else np.array(grad, dtype=np.float32, order="C")
    else:
        p.grad += grad


def backward_chain(modules, grad_output, input_grad: bool = True):
    """Backward through ``modules`` that the forward pass called one after the other (listed in forward
    order; a module may appear more than once). Stops early, before the first module with trainable
    parameters, when the input's gradient is not asked for."""
    modules = list(modules)
    first = next((i for i, m in enumerate(modules) if m.has_trainable_parameters()), len(modules))
    grad = grad_output
    for i in range(len(modules) - 1, -1, -1):
        if i < first and not input_grad:
            return None
        grad = modules[i].backward(grad, input_grad=input_grad or i > first)
    return grad if input_grad else None


class LoadResult(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class StateDictError(ValueError):
    """A state dict that does not match the module: missing, unexpected or wrongly shaped keys."""


def _as_parameter(value, name: str, requires_grad: bool = True) -> Parameter:
    if isinstance(value, Parameter) and value.flags.c_contiguous:
        return value
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a torch tensor that requires grad
        raise TypeError(f"parameter '{name}': cannot convert {type(value).__name__} to a NumPy array ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"parameter '{name}' must be a real array, got dtype {arr.dtype}")
    return Parameter(arr, requires_grad)


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
    * Parameters are :class:`Parameter` arrays. A forward pass of a module in training mode (or inside
      :func:`enable_grad`) records what :meth:`backward` needs; ``backward(grad_output)`` adds the
      parameters' gradients into their ``.grad`` and returns the input's. ``requires_grad_(False)``
      freezes a module's parameters; ``zero_grad()`` resets the gradients.
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
            # NOTE: also an instance attribute, so that `self.conv` in a forward pass is a plain lookup rather
            # than a call of __getattr__ (0.6 us each, a few hundred per forward pass of GoogLeNet)
            object.__setattr__(self, name, value)
        elif name in self._parameters:
            if value is not None:
                old = self._parameters[name]
                # A plain array replacing a frozen parameter stays frozen (load_state_dict assigns plain arrays).
                value = _as_parameter(value, name, old is None or old.requires_grad)
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
            object.__setattr__(self, name, None)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: parameters and buffers live in the dicts only (submodules are
        # instance attributes too, which normal lookup finds first).
        for table in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self.__dict__.pop(name, None)  # a submodule's instance attribute (__setattr__)
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
        grad = _grad
        if grad.depth == 0:
            grad.pass_id += 1
            grad.recording = self.training if grad.mode is None else grad.mode
        grad.depth += 1
        try:
            out = self.forward(*args, **kwargs)
        finally:
            grad.depth -= 1
        if _trace_hook is not None:
            _trace_hook(self, args, out)
        return out

    # -- gradients -------------------------------------------------------------------------------------

    def backward(self, grad_output, input_grad: bool = True):
        """Go back through the last forward pass: add the gradients of the loss with respect to the
        parameters into their ``.grad`` (frozen ones skipped), and return the gradient with respect to the
        input (None with ``input_grad=False``, which spares computing it).

        ``grad_output`` is the gradient of the loss with respect to this module's output. The forward pass
        must have run in training mode (or inside :func:`enable_grad`); each forward pass is gone back
        through once. A module called several times in one pass (a shared ReLU) is gone back through in
        reverse order of its calls.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    def _record(self, *values) -> None:
        """Keep what backward needs from this forward call (when recording: see :func:`is_recording`)."""
        d = self.__dict__
        if d.get("_saved_pass") != _grad.pass_id:
            d["_saved"], d["_saved_pass"] = [], _grad.pass_id
        d["_saved"].append(values)

    def _recorded(self):
        """What the matching forward call kept; calls are gone back through last first."""
        saved = self.__dict__.get("_saved")
        if not saved:
            raise RuntimeError(f"{type(self).__name__}.backward(): no forward pass to go back through; run the "
                               "forward pass in training mode (model.train()) or inside nn.enable_grad(), "
                               "then backward once per forward")
        values = saved.pop()
        return values[0] if len(values) == 1 else values

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the parameters' gradients: to None (the default; optimizers skip them), or to zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (False) or unfreeze every parameter of this module and those below it."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def has_trainable_parameters(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> "Module":
        """Training mode (``mode=True``) or eval mode, for this module and all below it."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
            m._drop_cache()
            m.__dict__.pop("_saved", None)
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
