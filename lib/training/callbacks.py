"""Small Keras callbacks for training, one job each (as fastai keeps recording, display and stopping apart).

* `EpochLog` records one history row per finished epoch.
* `BestWeights` keeps the best epoch's weights (by validation accuracy, then loss), early-stops,
  and restores the best at the end.
* `StopOnEvent` ends training within one batch once a `threading.Event` is set.
* `ProgressReporter` sends progress to the `TrainCallbacks` functions.
* `EpochSummaries` writes TensorBoard epoch scalars.
* `BatchNormRecalibration` recomputes BatchNorm statistics before each validation.

Persistence is not here: `lib.runs.recorder.RunCallback` keeps the run folder up to date.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from lib.models import is_batchnorm
from lib.runs import HISTORY_COLUMNS

LOG_COLUMNS = (*HISTORY_COLUMNS, "lr")
# Two validation accuracies closer than this count as equal (the same number of images right).
ACCURACY_TIE = 1e-9


@dataclass
class TrainCallbacks:
    """Where training reports progress (all optional; called on the training thread).

    Attributes:
        on_batch_end: `fn({"phase", "epoch", "batch", "batches", "loss", "accuracy",
            "eta_seconds"})`; on the feature-cache path once per group of steps.
        on_epoch_end: `fn({"phase", "epoch", "epochs", "loss", "accuracy", "val_loss",
            "val_accuracy", "seconds"})`.
        on_extract: `fn(done, total)` while the body extracts features.
        on_message: `fn(text)` with what is happening now, for a person.
        on_progress: `fn(done, total, text)` for jobs counted in steps, not epochs (Look inside);
            training does not call it.
    """

    on_batch_end: Callable[[dict], None] | None = None
    on_epoch_end: Callable[[dict], None] | None = None
    on_extract: Callable[[int, int], None] | None = None
    on_message: Callable[[str], None] | None = None
    on_progress: Callable[[int, int, str], None] | None = None

    def message(self, text: str) -> None:
        if self.on_message:
            self.on_message(text)


class TrainingStopped(Exception):
    """Raised by `StopOnEvent` inside `fit` to end training at once (a request, not an error)."""


def as_float(value) -> float | None:
    """A finite float, or None for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class EpochLog(keras.callbacks.Callback):
    """Records one history row per finished epoch: phase, epoch, losses, accuracies, seconds, lr.

    Args:
        phase: "frozen", "fine_tune" or "scratch".
        lr: the phase's learning rate (a history column), or a function that reads the rate at the
            end of an epoch (a scheduled rate).
        previous: the history before this phase; its epochs number on from it. Defaults to None.
    """

    def __init__(self, phase: str, lr: float | Callable[[], float],
                 previous: pd.DataFrame | None = None) -> None:
        super().__init__()
        self.phase, self.lr, self.previous = phase, lr, previous
        self.epoch_offset = 0 if previous is None else len(previous)
        self.rows: list[dict] = []
        self._epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.rows.append({
            "phase": self.phase, "epoch": self.epoch_offset + epoch + 1,
            "loss": as_float(logs.get("loss")), "accuracy": as_float(logs.get("accuracy")),
            "val_loss": as_float(logs.get("val_loss")),
            "val_accuracy": as_float(logs.get("val_accuracy")),
            "seconds": time.perf_counter() - self._epoch_start,
            "lr": float(self.lr()) if callable(self.lr) else self.lr,
        })

    def history(self) -> pd.DataFrame:
        """The previous history followed by this phase's rows."""
        new = pd.DataFrame(self.rows, columns=list(LOG_COLUMNS))
        if self.previous is None or self.previous.empty:
            return new
        return pd.concat([self.previous, new], ignore_index=True) if len(new) else self.previous.copy()


def is_better(candidate: dict, best: dict | None) -> bool:
    """True when an epoch beats the best so far: higher `val_accuracy`, or equal and lower `val_loss`.

    Accuracy first because it is what a person reads; validation loss alone rewards sharper
    probabilities while accuracy moves within one image. A missing accuracy compares on loss.
    """
    loss = as_float(candidate.get("val_loss"))
    if loss is None:
        return False
    if best is None:
        return True
    acc, best_acc = as_float(candidate.get("val_accuracy")), as_float(best.get("val_accuracy"))
    if acc is not None and best_acc is not None and abs(acc - best_acc) > ACCURACY_TIE:
        return acc > best_acc
    return loss < best["val_loss"]


class BestWeights(keras.callbacks.Callback):
    """Keeps the best epoch's weights (`is_better`: accuracy, then loss); early-stops; restores them.

    Early stopping waits for convergence rather than for a better best epoch: `patience` epochs in
    which neither the best epoch nor the lowest validation loss improves (a head whose loss still
    falls at the same accuracy has not converged).

    Args:
        patience: epochs without improvement before stopping; None never stops.
        epoch_offset: epochs before this phase, so `best_epoch` numbers as the history does.
            Defaults to 0.
        baseline: a starting point to beat, `{"epoch", "val_loss", "val_accuracy"}` (fine-tuning
            starts from the frozen phase's best epoch); its weights are the model's at the start,
            kept if no epoch beats it. Defaults to None.
    """

    def __init__(self, patience: int | None, epoch_offset: int = 0,
                 baseline: dict | None = None) -> None:
        super().__init__()
        self.patience, self.epoch_offset = patience, epoch_offset
        self.baseline = baseline if baseline and baseline.get("val_loss") is not None else None
        self.best: dict | None = None
        self.best_epoch: int | None = None
        self.lowest_loss = math.inf
        self.best_weights: list | None = None
        self.wait, self.early_stopped = 0, False

    @property
    def best_loss(self) -> float:
        return self.best["val_loss"] if self.best else math.inf

    def on_train_begin(self, logs=None):
        if self.baseline is not None and self.best_weights is None:
            self.best, self.best_epoch = dict(self.baseline), self.baseline["epoch"]
            self.lowest_loss = self.baseline["val_loss"]
            self.best_weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"val_loss": as_float(logs.get("val_loss")), "val_accuracy": as_float(logs.get("val_accuracy"))}
        improved = False
        if is_better(row, self.best):
            self.best, self.best_epoch = row, self.epoch_offset + epoch + 1
            self.best_weights = self.model.get_weights()  # a new list: RunCallback saves it
            improved = True
        if row["val_loss"] is not None and row["val_loss"] < self.lowest_loss:
            self.lowest_loss, improved = row["val_loss"], True
        if improved:
            self.wait = 0
            return
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self.early_stopped = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class StopOnEvent(keras.callbacks.Callback):
    """Ends training within one batch once `stop_event` is set, by raising `TrainingStopped`.

    Raising skips the rest of the epoch, its validation (which can take seconds) and its epoch end:
    a partial epoch is not an epoch. Place it after the progress reporter, so that a stop set by a
    progress callback still counts the batch that reported.
    """

    def __init__(self, stop_event: threading.Event | None) -> None:
        super().__init__()
        self.stop_event, self.stopped = stop_event, False

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_event is not None and self.stop_event.is_set():
            self.stopped = True
            raise TrainingStopped()


class ProgressReporter(keras.callbacks.Callback):
    """Sends batch and epoch progress to the `TrainCallbacks` functions.

    Args:
        callbacks: where to report.
        log: the phase's `EpochLog` (placed before this callback), whose rows the epochs report.
        epochs: epochs in this phase.
        batches: batches per epoch.
    """

    def __init__(self, callbacks: TrainCallbacks, log: EpochLog, *, epochs: int, batches: int) -> None:
        super().__init__()
        self.callbacks, self.log, self.epochs, self.batches = callbacks, log, epochs, batches
        self._start = time.perf_counter()

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.callbacks.on_batch_end is None:
            return
        logs = logs or {}
        done = len(self.log.rows) * self.batches + batch + 1
        elapsed = time.perf_counter() - self._start
        self.callbacks.on_batch_end({
            "phase": self.log.phase, "epoch": self.log.epoch_offset + len(self.log.rows) + 1,
            "batch": batch + 1, "batches": self.batches,
            "loss": as_float(logs.get("loss")), "accuracy": as_float(logs.get("accuracy")),
            "eta_seconds": elapsed / done * (self.epochs * self.batches - done),
        })

    def on_epoch_end(self, epoch, logs=None):
        if self.callbacks.on_epoch_end is not None:
            self.callbacks.on_epoch_end({**self.log.rows[-1],
                                         "epochs": self.log.epoch_offset + self.epochs})


class EpochSummaries(keras.callbacks.Callback):
    """Writes per-epoch scalars as TensorBoard event files, like `keras.callbacks.TensorBoard`.

    Same layout and tags as Keras' callback (`<log_dir>/train` and `/validation`, `epoch_loss`,
    `epoch_accuracy`), but it needs only TensorFlow: `tf.summary.scalar` (and so the Keras
    callback) fails unless the separate `tensorboard` package is installed, which the app does not
    need. `tensorboard --logdir RUN/tb` reads the files.
    """

    def __init__(self, log_dir: Path, epoch_offset: int = 0) -> None:
        super().__init__()
        self.log_dir, self.epoch_offset = Path(log_dir), epoch_offset
        self._writers: dict[str, tf.summary.SummaryWriter] = {}
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        ).SerializeToString()

    def _writer(self, name: str) -> tf.summary.SummaryWriter:
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def write(self, epoch: int, logs: dict) -> None:
        """Writes `{"loss": .., "val_loss": ..}`-style values at a step."""
        for key, value in logs.items():
            if value is None:
                continue
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value)), step=epoch,
                                 metadata=self._metadata)

    def on_epoch_end(self, epoch, logs=None):
        # Validation on cached arrays adds its metrics to the logs in an earlier callback.
        self.write(self.epoch_offset + epoch, dict(logs or {}))

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer, nested models' layers included (a BatchNorm inside a block model counts)."""
    found = []
    for layer in model.layers:
        found.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return found


def recalibrate_batchnorm(body: keras.Model, images: tf.data.Dataset,
                          stop_event: threading.Event | None = None) -> int:
    """Sets every BatchNorm's moving statistics to the mean and variance over `images` ("precise BN").

    Training normalises with each batch's statistics; inference uses the moving averages, which
    trail weights that keep changing. From random weights every layer's statistics move fast and
    the lag compounds through the depth, so a model that is right in training mode can predict one
    class for everything in inference mode. Recomputing the statistics at the current weights
    removes that mismatch without changing any trained weight.

    Args:
        body: a model whose BatchNormalization layers are trainable (they update in training mode).
        images: batches of `(pixels, labels)`; the labels are ignored.
        stop_event: when set, stops between batches (the statistics so far are kept).

    Returns:
        The number of images averaged over (0 leaves the statistics as they were).
    """
    layers = [layer for layer in _all_layers(body) if is_batchnorm(layer) and layer.trainable]
    momenta = [layer.momentum for layer in layers]
    sums = [[0.0, 0.0] for _ in layers]  # per layer: sum of n * mean, sum of n * E[x^2]
    seen = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # the moving statistics become exactly this batch's
        for x, _ in images:
            if stop_event is not None and stop_event.is_set():
                break
            n = int(x.shape[0])
            # Eager on purpose: a plain forward pass whose only effect is the statistics update.
            body(x, training=True)
            for layer, total in zip(layers, sums, strict=True):
                mean, var = np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)
                total[0] += n * mean
                # E[x^2] rather than the mean of batch variances: the spread between batch means
                # (say, batches of mostly one class) is part of the variance inference sees.
                total[1] += n * (var + mean**2)
            seen += n
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    if seen:
        for layer, (sum_mean, sum_square) in zip(layers, sums, strict=True):
            mean = sum_mean / seen
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(np.maximum(sum_square / seen - mean**2, 0.0))
    return seen


class BatchNormRecalibration(keras.callbacks.Callback):
    """Recomputes the body's BatchNorm statistics over the training images before validation.

    Keras runs validation before `on_epoch_end`, so this works in `on_test_begin`. The statistics
    are non-trainable weights: the best-epoch weights and checkpoints carry the recalibrated ones.
    """

    def __init__(self, body: keras.Model, images: tf.data.Dataset,
                 stop_event: threading.Event | None = None) -> None:
        super().__init__()
        self.body, self.images, self.stop_event = body, images, stop_event

    def on_test_begin(self, logs=None):
        recalibrate_batchnorm(self.body, self.images, self.stop_event)
