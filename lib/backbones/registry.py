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

from types import MappingProxyType

from lib.backbones import catalog, hub_compat
from lib.backbones.spec import RANDOM, Backbone, BackboneSpec
from lib.errors import TransferLabError
from lib.lazy import lazy_module

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

# Built once from the catalog and read-only: nothing a visitor does can add, replace or remove an
# entry for another session. A TF Hub handle resolves to its own spec instead (see `get_spec`).
_REGISTRY: MappingProxyType[str, BackboneSpec] = MappingProxyType({spec.name: spec for spec in catalog.SPECS})


def get_spec(name: str) -> BackboneSpec:
    """Returns the registry entry for `name`, or the spec of a TF Hub handle.

    Args:
        name: a registry key, or a TF Hub handle (a URL, `hub:URL`, or a SavedModel folder under
            `TRANSFERLAB_HUB_ROOTS`), optionally ending in `@SIZE` for the input side in pixels.
            A handle is resolved and safety-checked, never added to the registry.

    Raises:
        TransferLabError: no such backbone (the message lists the known names), or a hub handle
            that cannot be resolved or is refused.
    """
    name = str(name).strip()
    if name in _REGISTRY:
        return _REGISTRY[name]
    # A handle works wherever a name does, so a run's config can keep the handle itself.
    if hub_compat.looks_like_handle(name):
        return hub_compat.hub_spec(name)
    known = ", ".join(s.name for s in list_specs())
    raise TransferLabError(f"Unknown backbone `{name}`. Known backbones: {known}.")


def list_specs(include_hidden: bool = False) -> list[BackboneSpec]:
    """Returns the registry entries in registration order.

    Args:
        include_hidden: include test backbones (`listed=False`). Defaults to False.
    """
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
    return keras.Model(model.inputs, model.get_layer(cut).output, name=f"{spec.slug}_to_{cut}")
