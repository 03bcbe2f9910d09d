"""The learning-rate finder (fastai's `lr_find`): train briefly while the rate grows, plot the loss.

The rate grows exponentially from `start` to `end`, one step per batch, on the same fast path the
phase itself uses: the frozen head on cached features, or (from a trained run) the unfrozen top
of the body with its head on cached activations, body and head at their two rates. The loss is
smoothed as fastai smooths it, and the sweep ends once it passes `DIVERGE` x its minimum.

The suggestion is fastai's "minimum / 10": a tenth of the rate at the lowest smoothed loss, where
the loss still falls steadily. The steepest descent is reported too. Nothing is kept: the sweep
trains private copies.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from lib.backbones.registry import Backbone, get_spec
from lib.data.sources import DatasetIndex
from lib.errors import TransferLabError
from lib.features import cached_features
from lib.models import build_body, build_head, classifier_parts
from lib.training.callbacks import TrainCallbacks
from lib.training.config import (
    FINE_TUNE,
    FROZEN,
    LR_FIND_END,
    LR_FIND_START,
    LR_FIND_STEPS,
    TrainConfig,
)
from lib.training.engine import TrainResult, make_optimizer
from lib.training.fast_path import _extract_activations, build_top_model, frozen_boundary
from lib.training.inputs import epoch_orders, load_inputs, model_id, one_hot
from lib.training.phases import unfrozen_copy

# Stop once the smoothed loss exceeds this multiple of its minimum (fastai's default).
DIVERGE = 4.0
# Exponential smoothing of the per-batch loss, with bias correction (fastai's `beta`).
SMOOTHING = 0.98
# The suggestion is the rate at the minimum smoothed loss divided by this.
MINIMUM_DIVISOR = 10.0


@dataclass
class LRFinding:
    """What a sweep found.

    Attributes:
        phase: "frozen" (the head's rate) or "fine_tune" (the body's peak rate).
        rates: the rate of each step.
        losses: the smoothed training loss after each step.
        suggestion: the suggested rate (`minimum / 10`), within the swept range.
        minimum: the rate at the lowest smoothed loss.
        steepest: the rate where the smoothed loss fell fastest (per log-rate).
        lr_factor: for "fine_tune", `suggestion / config.learning_rate`, the value of
            `fine_tune_lr_factor` that gives it; None for "frozen".
    """

    phase: str
    rates: list[float]
    losses: list[float]
    suggestion: float
    minimum: float
    steepest: float
    lr_factor: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sweep_rates(start: float, end: float, steps: int) -> np.ndarray:
    """`steps` rates growing exponentially from `start` to `end` (both included)."""
    if not (0 < start < end) or not math.isfinite(end):
        raise TransferLabError(f"Received `start={start}`, `end={end}`; use 0 < start < end.")
    if not isinstance(steps, int) or steps < 5:
        raise TransferLabError(f"Received `steps={steps}`; sweep at least 5 steps.")
    return np.geomspace(start, end, steps)


def smooth_losses(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average, as fastai smooths the finder's loss."""
    average, smoothed = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (i + 1)))
    return smoothed


def suggest_rate(rates: list[float], losses: list[float]) -> tuple[float, float, float]:
    """`(suggestion, minimum, steepest)` from a sweep's rates and smoothed losses.

    Raises:
        TransferLabError: fewer than 3 finite losses (the sweep diverged at once).
    """
    finite = [(r, loss) for r, loss in zip(rates, losses, strict=True) if math.isfinite(loss)]
    if len(finite) < 3:
        raise TransferLabError("The loss diverged within the first steps; start the sweep lower.")
    r, loss = np.array(finite).T
    minimum = float(r[int(np.argmin(loss))])
    slopes = np.gradient(loss, np.log(r))
    steepest = float(r[int(np.argmin(slopes))])
    return max(minimum / MINIMUM_DIVISOR, float(r[0])), minimum, steepest


def run_sweep(model: keras.Model, optimizer: keras.optimizers.Optimizer, inputs: np.ndarray,
              labels: np.ndarray, config: TrainConfig, rates: np.ndarray,
              stop_event: threading.Event | None = None) -> tuple[list[float], list[float]]:
    """One optimizer step per rate on seeded batches; stops when the smoothed loss diverges.

    Returns:
        `(rates used, smoothed losses)`, equally long.
    """
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                   label_smoothing=config.label_smoothing)
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))  # logits (B, C)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    n, batch = len(inputs), config.batch_size
    per_epoch = math.ceil(n / batch)
    orders = epoch_orders(n, math.ceil(len(rates) / per_epoch), config.seed).reshape(-1)
    raw, used, smoothed = [], [], []
    for i, rate in enumerate(rates):
        if stop_event is not None and stop_event.is_set():
            break
        epoch, b = divmod(i, per_epoch)
        rows = orders[epoch * n + b * batch : epoch * n + min((b + 1) * batch, n)]
        optimizer.learning_rate = float(rate)
        raw.append(float(train_step(tf.constant(inputs[rows]), tf.constant(labels[rows]))))
        used.append(float(rate))
        smoothed = smooth_losses(raw)
        if not math.isfinite(smoothed[-1]) or smoothed[-1] > DIVERGE * min(smoothed):
            break
    return used, smoothed


def find_learning_rate(config: TrainConfig, *, result: TrainResult | None = None,
                       backbone: Backbone | None = None, dataset: DatasetIndex | None = None,
                       start: float = LR_FIND_START, end: float = LR_FIND_END,
                       steps: int = LR_FIND_STEPS, callbacks: TrainCallbacks | None = None,
                       stop_event: threading.Event | None = None) -> LRFinding:
    """Sweeps the learning rate for the frozen head, or for fine-tuning a trained result.

    Args:
        config: the settings (data, backbone, head, optimizer, batch size, smoothing, seed; for
            fine-tuning also the unfreezing and the head's rate factor).
        result: a trained result (`train`, `load_train_result`) to find the fine-tuning rate
            for; None finds the frozen head's rate. Defaults to None.
        backbone: the loaded backbone, for the frozen sweep. Defaults to None (load it).
        dataset: the loaded dataset, for the frozen sweep. Defaults to None (load `config.data`).
        start: the first rate. Defaults to `LR_FIND_START`.
        end: the last rate. Defaults to `LR_FIND_END`.
        steps: rates (one batch each). Defaults to `LR_FIND_STEPS`.
        callbacks: `on_message`, `on_extract`. Defaults to None.
        stop_event: ends the sweep early. Defaults to None.

    Returns:
        The `LRFinding`.

    Raises:
        TransferLabError: bad settings or a sweep that diverged at once.
    """
    rates = sweep_rates(start, end, steps)
    callbacks = callbacks or TrainCallbacks()
    if result is None:
        model, optimizer, inputs, labels = _frozen_setup(config.validate(), backbone, dataset,
                                                         callbacks, stop_event)
        phase = FROZEN
    else:
        model, optimizer, inputs, labels = _fine_tune_setup(config.validate(), result, callbacks,
                                                            stop_event)
        phase = FINE_TUNE
    callbacks.message(f"Sweeping the learning rate from {start:g} to {end:g}…")
    used, losses = run_sweep(model, optimizer, inputs, labels, config, rates, stop_event)
    suggestion, minimum, steepest = suggest_rate(used, losses)
    factor = suggestion / config.learning_rate if phase == FINE_TUNE else None
    return LRFinding(phase, used, losses, suggestion, minimum, steepest, factor)


def _frozen_setup(config: TrainConfig, backbone: Backbone | None, dataset: DatasetIndex | None,
                  callbacks: TrainCallbacks, stop_event):
    """A fresh seeded head on the cached features of the training images (the cache training uses)."""
    backbone, dataset, split = load_inputs(config, backbone, dataset, callbacks)
    body = build_body(backbone, config.cut)
    cut = config.cut or backbone.spec.feature_layer
    callbacks.message("Computing features with the frozen body (once)…")
    cached = cached_features(body, [*split.train, *split.val, *split.test], model_id=model_id(backbone),
                             cut=cut, image_size=backbone.spec.input_size,
                             name=f"{backbone.spec.slug}-{cut}", stop_event=stop_event,
                             on_progress=lambda d, t, m="": callbacks.on_extract and callbacks.on_extract(d, t))
    features = cached.features[: len(split.train)]
    head = build_head(features.shape[1:], dataset.num_classes, config.head, seed=config.seed)
    return head, make_optimizer(config.optimizer, LR_FIND_START), features, one_hot(
        split.train, dataset.num_classes)


def _fine_tune_setup(config: TrainConfig, result: TrainResult, callbacks: TrainCallbacks, stop_event):
    """Private copies of the result's body (top unfrozen) and head, on cached activations."""
    if result.split is None:
        raise TransferLabError("This result has no data split; find the rate for a result from `train`.")
    model, unfrozen = unfrozen_copy(result.model, config)
    boundary = frozen_boundary(classifier_parts(model)[0], get_spec(config.backbone).cut_points, unfrozen)
    if boundary is None:
        raise TransferLabError(
            "No cut point lies below the unfrozen layers, so their input cannot be computed once; "
            "unfreeze fewer layers to find a rate.")
    ctx = _SweepContext(result, callbacks, stop_event)
    body = classifier_parts(model)[0]
    callbacks.message(f"Computing the frozen layers' output at {boundary} (once)…")
    acts = _extract_activations(ctx, keras.Model(body.input, body.get_layer(boundary).output), result.split.train)
    top = build_top_model(model, boundary)
    head = classifier_parts(model)[1]
    optimizer = make_optimizer(config.optimizer, LR_FIND_START, faster=head.trainable_variables,
                               faster_factor=config.fine_tune_head_lr_factor)
    return top, optimizer, acts, one_hot(result.split.train, len(result.class_names))


class _SweepContext:
    """The few `Context` fields activation extraction reads (a sweep writes no run folder)."""

    def __init__(self, result: TrainResult, callbacks: TrainCallbacks, stop_event) -> None:
        self.image_size = int(result.model.inputs[0].shape[1])
        self.callbacks, self.stop_event = callbacks, stop_event

    def extract_progress(self):
        def on_progress(done: int, total: int, message: str = "") -> None:
            if self.callbacks.on_extract:
                self.callbacks.on_extract(done, total)
        return on_progress
