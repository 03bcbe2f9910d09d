"""The fast paths: train on stored outputs of frozen layers instead of pixels.

* **Feature cache** (frozen phase): with a frozen body and no augmentation every epoch would push the
  same pixels through the same body, so the body runs once (`lib.features`, cached on disk) and the
  head trains on the features. Built from the same seed and fed the same batches, the head ends
  with the same weights as on pixels (tested).
* **Cached activations** (fine-tuning): the frozen layers below the lowest unfrozen one run once (in
  memory); the unfrozen top of the body and the head train on their output: the same updates as on
  pixels, without running the frozen bottom every epoch.

Both compile several steps per call and validate on the cached arrays in a few compiled calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from lib.backbones.registry import Backbone
from lib.data.sources import ImageRecord
from lib.features import ExtractionStopped, cached_features, extract_features
from lib.models import build_head, classifier_parts
from lib.training.config import FINE_TUNE, FROZEN
from lib.training.engine import Context, PhaseWatch, compile_model, evaluate, fit_phase
from lib.training.inputs import (
    divisor_at_most,
    epoch_orders,
    feature_dataset,
    model_id,
    one_hot,
    steps_per_epoch,
)

# Feature batches per compiled call: Keras' per-step Python overhead is larger than a head step on
# features, so grouping steps is most of the fast path's speed.
FAST_STEPS_PER_EXECUTION = 16
# Cached features/activations per validation call: bounds memory for feature maps.
VAL_CHUNK = 256


class ArrayValidation(keras.callbacks.Callback):
    """Adds `val_loss` and `val_accuracy` on cached arrays to each epoch's logs.

    A few compiled calls per epoch (Keras' own `evaluate` costs ~40 ms an epoch). Place it first, so
    the callbacks after it see the validation metrics.

    Args:
        features: cached validation inputs of the model being fitted.
        labels: one-hot labels.
        label_smoothing: as in training.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, label_smoothing: float) -> None:
        super().__init__()
        self.n = len(features)
        self.chunks = [(tf.constant(features[i : i + VAL_CHUNK]), tf.constant(labels[i : i + VAL_CHUNK]))
                       for i in range(0, len(features), VAL_CHUNK)]
        self.loss_fn = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, reduction="sum")
        self._step = None

    def on_train_begin(self, logs=None):
        model, loss_fn = self.model, self.loss_fn

        @tf.function(reduce_retracing=True, autograph=False)  # nothing to convert
        def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            logits = model(x, training=False)  # (B, C)
            correct = tf.equal(tf.argmax(logits, axis=1), tf.argmax(y, axis=1))
            return loss_fn(y, logits), tf.reduce_sum(tf.cast(correct, tf.float32))

        self._step = step

    def on_epoch_end(self, epoch, logs=None):
        sums = np.sum([[float(v) for v in self._step(x, y)] for x, y in self.chunks], axis=0)
        # In place: Keras hands the same logs to the callbacks after this one.
        logs.update({"val_loss": sums[0] / self.n, "val_accuracy": sums[1] / self.n})


def predict_arrays(model: keras.Model, arrays: np.ndarray) -> np.ndarray:
    """Probabilities from a logits model on cached arrays, in chunks."""
    return np.concatenate([np.asarray(keras.ops.softmax(model(arrays[i : i + VAL_CHUNK], training=False)))
                           for i in range(0, len(arrays), VAL_CHUNK)])


def _split_rows(ctx: Context, arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of `arrays` (train, then val, then test records) per split."""
    n_train, n_val = len(ctx.split.train), len(ctx.split.val)
    return arrays[:n_train], arrays[n_train : n_train + n_val], arrays[n_train + n_val :]


def _fit_on_arrays(ctx: Context, model: keras.Model, arrays: np.ndarray, *, phase: str, epochs: int,
                   lr: float, save_checkpoint: Callable[[], None], previous=None,
                   baseline: dict | None = None) -> tuple[PhaseWatch, dict | None]:
    """Fits a logits model on cached arrays (one row per train, val, test record) and evaluates it."""
    config, split = ctx.config, ctx.split
    a_train, a_val, a_test = _split_rows(ctx, arrays)
    steps = steps_per_epoch(len(a_train), config.batch_size)
    compile_model(model, config, lr, steps_per_execution=divisor_at_most(steps, FAST_STEPS_PER_EXECUTION))
    orders = epoch_orders(len(a_train), epochs, config.seed)
    dataset = feature_dataset(a_train, one_hot(split.train, ctx.num_classes), orders, config.batch_size)
    validation = ArrayValidation(a_val, one_hot(split.val, ctx.num_classes), config.label_smoothing)
    watch = fit_phase(ctx, model, dataset, phase=phase, epochs=epochs, steps=steps, lr=lr,
                      save_checkpoint=save_checkpoint, previous=previous, baseline=baseline,
                      first=[validation])

    def predict(records: Sequence[ImageRecord]) -> np.ndarray:
        return predict_arrays(model, a_test if records is split.test else a_val)

    return watch, (evaluate(ctx, predict) if watch.rows else None)


def train_head_on_features(ctx: Context, body: keras.Model, head: keras.Model, backbone: Backbone
                           ) -> tuple[PhaseWatch | None, dict, dict | None]:
    """The frozen phase's fast path: extract (or load) features once, train the head on them.

    Returns:
        `(watch, or None if stopped while extracting; feature-cache facts; evaluation)`. `head`
        ends with the trained weights.
    """
    config, split = ctx.config, ctx.split
    ctx.callbacks.message("Computing features with the frozen body (once)…")
    cut = config.cut or backbone.spec.feature_layer
    try:
        cached = cached_features(body, [*split.train, *split.val, *split.test],
                                 model_id=model_id(backbone), cut=cut, image_size=ctx.image_size,
                                 name=f"{backbone.spec.name}-{cut}",
                                 on_progress=ctx.extract_progress(), stop_event=ctx.stop_event)
    except ExtractionStopped:
        return None, {"used": True, "hit": False}, None
    # Pooling has no weights, so a head on pooled features is the same head minus its pool
    # layer: built from the same seed it starts (and, fed the same batches, ends) identical.
    vector_head = build_head(cached.features.shape[1:], ctx.num_classes, config.head, seed=config.seed)

    def save_checkpoint() -> None:
        head.set_weights(vector_head.get_weights())
        ctx.recorder.save_head_checkpoint(head)

    ctx.callbacks.message("Training the head on cached features…")
    watch, evaluation = _fit_on_arrays(ctx, vector_head, cached.features, phase=FROZEN,
                                       epochs=config.epochs, lr=config.learning_rate,
                                       save_checkpoint=save_checkpoint)
    head.set_weights(vector_head.get_weights())
    facts = {"used": True, "hit": cached.hit, "seconds": cached.seconds, "path": str(cached.path)}
    return watch, facts, evaluation


def frozen_boundary(body: keras.Model, cut_points: Sequence[str], unfrozen: Sequence[str]) -> str | None:
    """The highest cut point below every unfrozen layer, or None.

    Everything below it is frozen and in inference mode, so its output for an image never
    changes while fine-tuning: it can be computed once. Cut points are block outputs, the only
    places a single tensor connects the bottom of the network to the top.
    """
    names = [layer.name for layer in body.layers]
    if not unfrozen:
        return None
    first = min(names.index(n) for n in unfrozen)
    below = [c for c in cut_points if c in names and names.index(c) < first]
    return max(below, key=names.index) if below else None


def _extract_activations(ctx: Context, bottom: keras.Model,
                         records: Sequence[ImageRecord]) -> np.ndarray:
    """Runs the frozen bottom of the body over images once (in memory; stop-aware)."""
    # extract_features pools feature maps; this wants the maps, so pass a vector-shaped wrapper.
    flat = keras.Model(bottom.input, keras.layers.Flatten()(bottom.output))
    shape = tuple(int(d) for d in bottom.output.shape[1:])
    flat_acts = extract_features(flat, records, ctx.image_size, on_progress=ctx.extract_progress(),
                                 stop_event=ctx.stop_event)
    return flat_acts.reshape((len(records), *shape))


def fine_tune_on_activations(ctx: Context, model: keras.Model, boundary: str, *, epochs: int,
                             lr: float, previous, baseline: dict | None = None
                             ) -> tuple[PhaseWatch | None, dict | None]:
    """Fine-tunes the top of the classifier's body (and its head) on cached activations at `boundary`.

    Returns:
        `(watch, evaluation)`, both None when stopped while computing the activations.
    """
    body, head = classifier_parts(model)
    boundary_output = body.get_layer(boundary).output
    ctx.callbacks.message(f"Computing the frozen layers' output at {boundary} (once)…")
    try:
        acts = _extract_activations(ctx, keras.Model(body.input, boundary_output),
                                    [*ctx.split.train, *ctx.split.val, *ctx.split.test])
    except ExtractionStopped:
        return None, None
    top = keras.Model(boundary_output, body.output, name="body_top")
    inputs = keras.Input(acts.shape[1:], name="activations")
    top_model = keras.Model(inputs, head(top(inputs, training=False)), name="top_classifier")
    ctx.callbacks.message("Fine-tuning on the cached activations…")
    return _fit_on_arrays(ctx, top_model, acts, phase=FINE_TUNE, epochs=epochs, lr=lr,
                          save_checkpoint=lambda: ctx.recorder.save_model_checkpoint(model),
                          previous=previous, baseline=baseline)
