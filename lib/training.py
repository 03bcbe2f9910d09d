"""Training: a head on a frozen body, optional fine-tuning, and the from-scratch baseline.

The recipe (Keras transfer-learning guide, fastai `fine_tune`):

1. **Frozen** (`train`): body frozen and called with `training=False`, a fresh seeded head trained
   with Adam/SGD/RMSprop, label smoothing, early stopping on `val_loss` that restores the best
   epoch, and a checkpoint of the best epoch.
2. **Fine-tune** (`fine_tune`, or `TrainConfig.fine_tune_epochs > 0`): a private copy of the body
   with its top layers unfrozen (every BatchNorm stays frozen), recompiled at a 10x lower rate;
   the history continues with `phase="fine_tune"`.
3. **Scratch** (`train_from_scratch`): the same architecture from random weights, all trainable,
   on the same split and budget, to show what the pretrained weights bring. BatchNorm statistics
   are recomputed over the training images before each validation ("precise BN").

**Feature-cache fast path.** With a frozen body and no augmentation every epoch would push the same
pixels through the same body, so the body runs once (`lib.features`) and the head trains on the
stored features. Both paths visit the training images in the same seeded order (`epoch_orders`)
and build the head from the same seed, so they end with the same head weights (tested).

Progress goes to the `TrainCallbacks` passed in; `stop_event` is honoured within one batch (one
`steps_per_execution` group of feature batches on the fast path). Nothing here prints.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from lib import runs
from lib.backbones.registry import Backbone, get_spec, load_backbone
from lib.data.augment import AugmentConfig, build_augmentation
from lib.data.pipeline import make_dataset
from lib.data.sources import DatasetIndex, ImageRecord, load_dataset
from lib.data.split import Split, split_dataset
from lib.errors import TransferLabError
from lib.evaluate import summarize_predictions
from lib.features import ExtractionStopped, cached_features
from lib.models import (
    HeadConfig,
    build_body,
    build_classifier,
    build_head,
    copy_body,
    count_params,
    get_body,
    get_head,
    is_batchnorm,
    unfreeze_top,
)
from lib.paths import atomic_save_weights

OPTIMIZERS = ("adam", "sgd", "rmsprop")
FROZEN, FINE_TUNE, SCRATCH = "frozen", "fine_tune", "scratch"
MONITOR = "val_loss"
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
SGD_MOMENTUM = 0.9
# Disk writes (history, heartbeat, best checkpoint) at most this often, so a fast feature-cache
# epoch (milliseconds) is not dominated by fsyncs; the last state is always flushed at phase end.
WRITE_INTERVAL_S = 2.0
# Feature batches per compiled call on the fast path: Keras' per-step Python overhead is larger
# than a head step on features, so grouping steps is most of the fast path's speed.
FAST_STEPS_PER_EXECUTION = 16
EVAL_BATCH = 64
SCRATCH_BN_MOMENTUM = 0.9
# Cached features/activations per validation call: bounds memory for feature maps.
VAL_CHUNK = 256


# ----- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as the run's `config.json`).

    Attributes:
        backbone: registry name. Defaults to "efficientnet_lite0".
        data: folder, zip, `builtin:NAME` or `tfds:NAME`. Defaults to "builtin:faces".
        cut: cut point; None means the backbone's top feature layer.
        head: hidden units and dropout. Defaults to `HeadConfig()`.
        optimizer: "adam", "sgd" (momentum 0.9) or "rmsprop". Defaults to "adam".
        learning_rate: frozen-phase learning rate. Defaults to 1e-3.
        batch_size: images per step. Defaults to 32.
        epochs: frozen-phase epochs (early stopping may end sooner). Defaults to 20; with the
            feature cache an epoch costs milliseconds (flowers5 gains 1.2 points from 10 to 20).
        label_smoothing: in [0, 1). Defaults to 0.
        early_stopping_patience: epochs without a better `val_loss` before stopping; None turns
            early stopping off. Either way the best epoch's weights are kept. Defaults to 5.
        augment: augmentation settings, or None for none. Turns the feature cache off for the
            frozen phase. Defaults to None.
        val_split: validation share of each class, in (0, 1). Defaults to 0.2.
        test_split: test share of each class, in [0, 1). Defaults to 0.1.
        seed: seeds the split, the head, the epoch order and the augmentation. Defaults to 0.
        use_feature_cache: use the fast path when possible. Defaults to True.
        fine_tune_epochs: epochs of phase 2 after the frozen phase; 0 skips it. Defaults to 0.
        unfreeze: top layers of the body to unfreeze for fine-tuning. Defaults to 20.
        unfreeze_from: unfreeze from this layer up instead (overrides `unfreeze`). Defaults to None.
        fine_tune_lr_factor: fine-tuning rate = learning_rate x this. Defaults to 0.1.
    """

    backbone: str = "efficientnet_lite0"
    data: str = "builtin:faces"
    cut: str | None = None
    head: HeadConfig = HeadConfig()
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 20
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = 5
    augment: AugmentConfig | None = None
    val_split: float = 0.2
    test_split: float = 0.1
    seed: int = 0
    use_feature_cache: bool = True
    fine_tune_epochs: int = 0
    unfreeze: int = 20
    unfreeze_from: str | None = None
    fine_tune_lr_factor: float = 0.1

    def validate(self) -> TrainConfig:
        """Returns self, or raises TransferLabError naming the bad value."""
        _check(bool(str(self.backbone).strip()), f"Received `backbone={self.backbone!r}`; name a backbone.")
        _check(bool(str(self.data).strip()), f"Received `data={self.data!r}`; name a dataset.")
        _check(self.optimizer in OPTIMIZERS,
               f"Received `optimizer={self.optimizer!r}`; use one of {', '.join(OPTIMIZERS)}.")
        _check(_is_number(self.learning_rate) and 0 < self.learning_rate <= 10,
               f"Received `learning_rate={self.learning_rate}`; use a positive rate such as 1e-3.")
        _check(_is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
               f"Received `batch_size={self.batch_size}`; use 1 to {MAX_BATCH_SIZE}.")
        _check(_is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS,
               f"Received `epochs={self.epochs}`; use 1 to {MAX_EPOCHS}.")
        _check(_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1,
               f"Received `label_smoothing={self.label_smoothing}`; use a value in [0, 1).")
        _check(self.early_stopping_patience is None
               or (_is_int(self.early_stopping_patience) and self.early_stopping_patience >= 1),
               f"Received `early_stopping_patience={self.early_stopping_patience}`; use 1 or more, "
               "or None to turn early stopping off.")
        _check(_is_number(self.val_split) and 0 < self.val_split < 1,
               f"Received `val_split={self.val_split}`; use a fraction above 0 and below 1 "
               "(early stopping and the reported accuracy need validation images).")
        _check(_is_number(self.test_split) and 0 <= self.test_split < 1,
               f"Received `test_split={self.test_split}`; use a fraction in [0, 1).")
        _check(_is_int(self.fine_tune_epochs) and 0 <= self.fine_tune_epochs <= MAX_EPOCHS,
               f"Received `fine_tune_epochs={self.fine_tune_epochs}`; use 0 to {MAX_EPOCHS}.")
        _check(_is_int(self.unfreeze) and self.unfreeze >= 1,
               f"Received `unfreeze={self.unfreeze}`; unfreeze at least 1 layer.")
        _check(_is_number(self.fine_tune_lr_factor) and 0 < self.fine_tune_lr_factor <= 10,
               f"Received `fine_tune_lr_factor={self.fine_tune_lr_factor}`; use a factor in (0, 10].")
        _check(_is_int(self.seed), f"Received `seed={self.seed}`; use an integer.")
        self.head.validate()
        return self

    def to_dict(self) -> dict:
        """Plain data for `config.json`."""
        value = asdict(self)
        value["augment"] = self.augment.to_dict() if self.augment is not None else None
        return value

    @classmethod
    def from_dict(cls, value: dict) -> TrainConfig:
        """Rebuilds a config from `to_dict()` output; keys it does not know (run facts) are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in value.items() if k in known}
        if isinstance(kwargs.get("head"), dict):
            kwargs["head"] = HeadConfig(**kwargs["head"])
        if isinstance(kwargs.get("augment"), dict):
            kwargs["augment"] = AugmentConfig(**kwargs["augment"])
        return cls(**kwargs)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TransferLabError(message)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)


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
    """

    on_batch_end: Callable[[dict], None] | None = None
    on_epoch_end: Callable[[dict], None] | None = None
    on_extract: Callable[[int, int], None] | None = None
    on_message: Callable[[str], None] | None = None

    def message(self, text: str) -> None:
        if self.on_message:
            self.on_message(text)


@dataclass
class TrainResult:
    """What a training call produced.

    Attributes:
        run_dir: the run folder.
        model: the classifier (body + head) in memory, for fine-tuning and prediction.
        class_names: names in label order.
        history: one row per epoch: phase, epoch, loss, accuracy, val_loss, val_accuracy,
            seconds, lr.
        metrics: what `metrics.json` holds (evaluation, parameter counts, per-phase summaries).
        stopped: the stop event ended training early.
        used_feature_cache: the frozen phase trained on cached features.
        feature_cache_reason: why the cache was not used ("" when it was).
        config: the config this run used (fine-tuning settings included once fine-tuned).
        split: the records of each split.
        pretrained: whether the backbone weights were pretrained.
    """

    run_dir: Path
    model: keras.Model
    class_names: list[str]
    history: pd.DataFrame
    metrics: dict
    stopped: bool
    used_feature_cache: bool
    feature_cache_reason: str
    config: TrainConfig = field(default_factory=TrainConfig)
    split: Split | None = None
    pretrained: bool = True


class _StopRequested(Exception):
    """Raised inside `fit` to skip the validation pass after a stop (it can take seconds)."""


def feature_cache_reason(config: TrainConfig, phase: str = FROZEN) -> str | None:
    """Says why the feature cache cannot be used, or None when it can.

    For the frozen phase the cache holds the body's output; for fine-tuning it holds the output
    of the frozen layers below the unfrozen ones (computed once per fine-tuning call, in memory).

    Args:
        config: the training settings.
        phase: "frozen" (the default), "fine_tune" or "scratch" (which never can).

    Returns:
        None, or a sentence for a person.
    """
    if phase == SCRATCH:
        return "every layer trains from scratch, so no layer's output can be computed once."
    if not config.use_feature_cache:
        return "the feature cache is turned off."
    if config.augment is not None and config.augment.enabled:
        return ("augmentation is on: every epoch sees different pixels, so the body's features "
                "cannot be computed once.")
    return None


# ----- small building blocks ---------------------------------------------------------------------


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Returns a fresh optimizer by name ("adam", "sgd" with momentum 0.9, "rmsprop")."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=SGD_MOMENTUM)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise TransferLabError(f"Received `optimizer={name!r}`; use one of {', '.join(OPTIMIZERS)}.")


def compile_model(model: keras.Model, config: TrainConfig, learning_rate: float,
                  steps_per_execution: int = 1) -> None:
    """Compiles with the config's optimizer, label-smoothed cross-entropy and accuracy."""
    model.compile(
        optimizer=make_optimizer(config.optimizer, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )


def epoch_orders(n: int, epochs: int, seed: int) -> np.ndarray:
    """The order in which each epoch visits the training images, shared by both paths.

    Returns:
        int64 `(epochs, n)`: row e is a permutation of range(n).
    """
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]) if epochs else np.zeros((0, n), int)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (a step group must not straddle two epochs)."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def one_hot(records: Sequence[ImageRecord], num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[[r.label for r in records]]


def feature_dataset(features: np.ndarray, labels: np.ndarray, orders: np.ndarray,
                    batch_size: int) -> tf.data.Dataset:
    """Batches of `(features, labels)` for all epochs, epoch e in the order `orders[e]`."""
    features_t, labels_t = tf.constant(features), tf.constant(labels)
    # Batching inside each epoch's row keeps the ragged last batch in its own epoch.
    indices = tf.data.Dataset.from_tensor_slices(orders.astype(np.int64)).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    )
    return indices.map(
        lambda idx: (tf.gather(features_t, idx), tf.gather(labels_t, idx)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)


def pixel_dataset(records: Sequence[ImageRecord], num_classes: int, image_size: int,
                  batch_size: int, orders: np.ndarray,
                  augmentation: keras.Sequential | None) -> tf.data.Dataset:
    """Batches of `(pixels, labels)` for all epochs, epoch e in the order `orders[e]`.

    Each epoch is its own batched dataset, so no batch mixes two epochs (and the fast path's
    batches hold exactly the same images).
    """
    dataset = None
    for order in orders:
        epoch = make_dataset([records[i] for i in order], num_classes, image_size, batch_size,
                             shuffle=False, augmentation=augmentation, cache=False)
        dataset = epoch if dataset is None else dataset.concatenate(epoch)
    return dataset


def _model_id(backbone: Backbone) -> str:
    spec = backbone.spec
    return f"{spec.name}:{'pretrained' if backbone.pretrained else 'random'}:{spec.weights_source}"


# ----- the progress / early-stopping / checkpoint callback ---------------------------------------


class PhaseMonitor(keras.callbacks.Callback):
    """Reports progress, honours the stop event, early-stops on `val_loss`, keeps the best weights.

    One instance per phase. It records history rows, writes the run's history, heartbeat and best
    checkpoint at most every `WRITE_INTERVAL_S`, and restores the best epoch's weights in
    `finish()`.
    """

    def __init__(self, *, phase: str, epoch_offset: int, epochs: int, batches: int,
                 patience: int | None, callbacks: TrainCallbacks, stop_event: threading.Event | None,
                 run_dir: Path, history: pd.DataFrame, save_checkpoint: Callable[[], None],
                 validate: Callable[[], dict] | None = None, lr: float = 0.0,
                 baseline: dict | None = None) -> None:
        super().__init__()
        self.phase, self.epoch_offset, self.epochs, self.batches = phase, epoch_offset, epochs, batches
        self.patience, self.callbacks, self.stop_event = patience, callbacks, stop_event
        self.run_dir, self.previous, self.save_checkpoint = run_dir, history, save_checkpoint
        self.validate, self.lr = validate, lr
        self.rows: list[dict] = []
        self.best_loss, self.best_epoch, self.best_weights, self.wait = math.inf, None, None, 0
        self.user_stopped = self.early_stopped = False
        self._dirty_checkpoint = self._dirty_history = False
        self._last_write = self._last_checkpoint = -math.inf
        self._phase_start = self._epoch_start = time.perf_counter()
        self._batches_done = 0
        # Fine-tuning starts from the frozen phase's best epoch: it must beat that to count.
        self.baseline = baseline if baseline and baseline.get("val_loss") is not None else None

    # -- per batch --
    def on_train_begin(self, logs=None):
        self._phase_start = time.perf_counter()
        if self.baseline is not None and self.best_weights is None:
            self.best_loss, self.best_epoch = self.baseline["val_loss"], self.baseline["epoch"]
            self.best_weights = self.model.get_weights()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._batches_done += 1
        self._maybe_heartbeat()
        if self.callbacks.on_batch_end is not None:
            self._report_batch(batch, logs)
        # Checked after reporting, so a stop set by a progress callback counts this batch.
        if self.stop_event is not None and self.stop_event.is_set():
            self.user_stopped = True
            self.model.stop_training = True

    def _report_batch(self, batch: int, logs: dict | None) -> None:
        logs = logs or {}
        epoch = self.epoch_offset + len(self.rows) + 1
        done_in_phase = len(self.rows) * self.batches + batch + 1
        elapsed = time.perf_counter() - self._phase_start
        left = self.epochs * self.batches - done_in_phase
        self.callbacks.on_batch_end({
            "phase": self.phase, "epoch": epoch, "batch": batch + 1, "batches": self.batches,
            "loss": _float(logs.get("loss")), "accuracy": _float(logs.get("accuracy")),
            "eta_seconds": elapsed / done_in_phase * left,
        })

    def on_test_begin(self, logs=None):
        if self.user_stopped:
            raise _StopRequested()

    # -- per epoch --
    def on_epoch_end(self, epoch, logs=None):
        if self.user_stopped:
            return  # a partial epoch is not an epoch; keep the last complete one
        logs = logs if logs is not None else {}
        if self.validate is not None:
            logs.update(self.validate())  # in place: the summaries callback after us sees them
        row = {
            "phase": self.phase, "epoch": self.epoch_offset + epoch + 1,
            "loss": _float(logs.get("loss")), "accuracy": _float(logs.get("accuracy")),
            "val_loss": _float(logs.get("val_loss")), "val_accuracy": _float(logs.get("val_accuracy")),
            "seconds": time.perf_counter() - self._epoch_start, "lr": self.lr,
        }
        self.rows.append(row)
        self._track_best(row)
        self._dirty_history = True
        if self.callbacks.on_epoch_end:
            self.callbacks.on_epoch_end({**row, "epochs": self.epoch_offset + self.epochs})
        self._maybe_write()

    def _track_best(self, row: dict) -> None:
        loss = row["val_loss"]
        if loss is not None and loss < self.best_loss:
            self.best_loss, self.best_epoch, self.wait = loss, row["epoch"], 0
            self.best_weights = self.model.get_weights()
            self._dirty_checkpoint = True
            return
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self.early_stopped = True
            self.model.stop_training = True

    def history(self) -> pd.DataFrame:
        new = pd.DataFrame(self.rows, columns=[*runs.HISTORY_COLUMNS, "lr"])
        if self.previous is None or self.previous.empty:
            return new
        return pd.concat([self.previous, new], ignore_index=True) if len(new) else self.previous.copy()

    def _maybe_heartbeat(self) -> None:
        now = time.perf_counter()
        if now - self._last_write >= runs.HEARTBEAT_SECONDS:
            self._last_write = now
            runs.write_status(self.run_dir, runs.RUNNING, phase=self.phase)

    def _maybe_write(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self._dirty_checkpoint and (force or now - self._last_checkpoint >= WRITE_INTERVAL_S):
            # The checkpoint is the best epoch so far: swap its weights in just to save them.
            current = self.model.get_weights()
            self.model.set_weights(self.best_weights)
            self.save_checkpoint()
            self.model.set_weights(current)
            self._dirty_checkpoint, self._last_checkpoint = False, now
        if self._dirty_history and (force or now - self._last_write >= WRITE_INTERVAL_S):
            runs.write_history(self.run_dir, self.history())
            runs.write_status(self.run_dir, runs.RUNNING, phase=self.phase,
                              epoch=self.rows[-1]["epoch"] if self.rows else None)
            self._dirty_history, self._last_write = False, now

    def finish(self) -> None:
        """Restores the best epoch's weights and flushes history and checkpoint to disk."""
        if self.best_weights is not None:
            self._maybe_write(force=True)
            self.model.set_weights(self.best_weights)
        elif self._dirty_history:
            self._maybe_write(force=True)

    def summary(self) -> dict:
        """Per-phase facts for `metrics.json`."""
        best = next((r for r in self.rows if r["epoch"] == self.best_epoch), None)
        if best is None and self.baseline is not None:
            best = self.baseline  # no epoch beat the starting point, whose weights were kept
        return {
            "epochs": len(self.rows),
            "best_epoch": self.best_epoch,
            "improved": best is not None and best is not self.baseline,
            "val_loss": best["val_loss"] if best else None,
            "val_accuracy": best["val_accuracy"] if best else None,
            "seconds": float(sum(r["seconds"] for r in self.rows)),
            "early_stopped": self.early_stopped,
            "stopped": self.user_stopped,
        }


def _float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
        # The PhaseMonitor runs first and adds validation metrics to the logs on the fast path.
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


def _run_fit(model: keras.Model, dataset: tf.data.Dataset, *, epochs: int, steps: int,
             validation_data, monitor: PhaseMonitor, run_dir: Path, phase: str,
             before_validation: Sequence[keras.callbacks.Callback] = ()) -> None:
    """`model.fit` with the monitor and TensorBoard; a stop request ends it quietly.

    `before_validation` callbacks come after the monitor, so its stop check runs before their
    `on_test_begin`.
    """
    if epochs == 0:
        return
    summaries = EpochSummaries(Path(run_dir) / runs.TB_DIR / phase, monitor.epoch_offset)
    try:
        model.fit(dataset, epochs=epochs, steps_per_epoch=steps, validation_data=validation_data,
                  callbacks=[monitor, *before_validation, summaries], shuffle=False, verbose=0)
    except _StopRequested:
        pass
    finally:
        summaries.close()
    monitor.finish()


# ----- run bookkeeping ---------------------------------------------------------------------------


@dataclass
class _Context:
    """What the phases of one run share."""

    config: TrainConfig
    backbone_name: str
    pretrained: bool
    image_size: int
    class_names: list[str]
    split: Split
    run_dir: Path
    callbacks: TrainCallbacks
    stop_event: threading.Event | None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def stopped(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()


def _load_inputs(config: TrainConfig, backbone: Backbone | None, dataset: DatasetIndex | None,
                 callbacks: TrainCallbacks) -> tuple[Backbone, DatasetIndex, Split]:
    if backbone is None:
        callbacks.message(f"Loading {config.backbone}…")
        backbone = load_backbone(config.backbone)
    elif backbone.spec.name != config.backbone:
        raise TransferLabError(
            f"Received backbone {backbone.spec.name} but `config.backbone={config.backbone}`."
        )
    if dataset is None:
        callbacks.message(f"Loading {config.data}…")
        dataset = load_dataset(config.data)
    split = split_dataset(dataset, val_fraction=config.val_split, test_fraction=config.test_split,
                          seed=config.seed)
    if not split.val:
        raise TransferLabError(f"{dataset.name} left no validation images; raise `val_split`.")
    return backbone, dataset, split


def _start_run(config: TrainConfig, dataset: DatasetIndex, split: Split, run_dir: Path | None,
               *, kind: str, pretrained: bool, image_size: int) -> Path:
    run_dir = runs.prepare_run_dir(run_dir) if run_dir is not None else runs.new_run_dir(config)
    runs.write_config(run_dir, {
        **config.to_dict(), "kind": kind, "pretrained": pretrained, "image_size": image_size,
        "data_name": dataset.name, "data_fingerprint": dataset.fingerprint(),
        "class_names": list(dataset.class_names), "split_counts": split.counts(dataset.class_names),
    })
    runs.write_labels(run_dir, dataset.class_names)
    runs.write_status(run_dir, runs.RUNNING, phase=kind, started=runs._now())
    return run_dir


def _finish_run(ctx: _Context, model: keras.Model, history: pd.DataFrame, metrics: dict,
                stopped: bool) -> None:
    runs.write_history(ctx.run_dir, history)
    if not history.empty:
        runs.save_model_atomic(model, ctx.run_dir / runs.MODEL_FILE)
    runs.write_metrics(ctx.run_dir, metrics)
    runs.write_status(ctx.run_dir, runs.STOPPED if stopped else runs.DONE, phase=None)


def _fail_run(run_dir: Path | None, error: BaseException) -> None:
    if run_dir is not None and Path(run_dir).is_dir():
        # Ctrl-C in the CLI is an interruption, not a failure of the run's settings.
        status = runs.INTERRUPTED if isinstance(error, KeyboardInterrupt) else runs.FAILED
        runs.write_status(run_dir, status, error=f"{type(error).__name__}: {error}")


def _extract_progress(ctx: _Context) -> Callable[[int, int], None]:
    """The caller's `on_extract`, plus a heartbeat so a long extraction never looks dead."""
    last = [time.perf_counter()]

    def on_extract(done: int, total: int) -> None:
        if ctx.callbacks.on_extract:
            ctx.callbacks.on_extract(done, total)
        if time.perf_counter() - last[0] >= runs.HEARTBEAT_SECONDS:
            last[0] = time.perf_counter()
            runs.write_status(ctx.run_dir, runs.RUNNING, extracted=done, to_extract=total)

    return on_extract


def _evaluation_records(split: Split) -> tuple[str, tuple[ImageRecord, ...]]:
    return ("test", split.test) if split.test else ("val", split.val)


def _evaluate(ctx: _Context, predict: Callable[[Sequence[ImageRecord]], np.ndarray]) -> dict:
    name, records = _evaluation_records(ctx.split)
    report = summarize_predictions(predict(records), records, ctx.class_names)
    return {"split": name, **report}


def _predict_pixels(model: keras.Model, ctx: _Context) -> Callable[[Sequence[ImageRecord]], np.ndarray]:
    def predict(records: Sequence[ImageRecord]) -> np.ndarray:
        dataset = make_dataset(records, ctx.num_classes, ctx.image_size, EVAL_BATCH, cache=False)
        return np.concatenate([np.asarray(model(x, training=False)) for x, _ in dataset])
    return predict


def _metrics(ctx: _Context, model: keras.Model, phases: dict, evaluation: dict | None,
             extra: dict | None = None) -> dict:
    last = next(reversed([p for p in phases.values() if p.get("val_accuracy") is not None]), {})
    return {
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "params": count_params(model),
        "phases": phases,
        "evaluation": evaluation,
        "pretrained": ctx.pretrained,
        **(extra or {}),
    }


# ----- phase 1: frozen ---------------------------------------------------------------------------


def _monitor(ctx: _Context, *, phase: str, epochs: int, batches: int, history: pd.DataFrame | None,
             save_checkpoint: Callable[[], None], lr: float,
             validate: Callable[[], dict] | None = None, baseline: dict | None = None) -> PhaseMonitor:
    return PhaseMonitor(
        phase=phase, epoch_offset=0 if history is None else len(history), epochs=epochs,
        batches=steps_per_epoch(len(ctx.split.train), ctx.config.batch_size),
        patience=ctx.config.early_stopping_patience, callbacks=ctx.callbacks,
        stop_event=ctx.stop_event, run_dir=ctx.run_dir, history=history,
        save_checkpoint=save_checkpoint, validate=validate, lr=lr, baseline=baseline,
    )


def _head_checkpoint(ctx: _Context, head: keras.Model) -> Callable[[], None]:
    path = ctx.run_dir / runs.CHECKPOINT_DIR / runs.HEAD_CHECKPOINT
    return lambda: atomic_save_weights(head, path)


def _feature_validator(head: keras.Model, features: np.ndarray, labels: np.ndarray,
                       label_smoothing: float) -> Callable[[], dict]:
    """Validation on cached features in a few compiled calls (Keras' evaluate costs ~40 ms/epoch)."""
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction="sum")
    chunks = [(tf.constant(features[i : i + VAL_CHUNK]), tf.constant(labels[i : i + VAL_CHUNK]))
              for i in range(0, len(features), VAL_CHUNK)]

    @tf.function(reduce_retracing=True, autograph=False)  # nothing to convert
    def evaluate(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        probs = head(x, training=False)
        correct = tf.equal(tf.argmax(probs, axis=1), tf.argmax(y, axis=1))
        return loss_fn(y, probs), tf.reduce_sum(tf.cast(correct, tf.float32))

    def validate() -> dict:
        sums = np.sum([[float(v) for v in evaluate(x, y)] for x, y in chunks], axis=0)
        return {"val_loss": sums[0] / len(features), "val_accuracy": sums[1] / len(features)}

    return validate


def _predict_arrays(model: keras.Model, arrays: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(model(arrays[i : i + VAL_CHUNK], training=False))
                           for i in range(0, len(arrays), VAL_CHUNK)])


def _fit_frozen_on_features(ctx: _Context, body: keras.Model, head: keras.Model,
                            backbone: Backbone) -> tuple[PhaseMonitor | None, dict, dict | None]:
    """The fast path: extract (or load) features once, train a head on them.

    Returns:
        `(monitor or None if stopped while extracting, feature-cache facts, evaluation)`.
    """
    config, split = ctx.config, ctx.split
    everything = [*split.train, *split.val, *split.test]
    ctx.callbacks.message("Computing features with the frozen body (once)…")
    cut = config.cut or backbone.spec.feature_layer
    try:
        cached = cached_features(body, everything, model_id=_model_id(backbone), cut=cut,
                                 image_size=ctx.image_size, name=f"{backbone.spec.name}-{cut}",
                                 on_extract=_extract_progress(ctx), stop_event=ctx.stop_event)
    except ExtractionStopped:
        return None, {"used": True, "hit": False}, None
    n_train, n_val = len(split.train), len(split.val)
    f_train = cached.features[:n_train]
    f_val = cached.features[n_train : n_train + n_val]
    f_test = cached.features[n_train + n_val :]
    y_train, y_val = one_hot(split.train, ctx.num_classes), one_hot(split.val, ctx.num_classes)

    # Pooling has no weights, so a head on pooled features is the same head minus its pool
    # layer: built from the same seed it starts (and, fed the same batches, ends) identical.
    vector_head = build_head(f_train.shape[1:], ctx.num_classes, config.head, seed=config.seed)
    steps = steps_per_epoch(n_train, config.batch_size)
    compile_model(vector_head, config, config.learning_rate,
                  steps_per_execution=_divisor_at_most(steps, FAST_STEPS_PER_EXECUTION))
    orders = epoch_orders(n_train, config.epochs, config.seed)
    dataset = feature_dataset(f_train, y_train, orders, config.batch_size)

    def save_checkpoint() -> None:
        head.set_weights(vector_head.get_weights())
        _head_checkpoint(ctx, head)()

    monitor = _monitor(ctx, phase=FROZEN, epochs=config.epochs, batches=steps, history=None,
                       save_checkpoint=save_checkpoint, lr=config.learning_rate,
                       validate=_feature_validator(vector_head, f_val, y_val, config.label_smoothing))
    ctx.callbacks.message("Training the head on cached features…")
    _run_fit(vector_head, dataset, epochs=config.epochs, steps=steps, validation_data=None,
             monitor=monitor, run_dir=ctx.run_dir, phase=FROZEN)
    head.set_weights(vector_head.get_weights())

    def predict(records: Sequence[ImageRecord]) -> np.ndarray:
        return _predict_arrays(vector_head, f_test if records is split.test else f_val)

    evaluation = _evaluate(ctx, predict) if monitor.rows else None
    facts = {"used": True, "hit": cached.hit, "seconds": cached.seconds, "path": str(cached.path)}
    return monitor, facts, evaluation


def _fit_on_pixels(ctx: _Context, model: keras.Model, *, phase: str, epochs: int, lr: float,
                   history: pd.DataFrame | None, save_checkpoint: Callable[[], None],
                   baseline: dict | None = None, recalibrate: keras.Model | None = None) -> PhaseMonitor:
    """The plain path: `model.fit` on decoded pixels, in the shared seeded epoch order.

    `recalibrate`: a body whose BatchNorm trains; its moving statistics are recomputed over the
    training images before each validation (`BatchNormRecalibration`). Defaults to None.
    """
    config, split = ctx.config, ctx.split
    augmentation = (build_augmentation(config.augment, seed=config.seed)
                    if config.augment is not None and config.augment.enabled else None)
    orders = epoch_orders(len(split.train), epochs, config.seed)
    dataset = pixel_dataset(split.train, ctx.num_classes, ctx.image_size, config.batch_size,
                            orders, augmentation)
    val = make_dataset(split.val, ctx.num_classes, ctx.image_size, EVAL_BATCH, cache=True)
    compile_model(model, config, lr)
    steps = steps_per_epoch(len(split.train), config.batch_size)
    monitor = _monitor(ctx, phase=phase, epochs=epochs, batches=steps, history=history,
                       save_checkpoint=save_checkpoint, lr=lr, baseline=baseline)
    extra = []
    if recalibrate is not None:
        # Unaugmented, like the validation images the statistics are then used on; in a seeded
        # mixed order like training's batches, since the records come grouped by class and a
        # one-class batch would normalise the class signal away in the layers above.
        order = np.random.default_rng(config.seed).permutation(len(split.train))
        images = make_dataset([split.train[i] for i in order], ctx.num_classes, ctx.image_size,
                              config.batch_size, cache=True)
        extra.append(BatchNormRecalibration(recalibrate, images, ctx.stop_event))
    _run_fit(model, dataset, epochs=epochs, steps=steps, validation_data=val, monitor=monitor,
             run_dir=ctx.run_dir, phase=phase, before_validation=extra)
    return monitor


def train(
    config: TrainConfig,
    *,
    backbone: Backbone | None = None,
    dataset: DatasetIndex | None = None,
    run_dir: Path | str | None = None,
    callbacks: TrainCallbacks | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Trains a head on a frozen backbone (phase 1), then fine-tunes if `config.fine_tune_epochs`.

    Args:
        config: the settings; validated first.
        backbone: the loaded backbone, if the caller has it cached. Defaults to None (load it).
        dataset: the loaded dataset, if the caller has it. Defaults to None (load `config.data`).
        run_dir: where to write the run; must be new or empty. Defaults to None: a new folder
            under `lib.paths.runs_dir()`.
        callbacks: progress reporting. Defaults to None.
        stop_event: set it to stop within one batch; the best epoch so far is kept and the run is
            marked "stopped". Defaults to None.

    Returns:
        The `TrainResult` (also written to the run folder).

    Raises:
        TransferLabError: bad settings, data, backbone or run folder.
    """
    config = config.validate()
    callbacks = callbacks or TrainCallbacks()
    backbone, dataset, split = _load_inputs(config, backbone, dataset, callbacks)
    body = build_body(backbone, config.cut)
    image_size = backbone.spec.input_size
    run_path = _start_run(config, dataset, split, run_dir, kind="transfer",
                          pretrained=backbone.pretrained, image_size=image_size)
    ctx = _Context(config, backbone.spec.name, backbone.pretrained, image_size,
                   list(dataset.class_names), split, run_path, callbacks, stop_event)
    try:
        result = _train_frozen(ctx, body, backbone)
    except BaseException as e:
        _fail_run(run_path, e)
        raise
    if config.fine_tune_epochs > 0 and not result.stopped:
        result = fine_tune(result, epochs=config.fine_tune_epochs, unfreeze=config.unfreeze,
                           unfreeze_from=config.unfreeze_from, lr_factor=config.fine_tune_lr_factor,
                           callbacks=callbacks, stop_event=stop_event)
    return result


def _train_frozen(ctx: _Context, body: keras.Model, backbone: Backbone) -> TrainResult:
    config = ctx.config
    head = build_head(tuple(body.outputs[0].shape[1:]), ctx.num_classes, config.head, seed=config.seed)
    model = build_classifier(body, head, ctx.image_size)
    reason = feature_cache_reason(config)
    if reason is None:
        monitor, cache_facts, evaluation = _fit_frozen_on_features(ctx, body, head, backbone)
    else:
        ctx.callbacks.message("Training the head (the frozen body runs on every batch)…")
        monitor = _fit_on_pixels(ctx, model, phase=FROZEN, epochs=config.epochs,
                                 lr=config.learning_rate, history=None,
                                 save_checkpoint=_head_checkpoint(ctx, head))
        cache_facts = {"used": False, "reason": reason}
        evaluation = _evaluate(ctx, _predict_pixels(model, ctx)) if monitor.rows else None
    history = monitor.history() if monitor else pd.DataFrame(columns=[*runs.HISTORY_COLUMNS, "lr"])
    stopped = ctx.stopped()
    phases = {FROZEN: monitor.summary()} if monitor else {FROZEN: {"epochs": 0, "stopped": True}}
    metrics = _metrics(ctx, model, phases, evaluation, {"feature_cache": cache_facts})
    final = stopped or config.fine_tune_epochs == 0
    if final:
        _finish_run(ctx, model, history, metrics, stopped)
    else:
        # Fine-tuning follows: keep the frozen model on disk in case it is interrupted.
        runs.write_history(ctx.run_dir, history)
        runs.save_model_atomic(model, ctx.run_dir / runs.MODEL_FILE)
        runs.write_metrics(ctx.run_dir, metrics)
    return TrainResult(
        run_dir=ctx.run_dir, model=model, class_names=ctx.class_names, history=history,
        metrics=metrics, stopped=stopped, used_feature_cache=reason is None,
        feature_cache_reason=reason or "", config=config, split=ctx.split,
        pretrained=ctx.pretrained,
    )


# ----- phase 2: fine-tune ------------------------------------------------------------------------


def _copy_head(head: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(head)
    copy.set_weights(head.get_weights())
    return copy


def _frozen_boundary(body: keras.Model, cut_points: Sequence[str], unfrozen: Sequence[str]) -> str | None:
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


def _extract_activations(ctx: _Context, bottom: keras.Model,
                         records: Sequence[ImageRecord]) -> np.ndarray:
    """Runs the frozen bottom of the body over images once (in memory; stop-aware)."""
    from lib.features import extract_features

    # extract_features pools feature maps; this wants the maps, so pass a vector-shaped wrapper.
    flat = keras.Model(bottom.input, keras.layers.Flatten()(bottom.output))
    shape = tuple(int(d) for d in bottom.output.shape[1:])
    flat_acts = extract_features(flat, records, ctx.image_size, on_extract=_extract_progress(ctx),
                                 stop_event=ctx.stop_event)
    return flat_acts.reshape((len(records), *shape))


def _fine_tune_on_activations(ctx: _Context, model: keras.Model, body: keras.Model, boundary: str,
                              *, epochs: int, lr: float, history: pd.DataFrame,
                              save_checkpoint: Callable[[], None],
                              baseline: dict | None = None) -> tuple[PhaseMonitor | None, dict | None]:
    """Fine-tunes the top of the body (and the head) on cached activations at `boundary`.

    The same updates as fine-tuning on pixels (same batches in the same order, BatchNorm in
    inference mode), without running the frozen bottom of the network every epoch.

    Returns:
        `(monitor, evaluation)`, both None when stopped while computing the activations.
    """
    config, split = ctx.config, ctx.split
    boundary_output = body.get_layer(boundary).output
    bottom = keras.Model(body.input, boundary_output)
    ctx.callbacks.message(f"Computing the frozen layers' output at {boundary} (once)…")
    try:
        acts = _extract_activations(ctx, bottom, [*split.train, *split.val, *split.test])
    except ExtractionStopped:
        return None, None
    n_train, n_val = len(split.train), len(split.val)
    a_train, a_val, a_test = acts[:n_train], acts[n_train : n_train + n_val], acts[n_train + n_val :]
    y_train, y_val = one_hot(split.train, ctx.num_classes), one_hot(split.val, ctx.num_classes)
    top = keras.Model(boundary_output, body.output, name="body_top")
    inputs = keras.Input(a_train.shape[1:], name="activations")
    top_model = keras.Model(inputs, get_head(model)(top(inputs, training=False)), name="top_classifier")
    steps = steps_per_epoch(n_train, config.batch_size)
    compile_model(top_model, config, lr, steps_per_execution=_divisor_at_most(steps, FAST_STEPS_PER_EXECUTION))
    orders = epoch_orders(n_train, epochs, config.seed)
    monitor = _monitor(ctx, phase=FINE_TUNE, epochs=epochs, batches=steps, history=history,
                       save_checkpoint=save_checkpoint, lr=lr, baseline=baseline,
                       validate=_feature_validator(top_model, a_val, y_val, config.label_smoothing))
    ctx.callbacks.message("Fine-tuning on the cached activations…")
    _run_fit(top_model, feature_dataset(a_train, y_train, orders, config.batch_size), epochs=epochs,
             steps=steps, validation_data=None, monitor=monitor, run_dir=ctx.run_dir, phase=FINE_TUNE)

    def predict(records: Sequence[ImageRecord]) -> np.ndarray:
        return _predict_arrays(top_model, a_test if records is split.test else a_val)

    return monitor, (_evaluate(ctx, predict) if monitor.rows else None)


def _starting_point(metrics: dict) -> dict | None:
    """The best epoch of the last phase, which fine-tuning has to beat on validation loss.

    Early stopping restores the best epoch; starting from this baseline means an epoch that never
    beats the frozen model's validation loss keeps the frozen weights instead of a worse state.
    """
    phases = [p for p in (metrics or {}).get("phases", {}).values() if p.get("val_loss") is not None]
    if not phases:
        return None
    last = phases[-1]
    return {"epoch": last.get("best_epoch"), "val_loss": last["val_loss"],
            "val_accuracy": last.get("val_accuracy")}


def fine_tune(
    result: TrainResult,
    *,
    epochs: int,
    unfreeze: int | None = 20,
    unfreeze_from: str | None = None,
    lr_factor: float = 0.1,
    callbacks: TrainCallbacks | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Phase 2: unfreeze the top of a private copy of the body and train on at a lower rate.

    The shared backbone is never touched; every BatchNormalization layer stays frozen and in
    inference mode. The history continues with `phase="fine_tune"` in the same run folder.
    Without augmentation (and with the feature cache on) the frozen layers below the unfrozen ones
    run once and the epochs train on their stored output: the same updates, much cheaper.
    Early stopping starts from the frozen phase's best validation loss: if no fine-tuning epoch
    beats it, the frozen weights are kept (`metrics["phases"]["fine_tune"]["improved"]` is False).

    Args:
        result: a finished frozen phase (from `train`).
        epochs: fine-tuning epochs, at least 1.
        unfreeze: top layers of the body to unfreeze. Defaults to 20.
        unfreeze_from: unfreeze from this layer up instead. Defaults to None.
        lr_factor: rate = the frozen phase's learning rate x this. Defaults to 0.1.
        callbacks: progress reporting. Defaults to None.
        stop_event: set it to stop within one batch. Defaults to None.

    Returns:
        A new `TrainResult` with the fine-tuned model and the combined history.

    Raises:
        TransferLabError: bad settings, or a result without its split.
    """
    _check(_is_int(epochs) and 1 <= epochs <= MAX_EPOCHS,
           f"Received `epochs={epochs}`; fine-tune for 1 to {MAX_EPOCHS} epochs.")
    _check(_is_number(lr_factor) and 0 < lr_factor <= 10,
           f"Received `lr_factor={lr_factor}`; use a factor in (0, 10].")
    if result.split is None:
        raise TransferLabError("This result has no data split; fine-tune a result from `train`.")
    config = replace(result.config, fine_tune_epochs=epochs, unfreeze=unfreeze or result.config.unfreeze,
                     unfreeze_from=unfreeze_from, fine_tune_lr_factor=lr_factor)
    callbacks = callbacks or TrainCallbacks()
    ctx = _Context(config, config.backbone, result.pretrained, int(result.model.inputs[0].shape[1]),
                   list(result.class_names), result.split, Path(result.run_dir), callbacks, stop_event)
    body = copy_body(get_body(result.model))
    unfrozen = (unfreeze_top(body, from_layer=unfreeze_from) if unfreeze_from
                else unfreeze_top(body, n_layers=unfreeze))
    model = build_classifier(body, _copy_head(get_head(result.model)), ctx.image_size)
    lr = config.learning_rate * lr_factor
    runs.write_config(ctx.run_dir, {**(runs.read_json(ctx.run_dir / runs.CONFIG_FILE) or {}),
                                     **config.to_dict(), "unfrozen_layers": unfrozen})
    runs.write_status(ctx.run_dir, runs.RUNNING, phase=FINE_TUNE)
    checkpoint = ctx.run_dir / runs.CHECKPOINT_DIR / runs.MODEL_CHECKPOINT
    callbacks.message(f"Fine-tuning {len(unfrozen)} layers at learning rate {lr:g}…")
    save_checkpoint = lambda: runs.save_model_atomic(model, checkpoint)  # noqa: E731
    baseline = _starting_point(result.metrics)
    boundary = (_frozen_boundary(body, get_spec(config.backbone).cut_points, unfrozen)
                if feature_cache_reason(config, FINE_TUNE) is None else None)
    try:
        if boundary is not None:
            monitor, evaluation = _fine_tune_on_activations(
                ctx, model, body, boundary, epochs=epochs, lr=lr, history=result.history,
                save_checkpoint=save_checkpoint, baseline=baseline)
        else:
            monitor = _fit_on_pixels(ctx, model, phase=FINE_TUNE, epochs=epochs, lr=lr,
                                     history=result.history, save_checkpoint=save_checkpoint,
                                     baseline=baseline)
            evaluation = _evaluate(ctx, _predict_pixels(model, ctx)) if monitor.rows else None
    except BaseException as e:
        _fail_run(ctx.run_dir, e)
        raise
    if monitor is None or not monitor.rows:
        # Stopped before one fine-tuning epoch finished: keep the frozen model as the result.
        runs.write_status(ctx.run_dir, runs.STOPPED, phase=None)
        return replace(result, stopped=True, config=config)
    history = monitor.history()
    phases = {**result.metrics.get("phases", {}), FINE_TUNE: {
        **monitor.summary(), "unfrozen_layers": len(unfrozen), "activation_cache_at": boundary}}
    extra = {k: v for k, v in result.metrics.items()
             if k not in ("val_accuracy", "val_loss", "params", "phases", "evaluation", "pretrained")}
    extra["before_fine_tune"] = {"val_accuracy": result.metrics.get("val_accuracy"),
                                 "evaluation": result.metrics.get("evaluation")}
    metrics = _metrics(ctx, model, phases, evaluation, extra)
    stopped = ctx.stopped()
    _finish_run(ctx, model, history, metrics, stopped)
    return replace(result, model=model, history=history, metrics=metrics, stopped=stopped,
                   config=config)


# ----- the from-scratch baseline -----------------------------------------------------------------


def train_from_scratch(
    config: TrainConfig,
    *,
    dataset: DatasetIndex | None = None,
    run_dir: Path | str | None = None,
    callbacks: TrainCallbacks | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """The baseline: the same architecture from random weights, every layer trainable.

    Same split, augmentation, optimizer, learning rate, batch size and budget (frozen +
    fine-tuning epochs) as `train` with the same config, so the curves compare fairly. BatchNorm
    trains here (there are no pretrained statistics to keep). Before each validation its
    statistics are recomputed over the training images at the current weights
    (`recalibrate_batchnorm`): moving averages trail random-init weights that change fast, and
    Lite0 on builtin:faces then predicted one class for every image, 0.5 val accuracy throughout.

    Args:
        config: the settings a transfer run used.
        dataset: the loaded dataset. Defaults to None (load `config.data`).
        run_dir: where to write the run. Defaults to None: a new folder.
        callbacks: progress reporting. Defaults to None.
        stop_event: set it to stop within one batch. Defaults to None.

    Returns:
        A `TrainResult` with `phase="scratch"` history rows.
    """
    config = config.validate()
    callbacks = callbacks or TrainCallbacks()
    spec = get_spec(config.backbone)
    if dataset is None:
        callbacks.message(f"Loading {config.data}…")
        dataset = load_dataset(config.data)
    split = split_dataset(dataset, val_fraction=config.val_split, test_fraction=config.test_split,
                          seed=config.seed)
    # The builder's own initializers are unseeded; seed them so the baseline is reproducible.
    keras.utils.set_random_seed(config.seed)
    network = spec.builder(False)
    cut = config.cut or spec.feature_layer
    if cut not in spec.cut_points:
        raise TransferLabError(f"Received `cut={cut}`; {spec.name} can be cut at: "
                               f"{', '.join(spec.cut_points)}.")
    body = keras.Model(network.input, network.get_layer(cut).output, name="body")
    body.trainable = True
    for layer in body.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # The default 0.99 needs hundreds of steps before the moving statistics that
            # inference uses match the data; a small-data budget has tens, and validation would
            # then measure BatchNorm's lag rather than what the network learned.
            layer.momentum = SCRATCH_BN_MOMENTUM
    head = build_head(tuple(body.outputs[0].shape[1:]), dataset.num_classes, config.head,
                      seed=config.seed)
    model = build_classifier(body, head, spec.input_size, body_inference=False)
    run_path = _start_run(config, dataset, split, run_dir, kind=SCRATCH, pretrained=False,
                          image_size=spec.input_size)
    ctx = _Context(config, spec.name, False, spec.input_size, list(dataset.class_names), split,
                   run_path, callbacks, stop_event)
    budget = config.epochs + config.fine_tune_epochs
    checkpoint = run_path / runs.CHECKPOINT_DIR / runs.MODEL_CHECKPOINT
    callbacks.message("Training from scratch (random weights, every layer trainable)…")
    try:
        monitor = _fit_on_pixels(ctx, model, phase=SCRATCH, epochs=budget,
                                 lr=config.learning_rate, history=None,
                                 save_checkpoint=lambda: runs.save_model_atomic(model, checkpoint),
                                 recalibrate=body)
        evaluation = _evaluate(ctx, _predict_pixels(model, ctx)) if monitor.rows else None
    except BaseException as e:
        _fail_run(run_path, e)
        raise
    history = monitor.history()
    stopped = ctx.stopped()
    metrics = _metrics(ctx, model, {SCRATCH: monitor.summary()}, evaluation)
    _finish_run(ctx, model, history, metrics, stopped)
    return TrainResult(
        run_dir=run_path, model=model, class_names=ctx.class_names, history=history,
        metrics=metrics, stopped=stopped, used_feature_cache=False,
        feature_cache_reason=feature_cache_reason(config, SCRATCH) or "", config=config,
        split=split, pretrained=False,
    )
