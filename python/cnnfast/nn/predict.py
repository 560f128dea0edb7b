"""model.predict(): a model over many inputs, a batch at a time, with an optional progress bar."""

from __future__ import annotations

import numpy as np

from .module import Module, evaluating


def _progress_bar(total: int, progress: bool | None):
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            raise ImportError("predict(progress=True) needs tqdm: pip install tqdm") from None
        return None
    # NOTE: with progress=None the bar shows only once a run has lasted 2 seconds.
    return tqdm(total=total, unit="img", delay=0 if progress else 2, leave=bool(progress))


def predict(model: Module, images, batch_size: int = 32, progress: bool | None = None, **preprocess_options):
    """See :meth:`Module.predict`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"predict(): batch_size must be a positive int, got {batch_size!r}")
    # A 4-D floating-point array is an NCHW batch ready for the model; anything else is images.
    ready = isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype.kind == "f"
    if not ready:
        from .. import preprocess

        size = getattr(model, "input_size", 224)
        preprocess_options.setdefault("size", size)
        preprocess_options.setdefault("resize_to", round(size * 256 / 224))
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            images = [images]
    elif preprocess_options:
        raise TypeError(f"predict(): an NCHW float array is used as it is; got options {sorted(preprocess_options)}")
    n = len(images)
    bar = _progress_bar(n, progress)
    outputs = []
    try:
        with evaluating(model):
            for start in range(0, max(n, 1), batch_size):
                chunk = images[start:start + batch_size]
                x = chunk.astype(np.float32, copy=False) if ready else preprocess.prepare(chunk, **preprocess_options)
                outputs.append(np.array(model(x), dtype=np.float32, copy=True))
                if bar is not None:
                    bar.update(len(x))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
