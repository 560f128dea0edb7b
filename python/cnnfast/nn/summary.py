"""model.summary(): one row per layer run, with output shape, parameters and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .module import Module, evaluating, tracing


@dataclass
class SummaryRow:
    name: str  # dotted name in the model, as in the state dict
    type: str
    output_shape: tuple  # without the batch dimension
    parameters: int  # counted at a layer's first call only
    macs: int  # multiply-accumulates for one input


@dataclass
class Summary:
    model: str
    input_shape: tuple
    rows: list = field(default_factory=list)
    total_parameters: int = 0
    total_macs: int = 0

    def row(self, name: str) -> SummaryRow:
        """The first row of the layer called ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no layer named {name!r} in the summary")

    def __str__(self) -> str:
        header = ("Layer", "Type", "Output shape", "Params", "MACs")
        body = [(r.name, r.type, str(r.output_shape), f"{r.parameters:,}", f"{r.macs:,}") for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]

        def line(cells):
            left = "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths[:3]))
            right = "  ".join(c.rjust(w) for c, w in zip(cells[3:], widths[3:]))
            return f"{left}  {right}"

        rule = "-" * len(line(header))
        out = [f"{self.model}, input {self.input_shape}", rule, line(header), rule]
        out += [line(b) for b in body]
        out += [rule, f"Total parameters: {self.total_parameters:,}", f"Total MACs: {self.total_macs:,}"]
        return "\n".join(out)


def summarize(model: Module, input_shape) -> Summary:
    """Trace one forward pass of an empty batch of ``input_shape`` ((C, H, W) or (N, C, H, W); the batch
    size is ignored) through ``model``, layers unfused, in eval mode."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        raise ValueError(f"summary(): input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    names = {id(m): name for name, m in model.named_modules()}
    result = Summary(type(model).__name__, shape)
    seen = set()

    def hook(module, inputs, output):
        if any(True for _ in module.children()):
            return  # containers: their layers have rows of their own
        first_call = id(module) not in seen
        seen.add(id(module))
        in_shape = np.shape(inputs[0]) if inputs else ()
        out_shape = np.shape(output)
        macs = module.macs(in_shape, out_shape) if hasattr(module, "macs") else 0
        params = module.num_parameters() if first_call else 0
        result.rows.append(SummaryRow(names.get(id(module), "?"), type(module).__name__, out_shape[1:], params, macs))

    with evaluating(model), tracing(hook):
        # NOTE: a batch of 0 images: every kernel returns the right shapes without computing anything.
        model(np.zeros((0,) + shape, np.float32))
    result.total_parameters = model.num_parameters()
    result.total_macs = sum(r.macs for r in result.rows)
    return result
