"""The training loop: fit() over epochs with a progress bar and a History; evaluate()."""

from __future__ import annotations

import math
import time

import numpy as np

from .. import losses as _losses
from ..data.loader import DataLoader
from ..nn import Dropout, Module
from ..nn.module import evaluating

_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class History:
    """Per-epoch records of a :func:`fit` run: lists ``loss``, ``accuracy`` (None where the outputs are not
    class scores), ``val_loss``, ``val_accuracy`` (empty without validation data), ``lr`` (of the first
    parameter group) and ``seconds`` (wall time of the epoch, validation included)."""

    def __init__(self):
        for key in _KEYS:
            setattr(self, key, [])

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def as_dict(self) -> dict:
        return {key: list(getattr(self, key)) for key in _KEYS}

    def __repr__(self) -> str:
        if not self.loss:
            return "History(no epochs)"
        last = ", ".join(f"{k}={getattr(self, k)[-1]:.4g}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                         if getattr(self, k) and getattr(self, k)[-1] is not None)
        return f"History({self.epochs} epochs, last: {last})"

    def plot(self, path=None, title: str | None = None):
        """Draw the loss and accuracy curves (train and validation) with matplotlib; save the figure to
        ``path`` when given (format from the suffix). Returns the figure. Needs matplotlib
        (``pip install matplotlib`` or ``cnnfast[extras]``)."""
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot() needs matplotlib: pip install matplotlib "
                              "(or pip install cnnfast[extras])") from None
        epochs = np.arange(1, self.epochs + 1)
        has_acc = any(a is not None for a in self.accuracy)
        fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.6), squeeze=False)
        ax = axes[0, 0]
        ax.plot(epochs, self.loss, label="train")
        if self.val_loss:
            ax.plot(epochs, self.val_loss, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        if has_acc:
            ax = axes[0, 1]
            ax.plot(epochs, [np.nan if a is None else a for a in self.accuracy], label="train")
            if self.val_accuracy:
                ax.plot(epochs, [np.nan if a is None else a for a in self.val_accuracy], label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy")
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
            plt.close(fig)
        return fig


def _batches(data, batch_size: int, shuffle: bool, rng, what: str):
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return DataLoader(data[0], data[1], batch_size=batch_size, shuffle=shuffle, rng=rng)
    if hasattr(data, "__iter__") and not isinstance(data, np.ndarray):
        return data  # any re-iterable of (x, y) batches
    raise TypeError(f"{what} must be a DataLoader, an (x, y) pair of arrays or an iterable of (x, y) batches, "
                    f"got {type(data).__name__}")


def _correct(outputs, targets) -> int | None:
    """Correct predictions when outputs are class scores (N, C) and targets integer labels (N,)."""
    if targets is None:
        return None
    targets = np.asarray(targets)
    if outputs.ndim == 2 and targets.ndim == 1 and targets.dtype.kind in "iu":
        return int(np.count_nonzero(np.argmax(outputs, axis=1) == targets))
    return None


def _length(batches) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None


def evaluate(model: Module, data, loss="cross_entropy", batch_size: int = 256) -> dict:
    """Run ``model`` in eval mode over ``data`` (a DataLoader, an (x, y) pair, or (x, y) batches) and return
    ``{"loss": mean loss, "accuracy": fraction correct or None}``. ``loss=None`` skips the loss."""
    loss_fn = None if loss is None else _losses.get(loss)
    batches = _batches(data, batch_size, False, None, "evaluate(): data")
    total, loss_sum, correct, scored = 0, 0.0, 0, True
    with evaluating(model):
        for xb, yb in batches:
            out = np.asarray(model(xb))
            n = len(out)
            total += n
            if loss_fn is not None:
                loss_sum += loss_fn(out, yb)[0] * n
            c = _correct(out, yb)
            scored = scored and c is not None
            correct += c or 0
    if total == 0:
        raise ValueError("evaluate(): data holds no samples")
    return {"loss": loss_sum / total if loss_fn is not None else None,
            "accuracy": correct / total if scored else None}


def fit(model: Module, data, loss="cross_entropy", optimizer=None, epochs: int = 1, val_data=None, scheduler=None,
        progress: bool = True, batch_size: int = 32, seed=None, verbose: bool = False) -> History:
    """Train ``model`` for ``epochs`` passes over ``data`` and return a :class:`History`.

    Each step runs the model in training mode on a batch, the ``loss`` (a name such as 'cross_entropy' or a
    function ``(outputs, targets) -> (loss, grad)``, see :mod:`cnnfast.losses`), the model's backward pass
    (parameters only: no gradient for the input) and ``optimizer.step()``. ``scheduler.step()`` runs after
    each epoch, then the evaluation on ``val_data`` (in eval mode).

    ``data`` / ``val_data``: a :class:`cnnfast.data.DataLoader`, an (x, y) pair of arrays (batched by
    ``batch_size``, training data shuffled), or any re-iterable of (x, y) batches. ``progress`` shows a tqdm
    bar per epoch; ``verbose`` prints one line per epoch. ``seed`` fixes the shuffling of an (x, y) pair and
    reseeds the model's Dropout layers: with the same seed and thread count, two runs give the same model.
    The model is left in the mode it was in before.
    """
    if optimizer is None:
        raise TypeError("fit(): pass an optimizer, e.g. cnnfast.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit(): epochs must be an int >= 0, got {epochs!r}")
    loss_fn = _losses.get(loss)
    batches = _batches(data, batch_size, True, seed, "fit(): data")
    if seed is not None:
        seeds = np.random.SeedSequence(seed).spawn(sum(1 for m in model.modules() if isinstance(m, Dropout)))
        for m, s in zip((m for m in model.modules() if isinstance(m, Dropout)), seeds):
            m.rng = np.random.default_rng(s)
    bar_factory = None
    if progress:
        from tqdm.auto import tqdm as bar_factory
    history = History()
    was_training = model.training
    try:
        for epoch in range(int(epochs)):
            start = time.perf_counter()
            model.train()
            bar = bar_factory(total=_length(batches), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                              leave=True) if bar_factory else None
            seen, loss_sum, correct, scored = 0, 0.0, 0, True
            try:
                for step, (xb, yb) in enumerate(batches):
                    out = model(xb)
                    value, grad = loss_fn(out, yb)
                    if not math.isfinite(value):
                        raise FloatingPointError(f"fit(): the loss became {value} at epoch {epoch + 1}, step "
                                                 f"{step + 1}; lower the learning rate")
                    model.zero_grad()
                    model.backward(grad, input_grad=False)
                    optimizer.step()
                    n = len(out)
                    seen += n
                    loss_sum += value * n
                    c = _correct(np.asarray(out), yb)
                    scored = scored and c is not None
                    correct += c or 0
                    if bar is not None:
                        bar.update(1)
                        postfix = {"loss": f"{loss_sum / seen:.4f}"}
                        if scored:
                            postfix["acc"] = f"{correct / seen:.4f}"
                        bar.set_postfix(postfix, refresh=False)
            finally:
                if bar is not None:
                    bar.close()
            if seen == 0:
                raise ValueError("fit(): data holds no samples")
            history.loss.append(loss_sum / seen)
            history.accuracy.append(correct / seen if scored else None)
            history.lr.append(optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
            if val_data is not None:
                result = evaluate(model, _batches(val_data, batch_size, False, None, "fit(): val_data"), loss_fn)
                history.val_loss.append(result["loss"])
                history.val_accuracy.append(result["accuracy"])
            history.seconds.append(time.perf_counter() - start)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}: " + repr(history).split("last: ", 1)[1].rstrip(")")
                      + f" ({history.seconds[-1]:.1f} s)")
    finally:
        model.zero_grad()
        model.train(was_training)
    return history
