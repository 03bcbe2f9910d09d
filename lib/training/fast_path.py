"""The fast paths: train on stored outputs of frozen layers instead of pixels.

* **Feature cache** (frozen phase): with a frozen body and no augmentation every epoch would push the
  same pixels through the same body, so the body runs once (`lib.features`, cached on disk) and the
  head trains on the features. Built from the same seed and fed the same batches, the head ends
  with the same weights as on pixels (tested).
* **Cached activations** (fine-tuning): the frozen layers below the lowest unfrozen one run once (in
  memory); the unfrozen top of the body and the head train on their output: the same updates as on
  pixels, without running the frozen bottom every epoch. With augmentation the bottom runs on K
  augmented copies of each training image, once; each epoch draws one copy per image. The top
  still sees a new combination of copies every epoch, and memorises far more slowly.

Both compile several steps per call and validate on the cached arrays in a few compiled calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from lib.backbones.registry import Backbone
from lib.data.pipeline import make_dataset
from lib.data.sources import ImageRecord
from lib.engine import open_forward
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
# Images per forward pass when computing augmented activations.
AUGMENT_BATCH = 32


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


def copy_orders(orders: np.ndarray, n: int, copies: int, seed: int) -> np.ndarray:
    """Rows into `copies` stacked copies of n training rows: epoch e visits `orders[e]`, each image
    in a seeded random copy. With one copy these are `orders` themselves (the unaugmented path)."""
    if copies == 1:
        return orders
    return orders + n * np.random.default_rng(seed + 1).integers(copies, size=orders.shape)


def _fit_on_arrays(ctx: Context, model: keras.Model, train: np.ndarray, held_out: np.ndarray, *,
                   phase: str, epochs: int, lr: float | Callable[[], float],
                   save_checkpoint: Callable[[], None], previous=None, baseline: dict | None = None,
                   optimizer: keras.optimizers.Optimizer | None = None
                   ) -> tuple[PhaseWatch, dict | None]:
    """Fits a logits model on cached arrays and evaluates it.

    Args:
        train: `(K, n_train, ...)`: K copies of the training rows (K = 1 without augmentation).
        held_out: the validation rows, then the test rows.
        optimizer: see `compile_model`. Defaults to None (the config's, at `lr`).
    """
    config, split = ctx.config, ctx.split
    copies, n = int(train.shape[0]), int(train.shape[1])
    a_val, a_test = held_out[: len(split.val)], held_out[len(split.val) :]
    steps = steps_per_epoch(n, config.batch_size)
    compile_model(model, config, lr if not callable(lr) else 0.0, optimizer=optimizer,
                  steps_per_execution=divisor_at_most(steps, FAST_STEPS_PER_EXECUTION))
    orders = copy_orders(epoch_orders(n, epochs, config.seed), n, copies, config.seed)
    labels = np.tile(one_hot(split.train, ctx.num_classes), (copies, 1))
    dataset = feature_dataset(train.reshape((copies * n, *train.shape[2:])), labels, orders,
                              config.batch_size)
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
                                 name=f"{backbone.spec.slug}-{cut}",
                                 on_progress=ctx.extract_progress(), stop_event=ctx.stop_event,
                                 on_warning=ctx.callbacks.message)
    except ExtractionStopped:
        return None, {"used": True, "hit": False}, None
    # Pooling has no weights, so a head on pooled features is the same head minus its pool
    # layer: built from the same seed it starts (and, fed the same batches, ends) identical.
    vector_head = build_head(cached.features.shape[1:], ctx.num_classes, config.head, seed=config.seed)

    def save_checkpoint() -> None:
        head.set_weights(vector_head.get_weights())
        ctx.recorder.save_head_checkpoint(head)

    ctx.callbacks.message("Training the head on cached features…")
    n_train = len(split.train)
    watch, evaluation = _fit_on_arrays(ctx, vector_head, cached.features[None, :n_train],
                                       cached.features[n_train:], phase=FROZEN,
                                       epochs=config.epochs, lr=config.learning_rate,
                                       save_checkpoint=save_checkpoint)
    head.set_weights(vector_head.get_weights())
    # Which engine computed the features (LiteRT, or TensorFlow as the fallback) goes on record;
    # the evaluation ran the body on that engine too (its features are the cached ones).
    facts = {"used": True, "hit": cached.hit, "seconds": cached.seconds, "path": str(cached.path),
             "engine": cached.engine}
    if evaluation is not None and cached.engine:
        evaluation = {**evaluation, "engine": cached.engine}
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


def build_flat_bottom(bottom: keras.Model) -> keras.Model:
    """The frozen bottom with its activations flattened: pixels -> `(B, H*W*C)`.

    What the inference engine runs for activations (it would pool a feature map). Fixed names:
    the engine's cached conversion is keyed by layer names, and an automatic "flatten_7" would
    convert the same bottom again on every fine-tune of a server's life.
    """
    return keras.Model(bottom.input, keras.layers.Flatten(name="flat_activations")(bottom.output),
                       name=f"below_{bottom.layers[-1].name}")


def _extract_activations(ctx: Context, bottom: keras.Model,
                         records: Sequence[ImageRecord]) -> np.ndarray:
    """Runs the frozen bottom of the body over images once (in memory; stop-aware)."""
    flat = build_flat_bottom(bottom)
    shape = tuple(int(d) for d in bottom.output.shape[1:])
    flat_acts = extract_features(flat, records, ctx.image_size, on_progress=ctx.extract_progress(),
                                 stop_event=ctx.stop_event)
    return flat_acts.reshape((len(records), *shape))


def augmented_activations(bottom: keras.Model, records: Sequence[ImageRecord], image_size: int,
                          augmentation: keras.Sequential, copies: int, *, num_classes: int,
                          batch_size: int = AUGMENT_BATCH, on_progress=None,
                          stop_event=None) -> np.ndarray:
    """The frozen bottom's output for `copies` augmented versions of each image, computed once.

    Args:
        bottom: pixels -> activations, frozen (called in inference mode).
        records: the training images.
        image_size: the input side.
        augmentation: seeded Keras random layers (`build_augmentation`); every call draws anew,
            so the copies differ and a run is reproducible.
        copies: K, at least 1.
        num_classes: the label width the pipeline needs (labels are not used).
        batch_size: images per forward pass. Defaults to `AUGMENT_BATCH`.
        on_progress: `fn(done, total)` after each batch. Defaults to None.
        stop_event: checked after each batch. Defaults to None.

    Returns:
        float32 `(copies, len(records), *activation shape)`.

    Raises:
        ExtractionStopped: the stop event was set.
    """
    flat = build_flat_bottom(bottom)
    shape = tuple(int(d) for d in bottom.output.shape[1:])
    pixels = make_dataset(records, num_classes, image_size, batch_size, cache=True)
    out, total = [], copies * len(records)
    # The frozen bottom runs on the inference engine (LiteRT, TensorFlow as the fallback), the
    # same converted file as the plain activations; the augmentation stays in Keras.
    with open_forward(flat, pool=False, name=flat.name) as forward:
        for _ in range(copies):
            batches = []
            for x, _labels in pixels:
                # Eager, outside tf.data: each call draws new random values from the layers' seeds.
                augmented = np.asarray(augmentation(x, training=True))  # (B, S, S, 3)
                batches.append(forward(augmented).reshape((-1, *shape)))  # (B, H, W, C)
                done = len(out) * len(records) + sum(len(b) for b in batches)
                if on_progress:
                    on_progress(done, total)
                if stop_event is not None and stop_event.is_set():
                    raise ExtractionStopped()
            out.append(np.concatenate(batches))
    return np.stack(out)


def build_top_model(model: keras.Model, boundary: str, *, body_inference: bool = True) -> keras.Model:
    """Activations at `boundary` -> logits: the classifier's unfrozen top and head, sharing weights.

    `body_inference=False` calls the top in the mode the model is called in, as the classifier's
    body is with `batchnorm_mode="training"`; the frozen bottom's BatchNorm is not trainable, so
    it ran in inference mode either way and its cached output stays what the pixels would give.
    """
    body, head = classifier_parts(model)
    boundary_output = body.get_layer(boundary).output
    top = keras.Model(boundary_output, body.output, name="body_top")
    inputs = keras.Input(tuple(boundary_output.shape[1:]), name="activations")
    features = top(inputs, training=False) if body_inference else top(inputs)
    return keras.Model(inputs, head(features), name="top_classifier")


def fine_tune_on_activations(ctx: Context, model: keras.Model, boundary: str, *, epochs: int,
                             lr: float | Callable[[], float], previous, baseline: dict | None = None,
                             augmentation: keras.Sequential | None = None, copies: int = 1,
                             make_optimizer: Callable[[keras.Model], keras.optimizers.Optimizer] | None = None
                             ) -> tuple[PhaseWatch | None, dict | None]:
    """Fine-tunes the top of the classifier's body (and its head) on cached activations at `boundary`.

    Args:
        augmentation: random layers for the training images, or None. Defaults to None.
        copies: augmented copies of each training image (1 without augmentation). Defaults to 1.
        make_optimizer: `fn(top_model) -> optimizer` (two rates, schedule). Defaults to None.

    Returns:
        `(watch, evaluation)`, both None when stopped while computing the activations.
    """
    body, _ = classifier_parts(model)
    bottom = keras.Model(body.input, body.get_layer(boundary).output)
    split = ctx.split
    try:
        if augmentation is None:
            ctx.callbacks.message(f"Computing the frozen layers' output at {boundary} (once)…")
            acts = _extract_activations(ctx, bottom, [*split.train, *split.val, *split.test])
            train, held_out = acts[None, : len(split.train)], acts[len(split.train) :]
        else:
            ctx.callbacks.message(f"Computing the frozen layers' output at {boundary} for {copies} "
                                  "augmented copies of each training image (once)…")
            progress = ctx.extract_progress()
            train = augmented_activations(bottom, split.train, ctx.image_size, augmentation, copies,
                                          num_classes=ctx.num_classes, on_progress=progress,
                                          stop_event=ctx.stop_event)
            held_out = _extract_activations(ctx, bottom, [*split.val, *split.test])
    except ExtractionStopped:
        return None, None
    top_model = build_top_model(model, boundary,
                                body_inference=ctx.config.batchnorm_mode == "inference")
    ctx.callbacks.message("Fine-tuning on the cached activations…")
    return _fit_on_arrays(ctx, top_model, train, held_out, phase=FINE_TUNE, epochs=epochs, lr=lr,
                          save_checkpoint=lambda: ctx.recorder.save_model_checkpoint(model),
                          previous=previous, baseline=baseline,
                          optimizer=make_optimizer(top_model) if make_optimizer else None)
