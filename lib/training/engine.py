"""What the phases share: the run context, compiling, one phase's `fit`, evaluation and metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from lib.data.sources import ImageRecord
from lib.data.split import Split
from lib.engine import TF, ForwardResult, resolve_engine
from lib.errors import TransferLabError
from lib.evaluate import predict_records_run, summarize_predictions
from lib.models import count_params
from lib.progress import ProgressFn
from lib.runs.recorder import RunRecorder
from lib.training.callbacks import (
    BestWeights,
    EpochLog,
    EpochSummaries,
    ProgressReporter,
    StopOnEvent,
    TrainCallbacks,
    TrainingStopped,
)
from lib.training.config import OPTIMIZERS, SELECTED_BY, TrainConfig
from lib.training.distribute import even_batches

SGD_MOMENTUM = 0.9
EVAL_BATCH = 64
# Warm-up starts at this fraction of the peak rate (fastai's one-cycle starts at 1/25).
WARMUP_START = 0.04
# Cosine decay ends at this fraction of the peak rate.
COSINE_FLOOR = 0.01
OPTIMIZER_CLASSES = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                     "rmsprop": keras.optimizers.RMSprop}


@dataclass
class TrainResult:
    """What a training call produced.

    Attributes:
        run_dir: the run folder.
        model: the classifier (body + head + softmax) in memory, for fine-tuning and prediction.
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


@dataclass
class Context:
    """What the phases of one run share."""

    config: TrainConfig
    pretrained: bool
    image_size: int
    class_names: list[str]
    split: Split
    recorder: RunRecorder
    callbacks: TrainCallbacks
    stop_event: threading.Event | None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def run_dir(self) -> Path:
        return self.recorder.run_dir

    def stopped(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def extract_progress(self) -> ProgressFn:
        """Reports extraction to the caller's `on_extract` and to the run's status."""
        def on_progress(done: int, total: int, message: str = "") -> None:
            if self.callbacks.on_extract:
                self.callbacks.on_extract(done, total)
            self.recorder.note(extracted=done, to_extract=total)
        return on_progress


def make_optimizer(name: str, learning_rate, *, faster: Sequence = (),
                   faster_factor: float = 1.0) -> keras.optimizers.Optimizer:
    """Returns a fresh optimizer by name ("adam", "sgd" with momentum 0.9, "rmsprop").

    Args:
        name: the optimizer.
        learning_rate: a rate, or a `keras.optimizers.schedules.LearningRateSchedule`.
        faster: variables that train at `faster_factor` x the rate (the head while the body
            fine-tunes, as fastai's discriminative rates). Defaults to ().
        faster_factor: their factor. Defaults to 1.0.
    """
    if name not in OPTIMIZER_CLASSES:
        raise TransferLabError(f"Received `optimizer={name!r}`; use one of {', '.join(OPTIMIZERS)}.")
    kwargs = {"momentum": SGD_MOMENTUM} if name == "sgd" else {}
    if not faster or faster_factor == 1.0:
        return OPTIMIZER_CLASSES[name](learning_rate, **kwargs)
    return _two_rate_class(OPTIMIZER_CLASSES[name])(learning_rate, faster=faster,
                                                    faster_factor=faster_factor, **kwargs)


def _two_rate_class(base: type) -> type:
    """`base` with a per-variable rate factor: Keras 3 has no per-variable rates or MultiOptimizer."""

    class TwoRates(base):
        def __init__(self, learning_rate, *, faster, faster_factor: float, **kwargs):
            super().__init__(learning_rate, **kwargs)
            self._faster = {id(v) for v in faster}
            self._faster_factor = float(faster_factor)
            self._factors: list[float] = []

        def build(self, variables):
            super().build(variables)
            self._factors = [self._faster_factor if id(v) in self._faster else 1.0 for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            # Keras' own optimizers index their slots the same way.
            factor = self._factors[self._get_variable_index(variable)]
            return super().update_step(gradient, variable, learning_rate * factor)

    TwoRates.__name__ = f"TwoRate{base.__name__}"
    return TwoRates


def build_lr_schedule(peak: float, total_steps: int,
                      warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to `peak`, then cosine decay to `COSINE_FLOOR` x `peak` by `total_steps`.

    Args:
        peak: the highest rate, reached after `warmup_steps`.
        total_steps: optimizer steps in the whole phase.
        warmup_steps: steps of linear warm-up from `WARMUP_START` x `peak`; 0 starts at the peak.

    Returns:
        A Keras schedule (the step is the optimizer's iteration count).
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise TransferLabError(
            f"Received `total_steps={total_steps}`, `warmup_steps={warmup_steps}`; use total_steps "
            ">= 1 and 0 <= warmup_steps <= total_steps.")
    decay = max(total_steps - warmup_steps, 1)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay, alpha=COSINE_FLOOR)
    return keras.optimizers.schedules.CosineDecay(peak * WARMUP_START, decay, alpha=COSINE_FLOOR,
                                                  warmup_target=peak, warmup_steps=warmup_steps)


def compile_model(model: keras.Model, config: TrainConfig, learning_rate: float,
                  steps_per_execution: int = 1, *, from_logits: bool = True,
                  optimizer: keras.optimizers.Optimizer | None = None) -> None:
    """Compiles with the config's optimizer, label-smoothed cross-entropy and accuracy.

    Args:
        model: what `fit` trains: a head or a logits model (`lib.models.build_logits_model`).
        config: the optimizer and label smoothing.
        learning_rate: the rate.
        steps_per_execution: batches per compiled call (1 under a distribution strategy).
            Defaults to 1.
        from_logits: the model outputs logits. Defaults to True; False only for a model that
            ends in a softmax (the loss then reads probabilities).
        optimizer: an optimizer to use instead of a new one at `learning_rate` (fine-tuning's
            two rates and schedule). Defaults to None.
    """
    if tf.distribute.has_strategy():
        # Keras 3.15's multi-step loop under MirroredStrategy feeds an unset placeholder
        # ("You must feed a value for placeholder tensor ... while/cond"): one step per call.
        steps_per_execution = 1
    model.compile(
        optimizer=optimizer or make_optimizer(config.optimizer, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                  label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )


@dataclass
class PhaseWatch:
    """The callbacks that watched one phase's `fit`, and what they saw."""

    log: EpochLog
    best: BestWeights
    stop: StopOnEvent

    @property
    def rows(self) -> list[dict]:
        return self.log.rows

    def history(self) -> pd.DataFrame:
        return self.log.history()

    def summary(self) -> dict:
        """Per-phase facts for `metrics.json`."""
        best = next((r for r in self.log.rows if r["epoch"] == self.best.best_epoch), None)
        if best is None and self.best.baseline is not None:
            best = self.best.baseline  # no epoch beat the starting point, whose weights were kept
        return {
            "epochs": len(self.log.rows),
            "best_epoch": self.best.best_epoch,
            "improved": best is not None and best is not self.best.baseline,
            "val_loss": best["val_loss"] if best else None,
            "val_accuracy": best["val_accuracy"] if best else None,
            "seconds": float(sum(r["seconds"] for r in self.log.rows)),
            "early_stopped": self.best.early_stopped,
            "stopped": self.stop.stopped,
            "selected_by": SELECTED_BY,
        }


def fit_phase(ctx: Context, model: keras.Model, dataset: tf.data.Dataset, *, phase: str,
              epochs: int, steps: int, lr: float | Callable[[], float],
              save_checkpoint: Callable[[], None],
              previous: pd.DataFrame | None = None, baseline: dict | None = None,
              validation_data: tf.data.Dataset | None = None,
              first: Sequence[keras.callbacks.Callback] = ()) -> PhaseWatch:
    """`model.fit` for one phase with its callbacks; a stop request ends it quietly.

    Args:
        ctx: the run.
        model: the compiled model to fit (it outputs logits).
        dataset: every epoch's batches, in order (`steps` per epoch).
        phase: "frozen", "fine_tune" or "scratch".
        epochs: epochs to run.
        steps: batches per epoch.
        lr: the learning rate (a history column), or a function reading a scheduled rate.
        save_checkpoint: writes the run's checkpoint from the model's current weights.
        previous: the history before this phase. Defaults to None.
        baseline: a starting point the phase must beat (see `BestWeights`). Defaults to None.
        validation_data: batches Keras validates on. Defaults to None.
        first: callbacks that run before the rest (validation on cached arrays, BatchNorm
            recalibration), so the others see their results. Defaults to ().

    Returns:
        The `PhaseWatch`; the model holds the best epoch's weights.
    """
    log = EpochLog(phase, lr, previous)
    watch = PhaseWatch(log, BestWeights(ctx.config.early_stopping_patience, log.epoch_offset, baseline),
                       StopOnEvent(ctx.stop_event))
    if epochs == 0:
        return watch
    ctx.recorder.note(phase=phase)
    callbacks = [
        *first, log, watch.best, ProgressReporter(ctx.callbacks, log, epochs=epochs, batches=steps),
        watch.stop,
        ctx.recorder.callback(history=log.history, best_weights=lambda: watch.best.best_weights,
                              save_checkpoint=save_checkpoint),
        EpochSummaries(ctx.recorder.tensorboard_dir(phase), log.epoch_offset),
    ]
    if tf.distribute.has_strategy():
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        dataset = even_batches(dataset, replicas)
        validation_data = None if validation_data is None else even_batches(validation_data, replicas)
    try:
        model.fit(dataset, epochs=epochs, steps_per_epoch=steps, validation_data=validation_data,
                  callbacks=callbacks, shuffle=False, verbose=0)
    except TrainingStopped:
        for callback in callbacks:  # Keras skips them when fit raises: restore, flush, close
            callback.on_train_end()
    return watch


def evaluation_records(split: Split) -> tuple[str, tuple[ImageRecord, ...]]:
    """The held-out images a run is scored on: the test split, or validation without one."""
    return ("test", split.test) if split.test else ("val", split.val)


def evaluate(ctx: Context, predict: Callable[[Sequence[ImageRecord]], np.ndarray | ForwardResult]
             ) -> dict:
    """Scores `predict(records)` on the evaluation split.

    Args:
        ctx: the run.
        predict: `fn(records) -> probabilities (N, C)`, or a `ForwardResult` holding them; its
            engine then goes into the report (`"engine"`, and `"engine_fallback"`: why LiteRT did
            not run when it was allowed to) and into the run's config (`eval_engine`).

    Returns:
        `{"split", **summarize_predictions(...)}`, plus the engine facts when known.
    """
    name, records = evaluation_records(ctx.split)
    out = predict(records)
    if not isinstance(out, ForwardResult):
        return {"split": name, **summarize_predictions(out, records, ctx.class_names)}
    facts = {"engine": out.engine, **({"engine_fallback": out.fallback_reason} if out.fallback_reason else {})}
    ctx.recorder.update_config({f"eval_{key}": value for key, value in facts.items()})
    return {"split": name, **summarize_predictions(out.features, records, ctx.class_names), **facts}


def trained_body_engine() -> str:
    """The engine that evaluates a body trained in this run (fine-tuned, or from scratch).

    The one `TRANSFERLAB_ENGINE` forces, else TensorFlow: new weights need a new LiteRT
    conversion (about 12 CPU-seconds for EfficientNet-Lite0), more than LiteRT saves on one
    evaluation split (about 13 CPU-ms per image; it pays from about 900 images on).
    """
    return resolve_engine() or TF


def pixel_predictor(model: keras.Model, ctx: Context, *, engine: str | None = None
                    ) -> Callable[[Sequence[ImageRecord]], ForwardResult]:
    """`predict(records) -> ForwardResult` of probabilities with the classifier on decoded pixels.

    The body runs on the inference engine (`lib.engine`: LiteRT, TensorFlow as the fallback), the
    head and softmax in Keras (`lib.evaluate.predict_records_run`).

    Args:
        model: the classifier: pixels in [0, 255] -> probabilities; only read.
        ctx: the run.
        engine: `"tf"`, `"litert"` or None (`TRANSFERLAB_ENGINE`, else LiteRT with the TensorFlow
            fallback). Defaults to None.
    """
    def predict(records: Sequence[ImageRecord]) -> ForwardResult:
        return predict_records_run(model, records, ctx.num_classes, EVAL_BATCH, engine=engine)
    return predict


def build_metrics(ctx: Context, model: keras.Model, phases: dict, evaluation: dict | None,
                  extra: dict | None = None) -> dict:
    """What `metrics.json` holds: the last phase's best validation scores, counts, phases, evaluation."""
    last = next(reversed([p for p in phases.values() if p.get("val_accuracy") is not None]), {})
    return {
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "params": count_params(model),
        "phases": phases,
        "evaluation": evaluation,
        "pretrained": ctx.pretrained,
        "selected_by": SELECTED_BY,
        **(extra or {}),
    }
