"""Views into a classifier that attacks, ideal images and Grad-CAM share, in public Keras only.

Every TransferLab classifier maps pixels in [0, 255], shape (B, S, S, 3), to softmax probabilities.
Two layouts exist, and both expose their logits through public Keras:

* a flat backbone (EfficientNet-Lite, `tiny_random`): every layer sits in the top-level graph, with a
  Dense layer `logits` before the softmax; its views are `keras.Model(model.inputs, [...])`, the
  keras-io Grad-CAM way;
* a trained classifier (`pixels -> body -> head -> probabilities`): `lib.models.classifier_parts`
  gives `(body, head)` with `head(body(pixels))` = logits, whichever way the run was saved; a
  feature map is the body's output, or a layer inside the body through
  `keras.Model(body.inputs, [body.get_layer(name).output, body.output])`.

A model with neither (no `logits` layer, no body and head) is differentiated through the log of its
probabilities, which has the same argmax and cross-entropy.

`ModelProbe` builds these views and keeps the compiled `tf.function` steps of attacks, ideal images
and Grad-CAM, so they are traced once per model and input shape, not once per call. One probe may be
shared by every session of a server (the page caches one per backbone): its lazily filled cache is
guarded by a lock, and nothing else in it changes after construction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from lib.errors import TransferLabError
from lib.models import BODY_NAME, HEAD_NAME, LOGITS_NAME, classifier_parts

# Added to probabilities before the log when a model's logits cannot be reached.
LOG_EPSILON = 1e-12
# Feature-map layers listed in an error message about an unknown layer.
LAYERS_IN_ERRORS = 8


def split_classifier(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """`(body, head-to-logits)` of a trained classifier, or None for any other model."""
    names = {layer.name for layer in model.layers}
    if BODY_NAME in names and HEAD_NAME in names:
        return classifier_parts(model)
    return None


def feature_owner(model: keras.Model) -> keras.Model:
    """The graph that holds the feature maps: a trained classifier's body, else the model itself."""
    parts = split_classifier(model)
    return parts[0] if parts is not None else model


def is_map(tensor) -> bool:
    """True for a symbolic (B, H, W, C) tensor."""
    return len(tensor.shape) == 4


def is_spatial_map(tensor) -> bool:
    """True for a (B, H, W, C) tensor with more than one location (not a pooled (B, 1, 1, C))."""
    return is_map(tensor) and not (tensor.shape[1] == 1 and tensor.shape[2] == 1)


def map_layers(owner: keras.Model) -> list[keras.Layer]:
    """The top-level layers of `owner` with one (B, H, W, C) output, bottom to top."""
    return [layer for layer in owner.layers
            if not isinstance(layer, (keras.layers.InputLayer, keras.Model))
            and not isinstance(layer.output, (list, tuple)) and is_map(layer.output)]


def default_feature_layer(model: keras.Model) -> str:
    """The last layer with a spatial feature map (for the Lite backbones, `top_activation`).

    Raises:
        TransferLabError: no layer outputs a (B, H, W, C) map (e.g. a feature-vector body).
    """
    spatial = [layer.name for layer in map_layers(feature_owner(model))
               if is_spatial_map(layer.output)]
    if not spatial:
        raise TransferLabError(
            f"Model `{model.name}` has no convolutional feature map (its body outputs a vector), "
            "so Grad-CAM and channel images cannot be computed for it."
        )
    return spatial[-1]


def layer_names_with_maps(model: keras.Model) -> list[str]:
    """Names of layers with (B, H, W, C) outputs: a trained classifier's body layers, else the model's.

    Raises:
        TransferLabError: the model has no spatial feature map at all.
    """
    default_feature_layer(model)
    return [layer.name for layer in map_layers(feature_owner(model))]


def get_map_layer(model: keras.Model, name: str) -> keras.Layer:
    """The feature-map layer `name` of a model (inside the body of a trained classifier).

    Raises:
        TransferLabError: no such layer, or its output is not a (B, H, W, C) map.
    """
    owner = feature_owner(model)
    try:
        layer = owner.get_layer(name)
    except ValueError as e:
        known = ", ".join(layer.name for layer in map_layers(owner)[-LAYERS_IN_ERRORS:])
        raise TransferLabError(
            f"Received `layer={name}`; model `{model.name}` has no such layer. Feature-map layers: "
            f"{known}."
        ) from e
    if isinstance(layer, keras.Model) or isinstance(layer.output, (list, tuple)) or not is_map(
            layer.output):
        raise TransferLabError(f"Received `layer={name}`, whose output is not a feature map.")
    return layer


class ModelProbe:
    """A classifier plus the views and compiled steps that attacks, ideal images and Grad-CAM need.

    Attributes:
        model: the classifier (pixels in [0, 255] -> probabilities); shared and never modified.
        labels: class names, one per output.
        are_logits: True when `scores` are the model's logits, False for log-probabilities.
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
        self.input_size = int(shape[1])
        self._parts = split_classifier(model)
        self._logits_model = None
        if self._parts is None and any(layer.name == LOGITS_NAME for layer in model.layers):
            self._logits_model = keras.Model(model.inputs, model.get_layer(LOGITS_NAME).output,
                                             name=f"{model.name}_logits")
        self.are_logits = self._parts is not None or self._logits_model is not None
        if self._parts is not None:
            self.num_classes = int(self._parts[1].outputs[0].shape[-1])
        else:
            self.num_classes = int(model.outputs[0].shape[-1])
        if len(self.labels) != self.num_classes:
            raise TransferLabError(
                f"The model has {self.num_classes} outputs but {len(self.labels)} labels were given."
            )
        # Sessions of one server share a probe: two may ask for the same step at once. Re-entrant,
        # because building a compiled step asks for the views it closes over.
        self._lock = threading.RLock()
        self._cache: dict[tuple, object] = {}

    def cached(self, key: tuple, build: Callable[[], object]) -> object:
        """Returns the object stored under `key`, building it (once, under the lock) on first use."""
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def compiled(self, key: tuple, build: Callable[[], Callable]) -> Callable:
        """Returns the compiled step stored under `key`, building it on first use."""
        return self.cached(("step", *key), build)

    def from_probabilities(self, probs: tf.Tensor) -> tf.Tensor:
        """Log-probabilities: the scores of a model whose logits cannot be reached."""
        return keras.ops.log(probs + LOG_EPSILON)

    def scores(self, pixels: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Class scores for pixels (B, S, S, 3): the logits (or log-probabilities), shape (B, K).

        Differentiable; call it inside a `tf.GradientTape`.
        """
        if self._parts is not None:
            body, head = self._parts
            return head(body(pixels, training=training), training=training)
        if self._logits_model is not None:
            return self._logits_model(pixels, training=training)
        return self.from_probabilities(self.model(pixels, training=training))

    def layer_model(self, layer: str) -> keras.Model:
        """Pixels -> the output of feature-map `layer`, built once per layer.

        Raises:
            TransferLabError: no such layer, or not a feature map.
        """
        def build() -> keras.Model:
            target = get_map_layer(self.model, layer)
            owner = feature_owner(self.model)
            return keras.Model(owner.inputs, target.output, name=f"to_{layer}")

        return self.cached(("layer", layer), build)

    def map_and_scores(self, layer: str | None = None) -> Callable:
        """A function pixels (B, S, S, 3) -> (feature map (B, h, w, C), scores (B, K)), for Grad-CAM.

        Args:
            layer: a feature-map layer; defaults to `default_feature_layer(model)`.

        Raises:
            TransferLabError: unknown layer, not a feature map, or no feature map at all.
        """
        return self.cached(("map_and_scores", layer), lambda: self.build_map_and_scores(layer))

    def build_map_and_scores(self, layer: str | None) -> Callable:
        """Builds what `map_and_scores` returns (no caching)."""
        name = layer or default_feature_layer(self.model)
        target = get_map_layer(self.model, name)
        if self._parts is not None:
            body, head = self._parts
            if body.layers[-1] is target:  # the feature map is the body's output
                def body_map(pixels):
                    features = body(pixels, training=False)
                    return features, head(features, training=False)
                return body_map
            two = keras.Model(body.inputs, [target.output, body.outputs[0]], name=f"{name}_and_body")

            def inner_map(pixels):
                maps, features = two(pixels, training=False)
                return maps, head(features, training=False)
            return inner_map
        top = self._logits_model.outputs[0] if self._logits_model is not None else (
            self.model.outputs[0])
        grad_model = keras.Model(self.model.inputs, [target.output, top], name=f"{name}_cam")

        def flat_map(pixels):
            maps, out = grad_model(pixels, training=False)
            return maps, out if self.are_logits else self.from_probabilities(out)
        return flat_map

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax probabilities for pixels `(B, S, S, 3)` -> `(B, K)` (float64 for stable sums)."""
        forward = self.compiled(("scores",), lambda: tf.function(self.scores, reduce_retracing=True))
        scores = forward(tf.convert_to_tensor(images, tf.float32))
        return tf.nn.softmax(tf.cast(scores, tf.float64), axis=-1).numpy()
