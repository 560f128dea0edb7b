"""Transfer learning: reuse a trained network's features for new classes.

>>> head = transfer.replace_head(model, num_classes=5)          # features frozen, a new Linear head
>>> fit(model, new_data, optimizer=optim.Adam(head.parameters(), 1e-2), epochs=20)   # doctest: +SKIP
>>> groups = transfer.fine_tune_groups(model, lr=1e-2, feature_lr=1e-3)         # then all, gently
>>> fit(model, new_data, optimizer=optim.SGD(groups, lr=1e-2, momentum=0.9), epochs=5)  # doctest: +SKIP

Frozen parameters get no gradient, and the backward pass stops at the first layer that learns, so training
a head on frozen features costs little more than the forward pass.
"""

from __future__ import annotations

from ..nn import Linear, Module, init


def freeze(module: Module) -> Module:
    """Stop every parameter of ``module`` (and below) from learning."""
    return module.requires_grad_(False)


def unfreeze(module: Module) -> Module:
    """Let every parameter of ``module`` (and below) learn again."""
    return module.requires_grad_(True)


def find_head(model: Module) -> tuple[Module, str, Linear]:
    """``(parent, name, layer)`` of the classifier: the last Linear layer registered in ``model`` (``fc`` of
    ResNet and GoogLeNet, ``output`` of LeNet-5, ``classifier.6`` of AlexNet and VGG)."""
    found = None
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if isinstance(child, Linear):
                found = (parent, name, child)
    if found is None:
        raise ValueError(f"find_head(): {type(model).__name__} has no Linear layer to replace")
    return found


def replace_head(model: Module, num_classes: int, freeze_features: bool = True, rng=None) -> Linear:
    """Put a new ``Linear(in_features, num_classes)`` in place of the model's head (see :func:`find_head`),
    freeze everything else when ``freeze_features``, and return the new layer. The new layer is in the
    model's current mode."""
    parent, name, old = find_head(model)
    head = Linear(old.in_features, num_classes, bias=old.bias is not None, init=init.glorot_uniform,
                  rng=init.as_rng(rng))
    if head.bias is not None:
        head.bias = head.bias * 0
    head.train(old.training)
    if freeze_features:
        freeze(model)
    setattr(parent, name, head)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return head


def fine_tune_groups(model: Module, lr: float, feature_lr: float) -> list[dict]:
    """Unfreeze the whole model and return optimizer parameter groups: the head at ``lr``, every other
    parameter at ``feature_lr`` (usually ten times lower)."""
    unfreeze(model)
    head = find_head(model)[2]
    head_ids = {id(p) for p in head.parameters()}
    features = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": features, "lr": feature_lr}, {"params": list(head.parameters()), "lr": lr}]
