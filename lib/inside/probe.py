"""Views into a classifier that attacks, ideal images and Grad-CAM share.

Every TransferLab classifier maps pixels in [0, 255], shape (B, S, S, 3), to softmax probabilities,
with a Dense layer `logits` before the softmax layer `probabilities`. Two layouts exist:

* a flat backbone (EfficientNet-Lite, `tiny_random`): every layer, feature maps included, sits in
  the top-level graph;
* a trained run (`pixels -> body(x) -> head -> probabilities`): the feature maps live inside a nested
  body model, and the head's layers may sit at the top level or in a nested head model.

`ModelProbe` hides the difference: it builds the logits model and the feature-map models once, and
keeps the compiled `tf.function` steps of attacks and ideal images, so they are traced once per model
and input shape, not once per call. Build one probe per model and keep it (the CLI builds one per
process, the page caches one per model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from lib.errors import TransferLabError

LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"
# The registry's name for a backbone's final feature map (the last cut point).
FEATURE_LAYER = "top_activation"
# Added to probabilities before the log when a model's logits cannot be reached.
LOG_EPSILON = 1e-12


def outer_output(layer: keras.Layer):
    """The symbolic output of `layer` as called in its parent graph (nested models included)."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if nodes:
        tensors = nodes[0].output_tensors
        return tensors[0] if len(tensors) == 1 else tensors
    return layer.output


def nested_models(model: keras.Model) -> list[keras.Model]:
    """The top-level layers of `model` that are themselves models (a run's body and head)."""
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def has_layer(model: keras.Model, name: str) -> bool:
    """True when `model` has a top-level layer called `name`."""
    return any(layer.name == name for layer in model.layers)


def is_map(tensor) -> bool:
    """True for a symbolic (B, H, W, C) tensor."""
    return len(tensor.shape) == 4


def is_spatial_map(tensor) -> bool:
    """True for a (B, H, W, C) tensor with more than one location (not a pooled (B, 1, 1, C))."""
    return is_map(tensor) and not (tensor.shape[1] == 1 and tensor.shape[2] == 1)


def logits_submodel(layer: keras.Layer) -> keras.Model | None:
    """For a nested head holding a `logits` layer: its inputs -> those logits; else None."""
    if isinstance(layer, keras.Model) and has_layer(layer, LOGITS_LAYER):
        return keras.Model(layer.inputs, layer.get_layer(LOGITS_LAYER).output,
                           name=f"{layer.name}_logits")
    return None


def replay(model: keras.Model, pixels, substitutes: dict[int, Callable]) -> dict[int, object]:
    """Re-applies the top-level graph of `model` to a new symbolic input, swapping some layers.

    Args:
        model: a functional model with one input.
        pixels: the new input tensor.
        substitutes: `id(layer) -> fn(*args)` used instead of calling that layer.

    Returns:
        `id(original symbolic tensor) -> new tensor`, for every tensor of the top-level graph.
    """
    mapping: dict[int, object] = {id(model.inputs[0]): pixels}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        # A layer may sit in several graphs (a head reused by two classifiers): take this one's node.
        node = next((n for n in layer._inbound_nodes
                     if all(id(t) in mapping for t in n.input_tensors)), None)
        if node is None:
            continue
        args, kwargs = node.arguments.fill_in(mapping)
        if id(layer) in substitutes:
            outputs = substitutes[id(layer)](*args)
        elif isinstance(layer, keras.Model):
            outputs = layer(*args, training=False)
        else:
            outputs = layer(*args, **kwargs)
        flat = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for old, new in zip(node.output_tensors, flat, strict=True):
            mapping[id(old)] = new
    return mapping


def build_logits_model(model: keras.Model) -> tuple[keras.Model, bool]:
    """Pixels -> class scores, sharing the model's layers.

    Args:
        model: a TransferLab classifier.

    Returns:
        `(scores_model, are_logits)`: the `logits` layer's output, at the top level or inside a
        nested head (`are_logits=True`); failing both, the log of the probabilities
        (`are_logits=False`), which has the same argmax and cross-entropy.
    """
    if has_layer(model, LOGITS_LAYER):
        logits = model.get_layer(LOGITS_LAYER).output
        return keras.Model(model.inputs, logits, name=f"{model.name}_logits"), True
    heads = {id(layer): sub for layer in nested_models(model)
             if (sub := logits_submodel(layer)) is not None}
    if len(model.inputs) == 1 and len(heads) == 1:
        pixels = keras.Input(model.inputs[0].shape[1:], name="pixels")
        substitutes = {key: (lambda x, sub=sub: sub(x, training=False)) for key, sub in heads.items()}
        mapping = replay(model, pixels, substitutes)
        out = mapping.get(id(model.outputs[0]))
        if out is not None:
            return keras.Model(pixels, out, name=f"{model.name}_logits"), True
    inputs = model.inputs
    probs = model(inputs[0])
    log_probs = keras.layers.Lambda(lambda p: keras.ops.log(p + LOG_EPSILON), name="log_probs")(probs)
    return keras.Model(inputs, log_probs, name=f"{model.name}_log_probs"), False


def find_feature_layer(model: keras.Model) -> tuple[keras.Model, str]:
    """Finds the last convolutional feature map, in the top-level graph or in a nested body.

    Args:
        model: a TransferLab classifier.

    Returns:
        `(owner, layer_name)`: the model whose graph holds the layer (`model` itself for a flat
        backbone, the nested body for a trained run) and the layer's name.

    Raises:
        TransferLabError: no layer outputs a (B, H, W, C) map (e.g. a feature-vector body).
    """
    if has_layer(model, FEATURE_LAYER) and is_spatial_map(model.get_layer(FEATURE_LAYER).output):
        return model, FEATURE_LAYER
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            out = outer_output(layer)
            if not isinstance(out, (list, tuple)) and is_spatial_map(out):
                return layer, find_feature_layer(layer)[1]
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out = layer.output
        if not isinstance(out, (list, tuple)) and is_spatial_map(out):
            return model, layer.name
    raise TransferLabError(
        f"Model `{model.name}` has no convolutional feature map (its body outputs a vector), "
        "so Grad-CAM and channel images cannot be computed for it."
    )


def layer_names_with_maps(model: keras.Model) -> list[str]:
    """Names of layers with (B, H, W, C) outputs, searching a nested body if there is one."""
    owner, _ = find_feature_layer(model)
    names = []
    for layer in owner.layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.Model)):
            continue
        out = layer.output
        if not isinstance(out, (list, tuple)) and is_map(out):
            names.append(layer.name)
    return names


def build_map_and_scores_model(model: keras.Model, layer: str | None = None) -> keras.Model:
    """Pixels -> [feature map at `layer`, class scores], in one graph, for Grad-CAM.

    Works for a flat backbone (the layer is in the top-level graph) and for a trained run (the layer
    is inside the nested body model: the body's own graph is re-wired so the map and the head's
    scores come out of one forward pass).

    Args:
        model: a TransferLab classifier.
        layer: a layer name with a (B, H, W, C) output; defaults to the last such layer (for the Lite
            backbones, `top_activation`).

    Returns:
        A model with two outputs: `(B, h, w, C)` and `(B, num_classes)`.

    Raises:
        TransferLabError: `layer` is unknown or not a feature map, or the model has no map.
    """
    owner, default = find_feature_layer(model)
    name = layer or default
    try:
        target = owner.get_layer(name)
    except ValueError as e:
        raise TransferLabError(
            f"Received `layer={name}`; model `{model.name}` has no such layer. Feature-map layers: "
            f"{', '.join(layer_names_with_maps(model)[-8:])}."
        ) from e
    if owner is model:
        feature = target.output
        if not is_map(feature):
            raise TransferLabError(f"Received `layer={name}`, whose output is not a feature map.")
        scores_model, _ = build_logits_model(model)
        return keras.Model(model.inputs, [feature, scores_model.output], name=f"{model.name}_cam")
    # Nested body: rebuild it with two outputs (the map and its usual output), then replay the
    # outer graph on a fresh input with the body (and a nested head, for its logits) swapped in.
    body_two = keras.Model(owner.inputs, [target.output, owner.outputs[0]], name=f"{owner.name}_cam")
    pixels = keras.Input(model.inputs[0].shape[1:], name="pixels")
    captured = {}

    def body_call(x):
        captured["map"], body_out = body_two(x, training=False)
        return body_out

    substitutes = {id(owner): body_call}
    for layer in nested_models(model):
        sub = logits_submodel(layer)
        if sub is not None and layer is not owner:
            substitutes[id(layer)] = lambda x, sub=sub: sub(x, training=False)
    mapping = replay(model, pixels, substitutes)
    top = model.get_layer(LOGITS_LAYER).output if has_layer(model, LOGITS_LAYER) else model.outputs[0]
    scores = mapping.get(id(top))
    if scores is None or "map" not in captured:
        raise TransferLabError(f"Could not trace model `{model.name}` from its body to its output.")
    if not has_any_logits(model):
        scores = keras.layers.Lambda(lambda p: keras.ops.log(p + LOG_EPSILON), name="log_probs")(scores)
    return keras.Model(pixels, [captured["map"], scores], name=f"{model.name}_cam")


def has_any_logits(model: keras.Model) -> bool:
    """True when a `logits` layer sits at the top level or in a nested model."""
    return has_layer(model, LOGITS_LAYER) or any(
        logits_submodel(layer) is not None for layer in nested_models(model))


def build_layer_model(model: keras.Model, layer: str) -> keras.Model:
    """Pixels -> the output of `layer`, for channel visualisation (flat or nested body).

    Raises:
        TransferLabError: no such layer.
    """
    if has_layer(model, layer) and not isinstance(model.get_layer(layer), keras.Model):
        return keras.Model(model.inputs, model.get_layer(layer).output, name=f"to_{layer}")
    owner, _ = find_feature_layer(model)
    try:
        target = owner.get_layer(layer)
    except ValueError as e:
        raise TransferLabError(
            f"Received `layer={layer}`; model `{model.name}` has no such layer. Feature-map "
            f"layers: {', '.join(layer_names_with_maps(model)[-8:])}."
        ) from e
    return keras.Model(owner.inputs, target.output, name=f"to_{layer}")


class ModelProbe:
    """A classifier plus the views and compiled steps that attacks, ideal images and Grad-CAM need.

    Attributes:
        model: the classifier (pixels in [0, 255] -> probabilities); shared and never modified.
        labels: class names, one per output.
        scores: pixels -> logits (or log-probabilities when the logits are hidden), shape (B, K).
        input_size: the square input side S.
        num_classes: K.
    """

    def __init__(self, model: keras.Model, labels: Sequence[str]) -> None:
        shape = model.inputs[0].shape
        if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
            raise TransferLabError(
                f"Received a model with input shape {tuple(shape)}; expected (None, S, S, 3) pixels."
            )
        self.model = model
        self.labels = tuple(labels)
        self.scores, self.are_logits = build_logits_model(model)
        self.input_size = int(shape[1])
        self.num_classes = int(self.scores.outputs[0].shape[-1])
        if len(self.labels) != self.num_classes:
            raise TransferLabError(
                f"The model has {self.num_classes} outputs but {len(self.labels)} labels were given."
            )
        self._compiled: dict[tuple, Callable] = {}
        self._models: dict[tuple, keras.Model] = {}

    def compiled(self, key: tuple, build: Callable[[], Callable]) -> Callable:
        """Returns the compiled step stored under `key`, building it on first use."""
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

    def cam_model(self, layer: str | None = None) -> keras.Model:
        """Pixels -> [feature map, scores], built once per layer."""
        key = ("cam", layer)
        if key not in self._models:
            self._models[key] = build_map_and_scores_model(self.model, layer)
        return self._models[key]

    def layer_model(self, layer: str) -> keras.Model:
        """Pixels -> the output of `layer`, built once per layer."""
        key = ("layer", layer)
        if key not in self._models:
            self._models[key] = build_layer_model(self.model, layer)
        return self._models[key]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax probabilities for pixels `(B, S, S, 3)` -> `(B, K)` (float64 for stable sums)."""
        scores = self.scores(tf.convert_to_tensor(images, tf.float32), training=False)
        return tf.nn.softmax(tf.cast(scores, tf.float64), axis=-1).numpy()
