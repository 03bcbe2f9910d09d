"""Model = body + head: the classifier a person trains on top of a backbone.

    pixels (B, S, S, 3) in [0, 255] -> body(x, training=False) -> head -> logits (B, C)
                                                                      -> softmax "probabilities"

* The body is the backbone cut at a cut point. `build_body` shares the backbone's frozen layers, so
  it costs no memory and can never change the shared backbone (its layers are not trainable).
* The head is `GlobalAveragePooling2D` (when the body outputs a map) -> optional Dense hidden ->
  Dropout -> Dense `logits`, seeded so that two heads built with the same arguments start from the
  same weights (the feature-cache path relies on that). It outputs logits, as in the keras-io
  transfer-learning guide: training uses `from_logits=True`, and attribution and attacks
  differentiate the logits with public Keras only (`classifier_parts`, `build_logits_model`).
* `build_classifier` joins body and head and puts the softmax on top as its own layer
  `probabilities`, so the classifier still maps pixels to probabilities.
* Fine-tuning works on `copy_body(body)`, a private copy, where `unfreeze_blocks` (whole blocks,
  ending at cut points) or `unfreeze_top` (a number of layers) makes the top trainable and keeps
  every BatchNormalization layer frozen.

Runs saved before heads ended at their logits have the softmax inside the head and no top-level
softmax; they load and predict as they are, and `classifier_parts` / `build_logits_model` handle
both layouts. Only built-in Keras layers are used, so a saved `model.keras` loads with
`keras.models.load_model(path, safe_mode=True)` and no custom objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lib.backbones.registry import Backbone, feature_model
from lib.errors import TransferLabError
from lib.lazy import lazy_module

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

BODY_NAME = "body"
HEAD_NAME = "head"
CLASSIFIER_NAME = "classifier"
POOL_NAME = "pool"
HIDDEN_NAME = "hidden"
DROPOUT_NAME = "dropout"
LOGITS_NAME = "logits"
PROBABILITIES_NAME = "probabilities"
MAX_HIDDEN_UNITS = 8192


@dataclass(frozen=True)
class HeadConfig:
    """What sits on top of the body.

    Attributes:
        hidden_units: width of an optional Dense ReLU layer before the classifier; 0 means none.
            Defaults to 0 (a linear classifier on pooled features, which is what transfer learning
            on small data usually wants).
        dropout: dropout rate before the classifier, in [0, 1). Defaults to 0.2.
    """

    hidden_units: int = 0
    dropout: float = 0.2

    def validate(self) -> HeadConfig:
        """Returns self, or raises TransferLabError echoing the bad value."""
        if not isinstance(self.hidden_units, int) or not 0 <= self.hidden_units <= MAX_HIDDEN_UNITS:
            raise TransferLabError(
                f"Received `hidden_units={self.hidden_units}`; use 0 (no hidden layer) up to "
                f"{MAX_HIDDEN_UNITS}."
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise TransferLabError(f"Received `dropout={self.dropout}`; use a rate in [0, 1).")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def build_body(backbone: Backbone, cut: str | None = None) -> keras.Model:
    """Cuts a backbone at a cut point, sharing its frozen layers.

    Args:
        backbone: a loaded backbone (shared and frozen; it is only read).
        cut: a name from `backbone.spec.cut_points`. Defaults to None: the top feature layer.

    Returns:
        A model named `"body"` from pixels `(B, S, S, 3)` to the cut layer's output.

    Raises:
        TransferLabError: `cut` is not a cut point of this backbone.
    """
    cut_model = feature_model(backbone, cut)
    return keras.Model(cut_model.input, cut_model.output, name=BODY_NAME)


def build_head(feature_shape: tuple, num_classes: int, config: HeadConfig | None = None,
               seed: int = 0) -> keras.Model:
    """Builds the trainable head.

    Args:
        feature_shape: the body's output shape without the batch axis: `(H, W, C)` for a feature
            map (pooled first) or `(C,)` for a feature vector.
        num_classes: number of classes, at least 2.
        config: hidden units and dropout. Defaults to `HeadConfig()`.
        seed: seeds every initializer and the dropout mask, so equal arguments give equal heads
            that also train identically. Defaults to 0.

    Returns:
        A model named `"head"`: features -> logits `(B, num_classes)`; its last layer is the Dense
        layer `"logits"` (no softmax: `build_classifier` adds it).
    """
    config = (config or HeadConfig()).validate()
    feature_shape = tuple(int(d) for d in feature_shape)
    if len(feature_shape) not in (1, 3):
        raise TransferLabError(
            f"Received `feature_shape={feature_shape}`; a head takes a feature map (H, W, C) or a "
            "feature vector (C,)."
        )
    if num_classes < 2:
        raise TransferLabError(f"Received `num_classes={num_classes}`; a classifier needs at least 2.")
    inputs = keras.Input(feature_shape, name="features")
    x = inputs
    if len(feature_shape) == 3:
        x = keras.layers.GlobalAveragePooling2D(name=POOL_NAME)(x)  # (B, C)
    if config.hidden_units:
        x = keras.layers.Dense(
            config.hidden_units, activation="relu", name=HIDDEN_NAME,
            kernel_initializer=keras.initializers.HeUniform(seed=seed + 1),
        )(x)
    x = keras.layers.Dropout(config.dropout, seed=seed + 2, name=DROPOUT_NAME)(x)
    logits = keras.layers.Dense(
        num_classes, name=LOGITS_NAME, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3),
    )(x)
    return keras.Model(inputs, logits, name=HEAD_NAME)


def build_classifier(body: keras.Model, head: keras.Model, input_size: int, *,
                     body_inference: bool = True) -> keras.Model:
    """Joins body and head into the classifier a person trains, saves and predicts with.

    Args:
        body: pixels -> features (from `build_body` or `copy_body`).
        head: features -> logits (from `build_head`).
        input_size: square input side in pixels.
        body_inference: call the body with `training=False`, so BatchNorm uses its moving statistics
            and never updates them (transfer learning and fine-tuning). False lets BatchNorm train,
            which only the from-scratch baseline wants. Defaults to True.

    Returns:
        A model named `"classifier"`: pixels `(B, S, S, 3)` in [0, 255] -> probabilities, whose top
        layers are `"body"`, `"head"` (-> logits) and the softmax `"probabilities"`.
    """
    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    features = body(inputs, training=False) if body_inference else body(inputs)
    logits = head(features)  # (B, C)
    outputs = keras.layers.Activation("softmax", name=PROBABILITIES_NAME)(logits)
    return keras.Model(inputs, outputs, name=CLASSIFIER_NAME)


def build_logits_model(classifier: keras.Model) -> keras.Model:
    """Pixels -> logits of a classifier from `build_classifier`, sharing its layers and weights.

    Training compiles this model (`from_logits=True`): fitting it trains the classifier's own body
    and head. For a classifier built by `build_classifier` it is the classifier's graph up to its
    softmax, so the body keeps the mode the classifier calls it in (inference, or training for the
    from-scratch baseline). For a run saved before heads ended at their logits it is rebuilt from
    `classifier_parts`, with the body in inference mode.

    Args:
        classifier: a TransferLab classifier (pixels -> body -> head -> probabilities).

    Returns:
        A model from pixels `(B, S, S, 3)` to logits `(B, num_classes)`.

    Raises:
        TransferLabError: the model is not a body + head classifier.
    """
    top = classifier.layers[-1]
    if top.name == PROBABILITIES_NAME and not isinstance(top, keras.Model):
        return keras.Model(classifier.inputs, top.input, name=f"{classifier.name}_logits")
    body, head = classifier_parts(classifier)
    pixels = keras.Input(classifier.inputs[0].shape[1:], name="pixels")
    return keras.Model(pixels, head(body(pixels, training=False)), name=f"{classifier.name}_logits")


def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh layer with the same config. A TF Hub layer is rebuilt from its (already checked)
    SavedModel folder directly, after checking it again: Keras refuses to deserialise one from a
    config, which is what cloning would otherwise do."""
    if isinstance(layer, keras.layers.TFSMLayer):
        from lib.backbones.hub_safety import check_saved_model

        check_saved_model(layer.filepath)
        return keras.layers.TFSMLayer(layer.filepath, call_endpoint=layer.call_endpoint,
                                      call_training_endpoint=layer.call_training_endpoint,
                                      trainable=layer.trainable, name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def copy_body(body: keras.Model) -> keras.Model:
    """Returns a private copy of a body (new layers, same weights and trainable flags).

    Fine-tuning changes weights, so it must never touch the shared backbone's layers. Weights are
    copied layer by layer, matched by name: a whole-model `set_weights` depends on the order in
    which the two models list their variables, and a mismatch there once surfaced as "Layer body
    weight shape (1280,) is not compatible with provided weight shape (3, 3, 3, 32)".

    Raises:
        TransferLabError: the copy's layers do not match the body's (names or weight shapes).
    """
    copy = keras.models.clone_model(body, clone_function=clone_layer)
    sources = {layer.name: layer for layer in body.layers}
    for dst in copy.layers:
        src = sources.get(dst.name)
        if src is None:
            raise TransferLabError(f"Could not copy the body: its copy has a layer `{dst.name}` it lacks.")
        weights = src.get_weights()
        if [w.shape for w in weights] != [tuple(v.shape) for v in dst.weights]:
            raise TransferLabError(
                f"Could not copy the body: layer `{dst.name}` has weights of shapes "
                f"{[w.shape for w in weights]} but its copy expects {[tuple(v.shape) for v in dst.weights]}."
            )
        if weights:
            dst.set_weights(weights)
        dst.trainable = src.trainable
    return copy


def is_batchnorm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def _body_layers(body: keras.Model) -> list[keras.layers.Layer]:
    """Every layer but the input, bottom to top."""
    return [layer for layer in body.layers if not isinstance(layer, keras.layers.InputLayer)]


def unfreeze_top(body: keras.Model, n_layers: int | None = None,
                 from_layer: str | None = None) -> list[str]:
    """Makes the top of a (private) body trainable, keeping every BatchNormalization layer frozen.

    Layers are counted as in the Keras transfer-learning guide: every layer of the body but the
    input, weightless ones (activations, adds) included.

    Args:
        body: a body from `copy_body`; never the shared one.
        n_layers: unfreeze this many layers from the top. Defaults to None.
        from_layer: unfreeze this layer and everything above it. Defaults to None.
            Exactly one of `n_layers` and `from_layer` must be given.

    Returns:
        The names of the layers with weights that are now trainable, bottom to top.

    Raises:
        TransferLabError: both or neither given, `n_layers` out of range, or an unknown layer name.
    """
    if (n_layers is None) == (from_layer is None):
        raise TransferLabError(
            f"Received `n_layers={n_layers}` and `from_layer={from_layer}`; give exactly one."
        )
    layers = _body_layers(body)
    if from_layer is not None:
        names = [layer.name for layer in layers]
        if from_layer not in names:
            raise TransferLabError(
                f"Received `from_layer={from_layer}`, which is not a layer of the body. "
                f"Its top layers are: {', '.join(names[-8:])}."
            )
        start = names.index(from_layer)
    else:
        if not isinstance(n_layers, int) or not 1 <= n_layers <= len(layers):
            raise TransferLabError(
                f"Received `unfreeze={n_layers}`; the body has {len(layers)} layers, so use 1 to "
                f"{len(layers)}."
            )
        start = len(layers) - n_layers
    body.trainable = True
    unfrozen = []
    for i, layer in enumerate(layers):
        # BatchNorm stays frozen: with a small batch its statistics would drift and wreck the
        # features the head learned on (and `training=False` keeps it in inference mode anyway).
        trainable = i >= start and not is_batchnorm(layer)
        layer.trainable = trainable
        if trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


def block_ends(body: keras.Model, cut_points: Sequence[str]) -> list[str]:
    """The layers that end the body's blocks, bottom to top: its cut points, and its top layer.

    A block is the run of layers after one end up to the next (EfficientNet-Lite's `blockNx_*`
    layers, its top conv); the layers up to the first cut point (the stem) are not a block.
    """
    names = [layer.name for layer in _body_layers(body)]
    ends = sorted({names.index(c) for c in cut_points if c in names} | {len(names) - 1})
    return [names[i] for i in ends]


def count_blocks(body: keras.Model, cut_points: Sequence[str]) -> int:
    """How many blocks `unfreeze_blocks` can unfreeze in this body."""
    return len(block_ends(body, cut_points)) - 1


def top_blocks_start(body: keras.Model, cut_points: Sequence[str], n_blocks: int) -> str:
    """The first layer of the body's top `n_blocks` blocks (at most all of them).

    Raises:
        TransferLabError: `n_blocks` below 1, or a body with no block above a cut point.
    """
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise TransferLabError(f"Received `unfreeze_blocks={n_blocks}`; unfreeze at least 1 block.")
    ends = block_ends(body, cut_points)
    if len(ends) < 2:
        raise TransferLabError(
            f"The body ends at `{ends[-1]}`, below its first block, so it has no block to unfreeze; "
            "unfreeze a number of layers instead.")
    names = [layer.name for layer in _body_layers(body)]
    below = ends[-(min(n_blocks, len(ends) - 1) + 1)]
    return names[names.index(below) + 1]


def top_blocks_layer_count(body: keras.Model, cut_points: Sequence[str], n_blocks: int) -> int:
    """How many layers (counted as `unfreeze_top` counts them) the top `n_blocks` blocks hold."""
    names = [layer.name for layer in _body_layers(body)]
    return len(names) - names.index(top_blocks_start(body, cut_points, n_blocks))


def unfreeze_blocks(body: keras.Model, cut_points: Sequence[str], n_blocks: int) -> list[str]:
    """Unfreezes the top `n_blocks` whole blocks of a (private) body; BatchNorm stays frozen.

    Whole blocks, as fastai's layer groups and the Keras guide's "top blocks": a block cut in the
    middle trains its projection but not the expansion that feeds it. Below the unfrozen blocks
    a cut point ends the frozen part, so fine-tuning can cache its output.

    Args:
        body: a body from `copy_body`; never the shared one.
        cut_points: the backbone spec's cut points (block ends), bottom to top.
        n_blocks: blocks to unfreeze from the top; more than the body has unfreezes all of them.

    Returns:
        The names of the layers with weights that are now trainable, bottom to top.
    """
    return unfreeze_top(body, from_layer=top_blocks_start(body, cut_points, n_blocks))


def unfreeze_batchnorm(body: keras.Model, unfrozen: Sequence[str]) -> list[str]:
    """Makes the BatchNorm layers among and above the unfrozen ones trainable (the pitfall).

    Keras runs a BatchNorm layer in training mode only when it is trainable and called with
    `training=True`; `unfreeze_top` keeps them frozen, which is right. This undoes that for the
    unfrozen blocks, for `TrainConfig.batchnorm_mode="training"`.

    Args:
        body: a body from `copy_body` whose top `unfreeze_top` or `unfreeze_blocks` unfroze.
        unfrozen: the names those returned.

    Returns:
        The BatchNorm layers made trainable, bottom to top.
    """
    layers = _body_layers(body)
    names = [layer.name for layer in layers]
    if not unfrozen:
        return []
    start = min(names.index(name) for name in unfrozen)
    changed = []
    for layer in layers[start:]:
        if is_batchnorm(layer):
            layer.trainable = True
            changed.append(layer.name)
    return changed


def count_params(model: keras.Model) -> dict[str, int]:
    """Returns `{"trainable": n, "non_trainable": m}` parameter counts."""
    return {
        "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "non_trainable": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
    }


def layer_table(body: keras.Model) -> list[dict]:
    """One row per body layer, bottom to top, for the Fine-tune page's layer list.

    Returns:
        Dicts with `name`, `type`, `trainable`, `is_batchnorm` and `params`.
    """
    return [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "trainable": bool(layer.trainable),
            "is_batchnorm": is_batchnorm(layer),
            "params": int(sum(np.prod(w.shape) for w in layer.weights)),
        }
        for layer in _body_layers(body)
    ]


def get_body(classifier: keras.Model) -> keras.Model:
    """The body inside a classifier from `build_classifier`."""
    return classifier.get_layer(BODY_NAME)


def get_head(classifier: keras.Model) -> keras.Model:
    """The head inside a classifier from `build_classifier`, as saved (see `classifier_parts`)."""
    return classifier.get_layer(HEAD_NAME)


def classifier_parts(classifier: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Returns `(body, head)` of a classifier from `build_classifier`, the head ending at its logits.

    Runs saved before heads ended at their logits have a softmax inside the head; for those the head
    returned is the saved head's input -> its `logits` layer, sharing its weights. Either way
    `head(body(pixels))` gives logits, which is what attribution and attacks differentiate.

    Args:
        classifier: a trained classifier (pixels -> body -> head -> probabilities).

    Returns:
        `(body, head)`: pixels -> features, and features -> logits `(B, num_classes)`.

    Raises:
        TransferLabError: the model is not a body + head classifier (e.g. an ImageNet backbone).
    """
    names = {layer.name for layer in classifier.layers}
    if BODY_NAME not in names or HEAD_NAME not in names:
        raise TransferLabError(
            f"Received a model named `{classifier.name}` without `{BODY_NAME}` and `{HEAD_NAME}` "
            "parts; expected a classifier trained by TransferLab."
        )
    body = classifier.get_layer(BODY_NAME)
    head = classifier.get_layer(HEAD_NAME)
    if any(layer.name == PROBABILITIES_NAME for layer in head.layers):
        head = keras.Model(head.inputs, head.get_layer(LOGITS_NAME).output, name=HEAD_NAME)
    return body, head
