"""Weights on disk: NumPy ``.npz`` archives, and safetensors files through the optional ``safetensors``
package. Both hold a flat mapping of dotted names to arrays, as ``Module.state_dict()`` gives it."""

from __future__ import annotations

import os

import numpy as np

FORMATS = ("npz", "safetensors")


def _format(path, format: str | None) -> str:
    if format is None:
        suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
        if suffix not in FORMATS:
            raise ValueError(f"cannot tell the format of {os.fspath(path)!r} from its suffix: use .npz or "
                             ".safetensors, or pass format='npz' / 'safetensors'")
        return suffix
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    return format


def _safetensors_numpy():
    try:
        from safetensors import numpy as st
    except ImportError:
        raise ImportError("reading or writing .safetensors files needs the 'safetensors' package: "
                          "pip install safetensors (or pip install cnnfast[extras])") from None
    return st


def save_state_dict(state_dict, path, format: str | None = None) -> None:
    """Write ``state_dict`` (name -> array) to ``path`` as ``.npz`` or ``.safetensors``."""
    fmt = _format(path, format)
    arrays = {str(k): np.asarray(v, order="C") for k, v in state_dict.items()}
    if fmt == "npz":
        # np.savez appends .npz to a name without it; write to the exact path given instead.
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    else:
        _safetensors_numpy().save_file(arrays, os.fspath(path))


def load_state_dict_file(path, format: str | None = None) -> dict:
    """Read a name -> array mapping written by :func:`save_state_dict` (or PyTorch's safetensors tooling)."""
    fmt = _format(path, format)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    return _safetensors_numpy().load_file(os.fspath(path))
