"""Small-data training for the lessons: a frozen pretrained body against the same network from
random weights, on a few images per class, fast enough to run in front of a class.

Both networks are the backbone's own layers rebuilt at the lesson's input size (`build_sized_body`):
the same architecture and, for the pretrained one, the same weights, at a smaller side than the
backbone's 224 pixels so that training every layer from scratch fits in a lesson. Both see the same
images at the same size, the same head, optimizer, learning rate, batch size and epochs.

* transfer: the body is run once over the images (it never changes) and a head is trained on its
  pooled features;
* scratch: body and head train together from random weights; BatchNorm trains, and its statistics
  are recomputed over the training images before each evaluation (`recalibrate_batchnorm`, as
  `lib.training.train_from_scratch` does), so the test accuracy measures what was learned rather
  than the moving averages' lag.

Nothing here writes a run folder: a lesson's networks are thrown away after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib.errors import TransferLabError

EvalFn = Callable[[int, float], None]  # (epoch, test accuracy) after each epoch

TEST_PER_CLASS = 30  # held-out images per class every run of a lesson is measured on
BATCH_SIZE = 16
LEARNING_RATE = 1e-3
FINE_TUNE_LR_FACTOR = 0.1
SCRATCH_BN_MOMENTUM = 0.9
EVAL_BATCH = 128


@dataclass(frozen=True)
class LessonImages:
    """A lesson's images, decoded once at its input size.

    Attributes:
        pixels: (N, S, S, 3) float32 in [0, 255].
        labels: (N,) int class indices.
        class_names: the dataset's classes.
    """

    pixels: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def load_lesson_images(data: str, size: int) -> LessonImages:
    """Every image of a dataset (e.g. `builtin:digits`), resized to `size` x `size` RGB.

    Raises:
        TransferLabError: the dataset cannot be loaded, or `size` is not 16 to 512.
    """
    from PIL import Image

    from lib.data.sources import load_dataset

    if not isinstance(size, int) or not 16 <= size <= 512:
        raise TransferLabError(f"Received `size={size}`; use 16 to 512 pixels.")
    index = load_dataset(data)
    pixels = np.empty((len(index.records), size, size, 3), np.float32)
    for i, record in enumerate(index.records):
        with Image.open(record.path) as image:
            pixels[i] = np.asarray(image.convert("RGB").resize(
                (size, size), Image.Resampling.BILINEAR), np.float32)
    labels = np.array([r.label for r in index.records], np.int64)
    return LessonImages(pixels, labels, tuple(index.class_names))


def split_per_class(labels: np.ndarray, train_per_class: int, seed: int = 0,
                    test_per_class: int = TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Seeded indices: `train_per_class` training and `test_per_class` test images per class.

    The test images of a seed are the same whatever `train_per_class` is, and the training images
    of a smaller count are among those of a larger one, so a curve over counts compares like with
    like.

    Raises:
        TransferLabError: a class has fewer than `train_per_class + test_per_class` images.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < train_per_class + test_per_class:
            raise TransferLabError(
                f"Received `images_per_class={train_per_class}`; class {label} has "
                f"{len(members)} images, and {test_per_class} of each class are kept for testing.")
        test.extend(members[:test_per_class])
        train.extend(members[test_per_class:test_per_class + train_per_class])
    return np.array(train), np.array(test)


def build_sized_body(backbone, size: int, *, cut: str | None = None, pretrained: bool = True,
                     seed: int = 0):
    """The backbone cut at `cut`, rebuilt as a private model with input `size` x `size`.

    Convolutions do not depend on the image size, so the same layers take any side; the copy
    keeps the shared backbone untouched.

    Args:
        backbone: a loaded `lib.backbones.Backbone` (only read).
        size: input side in pixels.
        cut: one of the backbone's cut points. Defaults to None: its top feature layer.
        pretrained: copy the backbone's weights (frozen); False leaves the fresh random
            initialisation (every layer trainable). Defaults to True.
        seed: seeds the random initialisation. Defaults to 0.

    Returns:
        A Keras model from pixels `(B, size, size, 3)` to the cut layer's output.
    """
    import keras

    from lib.backbones import feature_model

    cut_model = feature_model(backbone, cut)
    # One input tensor (not a list), so the copy is called on a batch without a structure warning.
    source = keras.Model(cut_model.inputs[0], cut_model.outputs[0])
    body = keras.models.clone_model(source, input_tensors=keras.Input((size, size, 3), name="pixels"))
    if pretrained:
        body.set_weights(source.get_weights())
        body.trainable = False
        return body
    body.trainable = True
    for layer in body.layers:
        layer.trainable = True
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM
    redraw_weights(body, seed)
    return body


def redraw_weights(model, seed: int) -> None:
    """Fresh seeded random weights, as a network starts before any training: kernels from
    EfficientNet's initializer (He-style, fan-out), biases and BatchNorm shifts and means 0, scales
    and variances 1. A clone alone would repeat the source's seeded initializers."""
    import keras

    ones = ("gamma", "moving_variance")
    zeros = ("beta", "moving_mean", "bias")
    for i, variable in enumerate(model.weights):
        name = variable.path.rsplit("/", 1)[-1]
        if name in ones:
            value = np.ones(variable.shape, "float32")
        elif name in zeros or len(variable.shape) < 2:
            value = np.zeros(variable.shape, "float32")
        else:
            value = keras.initializers.VarianceScaling(
                2.0, mode="fan_out", distribution="truncated_normal", seed=seed * 10_000 + i,
            )(variable.shape)
        variable.assign(value)


def pooled_features(body, pixels: np.ndarray) -> np.ndarray:
    """The body's output for `pixels`, averaged over space when it is a map: (N, C)."""
    features = body.predict(pixels, batch_size=EVAL_BATCH, verbose=0)
    return features.mean(axis=(1, 2)) if features.ndim == 4 else features


def _compile(model, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in inference mode; a direct call, as `predict` costs more than the forward
    pass on a few hundred images."""
    import keras

    hits = 0
    for start in range(0, len(x), EVAL_BATCH):
        logits = keras.ops.convert_to_numpy(model(x[start:start + EVAL_BATCH], training=False))
        hits += int(np.sum(np.argmax(logits, axis=-1) == y[start:start + EVAL_BATCH]))
    return hits / max(len(x), 1)


def train_head_step(train_features: np.ndarray, train_labels: np.ndarray,
                    test_features: np.ndarray, test_labels: np.ndarray, *, num_classes: int,
                    epochs: int, seed: int = 0, learning_rate: float = LEARNING_RATE,
                    on_epoch: EvalFn | None = None) -> tuple[list[float], object]:
    """Trains a fresh head on fixed (pooled) features.

    Returns:
        `(test accuracy after each epoch, the trained head)`.
    """
    import keras

    keras.utils.set_random_seed(seed)
    head = build_map_head((train_features.shape[-1],), num_classes, seed)
    _compile(head, learning_rate)
    curve = _fit_and_watch(head, train_features, train_labels, test_features, test_labels,
                           epochs=epochs, on_epoch=on_epoch)
    return curve, head


def train_scratch_step(body, train_pixels: np.ndarray, train_labels: np.ndarray,
                       test_pixels: np.ndarray, test_labels: np.ndarray, *, num_classes: int,
                       epochs: int, seed: int = 0, learning_rate: float = LEARNING_RATE,
                       on_epoch: EvalFn | None = None) -> list[float]:
    """Trains `body` (random weights, trainable) and a fresh head together on pixels; returns the
    test accuracy after each epoch, with BatchNorm recalibrated over the training images first."""
    import keras
    import tensorflow as tf

    from lib.training import recalibrate_batchnorm

    keras.utils.set_random_seed(seed)
    features = body.outputs[0]
    head = build_map_head(tuple(features.shape[1:]), num_classes, seed)
    inputs = keras.Input(body.inputs[0].shape[1:], name="pixels")
    model = keras.Model(inputs, head(body(inputs)), name="scratch")  # BatchNorm in training mode
    _compile(model, learning_rate)
    order = np.random.default_rng(seed).permutation(len(train_pixels))
    images = tf.data.Dataset.from_tensor_slices(
        (train_pixels[order], train_labels[order])).batch(BATCH_SIZE)

    def before_eval() -> None:
        recalibrate_batchnorm(body, images)
    return _fit_and_watch(model, train_pixels, train_labels, test_pixels, test_labels,
                          epochs=epochs, on_epoch=on_epoch, before_eval=before_eval)


def fine_tune_step(body, head, train_pixels: np.ndarray, train_labels: np.ndarray,
                   test_pixels: np.ndarray, test_labels: np.ndarray, *, epochs: int, seed: int = 0,
                   learning_rate: float = LEARNING_RATE * FINE_TUNE_LR_FACTOR,
                   on_epoch: EvalFn | None = None) -> list[float]:
    """Fine-tunes a pretrained `body` (every layer but BatchNorm) with its trained `head`.

    BatchNorm stays frozen and in inference mode (the Keras guide's rule), and the rate is 10x
    lower than the head's, so the pretrained features are adjusted rather than overwritten.

    Args:
        body: a private pretrained body (from `build_sized_body`); it is changed in place.
        head: the head trained on that body's frozen features (`train_head_step`).
        epochs: fine-tuning epochs.
        learning_rate: one rate for body and head. Defaults to 1e-4.

    Returns:
        The test accuracy after each epoch.
    """
    import keras

    keras.utils.set_random_seed(seed)
    body.trainable = True
    for layer in body.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inputs = keras.Input(body.inputs[0].shape[1:], name="pixels")
    pooled = keras.layers.GlobalAveragePooling2D()(body(inputs, training=False)) \
        if len(body.outputs[0].shape) == 4 else body(inputs, training=False)
    model = keras.Model(inputs, head(pooled), name="fine_tuned")
    _compile(model, learning_rate)
    return _fit_and_watch(model, train_pixels, train_labels, test_pixels, test_labels,
                          epochs=epochs, on_epoch=on_epoch)


def build_map_head(feature_shape: tuple, num_classes: int, seed: int):
    """The lesson's head on a feature map (pooled) or vector: `lib.models.build_head`."""
    from lib.models import build_head

    return build_head(feature_shape, num_classes, seed=seed)


def _fit_and_watch(model, x, y, x_test, y_test, *, epochs: int, on_epoch: EvalFn | None,
                   before_eval: Callable[[], None] | None = None) -> list[float]:
    """Fits `epochs` epochs in a seeded order, measuring the test accuracy after each."""
    import keras

    curve: list[float] = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if before_eval is not None:
                before_eval()
            curve.append(_accuracy(model, x_test, y_test))
            if on_epoch is not None:
                on_epoch(epoch + 1, curve[-1])

    model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[Watch()])
    return curve
