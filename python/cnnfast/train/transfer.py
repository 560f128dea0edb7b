"""Transfer learning: reuse a trained network's features for new classes.

Two ways, both freezing what is reused:

* :func:`replace_head`: a new last Linear layer (ResNet's ``fc``, GoogLeNet's ``fc``, LeNet-5's ``output``)
  on the model's penultimate features.
* :func:`new_classifier`: a new Linear layer on the model's feature layers (:func:`feature_extractor`: the
  convolutional part of LeNet-5, AlexNet and VGG, everything up to the global pooling of ResNet and
  GoogLeNet), dropping the old fully connected layers. Convolutional features carry over to new classes
  better than the last layers, which specialize in the classes they were trained on.

>>> net = transfer.new_classifier(source_model, num_classes=5)                 # doctest: +SKIP
>>> fit(net, few_examples, optimizer=optim.Adam(net.head.parameters(), 1e-2), epochs=50)   # doctest: +SKIP
>>> groups = transfer.fine_tune_groups(net, lr=1e-3, feature_lr=1e-4)         # then all, gently
>>> fit(net, few_examples, optimizer=optim.Adam(groups), epochs=10)           # doctest: +SKIP

Frozen parameters get no gradient, and the backward pass stops at the first layer that learns, so training
a head on frozen features costs little more than the forward pass.
"""

from __future__ import annotations

import numpy as np

from ..nn import Conv2d, Flatten, Linear, Module, Sequential, backward_chain, init, no_grad
from ..nn.module import evaluating


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


def feature_extractor(model: Module) -> Sequential:
    """The feature layers of a model of :mod:`cnnfast.models`, as a Sequential sharing (not copying) its
    modules: LeNet-5 up to S4 (16x5x5 maps), AlexNet and VGG ``features`` and their pooling, ResNet and
    GoogLeNet up to the global average pooling (GoogLeNet's ``transform_input`` is left out)."""
    from ..models import VGG, AlexNet, GoogLeNet, LeNet5, ResNet

    if isinstance(model, LeNet5):
        steps = model._steps()
        return Sequential(*steps[:steps.index(model.s4) + 1])
    if isinstance(model, (AlexNet, VGG)):
        return Sequential(model.features, model.avgpool)
    if isinstance(model, ResNet):
        return Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                          model.layer3, model.layer4, model.avgpool)
    if isinstance(model, GoogLeNet):
        steps = list(model._steps())
        return Sequential(*steps[:steps.index(model.avgpool) + 1])
    raise TypeError(f"feature_extractor(): no feature layers known for {type(model).__name__}; build a Sequential "
                    "of the layers to reuse and pass it to FeatureClassifier")


class FeatureClassifier(Module):
    """``head(flatten(features(x)))``: reused feature layers and a new Linear classifier."""

    def __init__(self, features: Module, num_features: int, num_classes: int, rng=None):
        super().__init__()
        self.features = features
        self.flatten = Flatten()
        self.head = Linear(num_features, num_classes, init=init.glorot_uniform, rng=init.as_rng(rng))
        self.head.bias = np.zeros_like(self.head.bias)
        self.train(features.training)

    def forward(self, x):
        return self.head(self.flatten(self.features(x)))

    def backward(self, grad_output, input_grad: bool = True):
        return backward_chain((self.features, self.flatten, self.head), grad_output, input_grad)


def new_classifier(model: Module, num_classes: int, freeze_features: bool = True, input_shape=None,
                   rng=None) -> FeatureClassifier:
    """A :class:`FeatureClassifier` on the feature layers of ``model`` (see :func:`feature_extractor`; the
    modules are shared with ``model``, so copy it first to keep it as it is), frozen when
    ``freeze_features``. The feature size is found by running the features once on zeros of
    ``input_shape`` ((C, H, W); default: the model's first convolution's channels and ``input_size``)."""
    features = feature_extractor(model)
    if input_shape is None:
        first = next(m for m in features.modules() if isinstance(m, Conv2d))
        size = getattr(model, "input_size", 224)
        input_shape = (first.in_channels, size, size)
    with evaluating(features), no_grad():
        num_features = int(np.prod(np.shape(features(np.zeros((1,) + tuple(input_shape), np.float32)))[1:]))
    if freeze_features:
        freeze(features)
    return FeatureClassifier(features, num_features, num_classes, rng)
