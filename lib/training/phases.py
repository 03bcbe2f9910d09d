"""The three ways to train, each a short recipe (Keras transfer-learning guide, fastai `fine_tune`).

1. **Frozen** (`train`): body frozen and called with `training=False`, a fresh seeded head trained
   with Adam/SGD/RMSprop, label smoothing, early stopping on `val_loss` that restores the best
   epoch, and a checkpoint of the best epoch.
2. **Fine-tune** (`fine_tune`, or `TrainConfig.fine_tune_epochs > 0`): a private copy of the body
   with its top blocks unfrozen (every BatchNorm stays frozen and in inference mode), augmented
   training images (K copies of their activations, computed once), separate rates for body and
   head with warm-up and cosine decay; the history continues with `phase="fine_tune"`.
3. **Scratch** (`train_from_scratch`): the same architecture from random weights, all trainable,
   on the same split and budget, to show what the pretrained weights bring.

Heads output logits and train with `from_logits=True`; the classifier adds the softmax. Progress
goes to the `TrainCallbacks` passed in; `stop_event` is honoured within one batch. A
`lib.runs.recorder.RunRecorder` writes the run folder. Nothing here prints.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from lib import runs
from lib.backbones.registry import Backbone, get_spec
from lib.data.augment import AugmentConfig, build_augmentation
from lib.data.pipeline import make_dataset
from lib.data.sources import DatasetIndex
from lib.data.split import Split
from lib.errors import TransferLabError
from lib.models import (
    build_body,
    build_classifier,
    build_head,
    build_logits_model,
    classifier_parts,
    copy_body,
    is_batchnorm,
    unfreeze_batchnorm,
    unfreeze_blocks,
    unfreeze_top,
)
from lib.runs.recorder import RunRecorder
from lib.training.callbacks import LOG_COLUMNS, BatchNormRecalibration, TrainCallbacks
from lib.training.config import (
    FINE_TUNE,
    FROZEN,
    SCRATCH,
    TrainConfig,
    check_fine_tune_settings,
    feature_cache_reason,
    fine_tune_augment,
)
from lib.training.distribute import ONE_DEVICE, StrategyChoice, choose_strategy, strategy_scope
from lib.training.engine import (
    EVAL_BATCH,
    Context,
    PhaseWatch,
    TrainResult,
    build_lr_schedule,
    build_metrics,
    compile_model,
    evaluate,
    fit_phase,
    make_optimizer,
    pixel_predictor,
    trained_body_engine,
)
from lib.training.fast_path import fine_tune_on_activations, frozen_boundary, train_head_on_features
from lib.training.inputs import epoch_orders, load_inputs, pixel_dataset, steps_per_epoch

SCRATCH_BN_MOMENTUM = 0.9


def train(config: TrainConfig, *, backbone: Backbone | None = None,
          dataset: DatasetIndex | None = None, run_dir: Path | str | None = None,
          callbacks: TrainCallbacks | None = None,
          stop_event: threading.Event | None = None) -> TrainResult:
    """Trains a head on a frozen backbone (phase 1), then fine-tunes if `config.fine_tune_epochs`.

    Args:
        config: the settings; validated first.
        backbone: the loaded backbone, if the caller has it cached. Defaults to None (load it).
        dataset: the loaded dataset, if the caller has it. Defaults to None (load `config.data`).
        run_dir: where to write the run; must be new or empty. Defaults to None: a new folder
            under `lib.storage.runs_dir()`.
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
    backbone, dataset, split = load_inputs(config, backbone, dataset, callbacks)
    # The shared backbone stays outside the scope: it is frozen here, and read, never updated.
    with strategy_scope(choose_strategy()) as choice:
        return _train(config, backbone, dataset, split, run_dir, callbacks, stop_event, choice)


def _train(config: TrainConfig, backbone: Backbone, dataset: DatasetIndex, split: Split,
           run_dir: Path | str | None, callbacks: TrainCallbacks, stop_event: threading.Event | None,
           choice: StrategyChoice) -> TrainResult:
    """`train` inside the strategy's scope: every model it builds, compiles and fits is distributed."""
    body = build_body(backbone, config.cut)
    recorder = _new_run(config, dataset, split, run_dir, kind="transfer", pretrained=backbone.pretrained,
                        image_size=backbone.spec.input_size, choice=choice)
    ctx = Context(config, backbone.pretrained, backbone.spec.input_size, list(dataset.class_names),
                  split, recorder, callbacks, stop_event)
    with recorder:
        result = _train_frozen(ctx, body, backbone)
        if result.stopped or config.fine_tune_epochs == 0:
            recorder.finish(stopped=result.stopped, model=result.model, history=result.history,
                            metrics=result.metrics)
            return result
        recorder.save(result.model, result.history, result.metrics)  # kept if fine-tuning dies
        model, unfrozen = unfrozen_copy(result.model, config)
        return _fine_tune(result, ctx, model, unfrozen)


def _train_frozen(ctx: Context, body: keras.Model, backbone: Backbone) -> TrainResult:
    config = ctx.config
    head = build_head(tuple(body.outputs[0].shape[1:]), ctx.num_classes, config.head, seed=config.seed)
    model = build_classifier(body, head, ctx.image_size)
    reason = feature_cache_reason(config)
    if reason is None:
        watch, cache_facts, evaluation = train_head_on_features(ctx, body, head, backbone)
        if cache_facts.get("engine"):
            ctx.recorder.update_config({"feature_engine": cache_facts["engine"]})
    else:
        ctx.callbacks.message("Training the head (the frozen body runs on every batch)…")
        watch = _fit_on_pixels(ctx, model, phase=FROZEN, epochs=config.epochs, lr=config.learning_rate,
                               save_checkpoint=lambda: ctx.recorder.save_head_checkpoint(head))
        cache_facts = {"used": False, "reason": reason}
        evaluation = evaluate(ctx, pixel_predictor(model, ctx)) if watch.rows else None
    history = watch.history() if watch else pd.DataFrame(columns=list(LOG_COLUMNS))
    phases = {FROZEN: watch.summary() if watch else {"epochs": 0, "stopped": True}}
    metrics = build_metrics(ctx, model, phases, evaluation, {"feature_cache": cache_facts})
    return TrainResult(
        run_dir=ctx.run_dir, model=model, class_names=ctx.class_names, history=history,
        metrics=metrics, stopped=ctx.stopped(), used_feature_cache=reason is None,
        feature_cache_reason=reason or "", config=config, split=ctx.split, pretrained=ctx.pretrained,
    )


def fine_tune(result: TrainResult, *, epochs: int, unfreeze: int | None = None,
              unfreeze_from: str | None = None, unfreeze_blocks: int | None = None,
              lr_factor: float | None = None, batchnorm_mode: str | None = None,
              callbacks: TrainCallbacks | None = None, stop_event: threading.Event | None = None,
              new_run: bool = False, run_dir: Path | str | None = None) -> TrainResult:
    """Phase 2: unfreeze the top of a private copy of the body and train on at a lower rate.

    The shared backbone is never touched; every BatchNormalization layer stays frozen and in
    inference mode. With the feature cache on, the frozen layers below the unfrozen ones run once
    (on `fine_tune_augment_copies` augmented copies of each training image) and the epochs train
    on their stored output. The body's rate warms up over `fine_tune_warmup_epochs` and decays on
    a cosine; the head trains `fine_tune_head_lr_factor` x faster. The best epoch (validation
    accuracy, then loss) must beat the frozen phase's best: if none does, the frozen weights are
    kept (`metrics["phases"]["fine_tune"]["improved"]` is False).

    Args:
        result: a finished frozen phase (from `train`, or `load_train_result`).
        epochs: fine-tuning epochs, at least 1.
        unfreeze: top layers of the body to unfreeze. Defaults to None (blocks).
        unfreeze_from: unfreeze from this layer up instead. Defaults to None.
        unfreeze_blocks: top blocks to unfreeze when neither of the above is given. Defaults to
            None: the result's config (`TrainConfig.unfreeze_blocks`).
        lr_factor: the body's peak rate = the frozen phase's learning rate x this. Defaults to
            None: the result's config (`TrainConfig.fine_tune_lr_factor`).
        batchnorm_mode: "inference" or "training" (see `TrainConfig.batchnorm_mode`). Defaults
            to None: the result's config.
        callbacks: progress reporting. Defaults to None.
        stop_event: set it to stop within one batch. Defaults to None.
        new_run: write a new run folder, whose history starts with the result's, instead of
            continuing `result.run_dir` (the saved run is then left as it was). Defaults to False.
        run_dir: the new run's folder, which must be new or empty; implies `new_run`. Defaults to
            None: a new folder under `lib.storage.runs_dir()` when `new_run`.

    Returns:
        A new `TrainResult` with the fine-tuned model and the combined history.

    Raises:
        TransferLabError: bad settings, a result without its split, or an occupied `run_dir`.
    """
    lr_factor = result.config.fine_tune_lr_factor if lr_factor is None else lr_factor
    check_fine_tune_settings(epochs, lr_factor)
    if result.split is None:
        raise TransferLabError("This result has no data split; fine-tune a result from `train`.")
    config = replace(result.config, fine_tune_epochs=epochs, unfreeze=unfreeze,
                     unfreeze_from=unfreeze_from, fine_tune_lr_factor=lr_factor,
                     unfreeze_blocks=unfreeze_blocks or result.config.unfreeze_blocks,
                     batchnorm_mode=batchnorm_mode or result.config.batchnorm_mode).validate()
    with strategy_scope(choose_strategy()) as choice:
        return _fine_tune_result(result, config, choice, callbacks=callbacks, stop_event=stop_event,
                                 new_run=new_run, run_dir=run_dir)


def _fine_tune_result(result: TrainResult, config: TrainConfig, choice: StrategyChoice, *,
                      callbacks: TrainCallbacks | None, stop_event: threading.Event | None,
                      new_run: bool, run_dir: Path | str | None) -> TrainResult:
    """`fine_tune` inside the strategy's scope (the body's trainable copy is built there)."""
    model, unfrozen = unfrozen_copy(result.model, config)  # bad layer settings fail before any write
    source = Path(result.run_dir)
    base, labels, target = runs.read_config(source), None, source
    if new_run or run_dir is not None:
        target, labels = runs.make_run_dir(run_dir, config), list(result.class_names)
        base = {**base, "fine_tuned_from": str(source)}
    recorder = RunRecorder(target, {**base, **choice.facts()}, phase=FINE_TUNE, class_names=labels)
    ctx = Context(config, result.pretrained, int(result.model.inputs[0].shape[1]),
                  list(result.class_names), result.split, recorder, callbacks or TrainCallbacks(),
                  stop_event)
    with recorder:
        return _fine_tune(replace(result, run_dir=target), ctx, model, unfrozen)


def unfrozen_copy(classifier: keras.Model, config: TrainConfig) -> tuple[keras.Model, list[str]]:
    """A new classifier on private copies of the body and head, the body's top unfrozen.

    Returns:
        `(classifier, names of the unfrozen layers with weights)`.
    """
    body, head = classifier_parts(classifier)
    body = copy_body(body)
    if config.unfreeze_from:
        unfrozen = unfreeze_top(body, from_layer=config.unfreeze_from)
    elif config.unfreeze is not None:
        unfrozen = unfreeze_top(body, n_layers=config.unfreeze)
    else:
        unfrozen = unfreeze_blocks(body, get_spec(config.backbone).cut_points, config.unfreeze_blocks)
    inference = config.batchnorm_mode == "inference"
    if not inference:
        unfrozen = [*unfrozen, *unfreeze_batchnorm(body, unfrozen)]
    return build_classifier(body, _copy_head(head), int(classifier.inputs[0].shape[1]),
                            body_inference=inference), unfrozen


def _fine_tune(result: TrainResult, ctx: Context, model: keras.Model, unfrozen: list[str]) -> TrainResult:
    """Fine-tunes `model` (from `unfrozen_copy`) inside an open recorder and finishes the run."""
    config, recorder = ctx.config, ctx.recorder
    epochs, lr = config.fine_tune_epochs, config.learning_rate * config.fine_tune_lr_factor
    recorder.update_config({**config.to_dict(), "unfrozen_layers": unfrozen})
    augment = fine_tune_augment(config)
    ctx.callbacks.message(
        f"Fine-tuning {len(unfrozen)} layers at peak rate {lr:g} (head "
        f"{lr * config.fine_tune_head_lr_factor:g}), "
        + (f"{config.fine_tune_augment_copies} augmented copies per image…" if augment else
           "no augmentation…"))
    baseline = _starting_point(result.metrics)
    boundary = (frozen_boundary(classifier_parts(model)[0], get_spec(config.backbone).cut_points,
                                unfrozen)
                if feature_cache_reason(config, FINE_TUNE) is None else None)
    optimizers: list[keras.optimizers.Optimizer] = []

    def make_fine_tune_optimizer(trained: keras.Model) -> keras.optimizers.Optimizer:
        optimizers.append(build_fine_tune_optimizer(config, trained, classifier_parts(model)[1],
                                                    len(ctx.split.train)))
        return optimizers[-1]

    def current_lr() -> float:
        return float(keras.ops.convert_to_numpy(optimizers[-1].learning_rate))

    if boundary is not None:
        augmentation = build_augmentation(augment, seed=config.seed) if augment else None
        watch, evaluation = fine_tune_on_activations(
            ctx, model, boundary, epochs=epochs, lr=current_lr, previous=result.history,
            baseline=baseline, augmentation=augmentation,
            copies=config.fine_tune_augment_copies if augment else 1,
            make_optimizer=make_fine_tune_optimizer)
    else:
        watch = _fit_on_pixels(ctx, model, phase=FINE_TUNE, epochs=epochs, lr=current_lr,
                               previous=result.history, baseline=baseline, augment=augment,
                               make_optimizer=make_fine_tune_optimizer,
                               save_checkpoint=lambda: recorder.save_model_checkpoint(model))
        evaluation = evaluate(ctx, pixel_predictor(model, ctx, engine=trained_body_engine())) if watch.rows else None
    if watch is None or not watch.rows:
        # Stopped before one fine-tuning epoch finished: keep the frozen model as the result.
        recorder.finish(stopped=True)
        return replace(result, stopped=True, config=config)
    phases = {**result.metrics.get("phases", {}), FINE_TUNE: {
        **watch.summary(), "unfrozen_layers": len(unfrozen), "activation_cache_at": boundary,
        "augment_copies": config.fine_tune_augment_copies if augment else 0,
        "peak_lr": lr, "head_lr": lr * config.fine_tune_head_lr_factor}}
    extra = {k: v for k, v in result.metrics.items()
             if k not in ("val_accuracy", "val_loss", "params", "phases", "evaluation", "pretrained")}
    extra["before_fine_tune"] = {"val_accuracy": result.metrics.get("val_accuracy"),
                                 "evaluation": result.metrics.get("evaluation")}
    metrics = build_metrics(ctx, model, phases, evaluation, extra)
    history, stopped = watch.history(), ctx.stopped()
    recorder.finish(stopped=stopped, model=model, history=history, metrics=metrics)
    return replace(result, model=model, history=history, metrics=metrics, stopped=stopped,
                   config=config)


def train_from_scratch(config: TrainConfig, *, dataset: DatasetIndex | None = None,
                       run_dir: Path | str | None = None, callbacks: TrainCallbacks | None = None,
                       stop_event: threading.Event | None = None) -> TrainResult:
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
    # One device: under MirroredStrategy the replicas' all-reduce of this all-trainable network
    # (BatchNorm training, recalibrated between epochs) fails with a shape mismatch in Keras 3.15.
    return _train_from_scratch(config, dataset, run_dir, callbacks, stop_event, ONE_DEVICE)


def _train_from_scratch(config: TrainConfig, dataset: DatasetIndex | None, run_dir: Path | str | None,
                        callbacks: TrainCallbacks, stop_event: threading.Event | None,
                        choice: StrategyChoice) -> TrainResult:
    """`train_from_scratch`'s steps, on one device."""
    backbone, dataset, split = load_inputs(config, None, dataset, callbacks, random_weights=True)
    body = build_body(backbone, config.cut)
    body.trainable = True
    for layer in body.layers:
        if is_batchnorm(layer):
            # The default 0.99 needs hundreds of steps before the moving statistics that
            # inference uses match the data; a small-data budget has tens, and validation would
            # then measure BatchNorm's lag rather than what the network learned.
            layer.momentum = SCRATCH_BN_MOMENTUM
    head = build_head(tuple(body.outputs[0].shape[1:]), dataset.num_classes, config.head, seed=config.seed)
    size = backbone.spec.input_size
    model = build_classifier(body, head, size, body_inference=False)
    recorder = _new_run(config, dataset, split, run_dir, kind=SCRATCH, pretrained=False, image_size=size,
                        choice=choice)
    ctx = Context(config, False, size, list(dataset.class_names), split, recorder, callbacks, stop_event)
    with recorder:
        callbacks.message("Training from scratch (random weights, every layer trainable)…")
        watch = _fit_on_pixels(ctx, model, phase=SCRATCH, epochs=config.epochs + config.fine_tune_epochs,
                               lr=config.learning_rate, recalibrate=body,
                               save_checkpoint=lambda: recorder.save_model_checkpoint(model))
        evaluation = evaluate(ctx, pixel_predictor(model, ctx, engine=trained_body_engine())) if watch.rows else None
        history, stopped = watch.history(), ctx.stopped()
        metrics = build_metrics(ctx, model, {SCRATCH: watch.summary()}, evaluation)
        recorder.finish(stopped=stopped, model=model, history=history, metrics=metrics)
    return TrainResult(
        run_dir=recorder.run_dir, model=model, class_names=ctx.class_names, history=history,
        metrics=metrics, stopped=stopped, used_feature_cache=False,
        feature_cache_reason=feature_cache_reason(config, SCRATCH) or "", config=config,
        split=split, pretrained=False,
    )


# ----- shared steps ------------------------------------------------------------------------------


def _new_run(config: TrainConfig, dataset: DatasetIndex, split: Split, run_dir: Path | str | None,
             *, kind: str, pretrained: bool, image_size: int, choice: StrategyChoice) -> RunRecorder:
    """The recorder of a new run folder, with the config and the facts that reproduce it."""
    facts = {"kind": kind, "pretrained": pretrained, "image_size": image_size, **choice.facts(),
             "data_name": dataset.name, "data_fingerprint": dataset.fingerprint(),
             "class_names": list(dataset.class_names),
             "split_counts": split.counts(dataset.class_names)}
    return RunRecorder(runs.make_run_dir(run_dir, config), {**config.to_dict(), **facts},
                       phase=SCRATCH if kind == SCRATCH else FROZEN, class_names=dataset.class_names)


def _fit_on_pixels(ctx: Context, model: keras.Model, *, phase: str, epochs: int, lr,
                   save_checkpoint, previous: pd.DataFrame | None = None,
                   baseline: dict | None = None, recalibrate: keras.Model | None = None,
                   augment: AugmentConfig | None | str = "config", make_optimizer=None) -> PhaseWatch:
    """The plain path: fit the classifier's logits on decoded pixels, in the shared seeded order.

    `recalibrate`: a body whose BatchNorm trains; its moving statistics are recomputed over the
    training images before each validation (`BatchNormRecalibration`). Defaults to None.
    `augment`: the augmentation, None for none, or "config" for `config.augment`.
    `make_optimizer`: `fn(logits_model) -> optimizer`, or None for the config's at `lr`.
    """
    config, split = ctx.config, ctx.split
    augment = config.augment if augment == "config" else augment
    augmentation = (build_augmentation(augment, seed=config.seed)
                    if augment is not None and augment.enabled else None)
    orders = epoch_orders(len(split.train), epochs, config.seed)
    dataset = pixel_dataset(split.train, ctx.num_classes, ctx.image_size, config.batch_size,
                            orders, augmentation)
    val = make_dataset(split.val, ctx.num_classes, ctx.image_size, EVAL_BATCH, cache=True)
    logits_model = build_logits_model(model)
    compile_model(logits_model, config, lr if not callable(lr) else 0.0,
                  optimizer=make_optimizer(logits_model) if make_optimizer else None)
    first = []
    if recalibrate is not None:
        # Unaugmented, like the validation images the statistics are then used on; in a seeded
        # mixed order like training's batches, since the records come grouped by class and a
        # one-class batch would normalise the class signal away in the layers above.
        order = np.random.default_rng(config.seed).permutation(len(split.train))
        images = make_dataset([split.train[i] for i in order], ctx.num_classes, ctx.image_size,
                              config.batch_size, cache=True)
        first.append(BatchNormRecalibration(recalibrate, images, ctx.stop_event))
    return fit_phase(ctx, logits_model, dataset, phase=phase, epochs=epochs,
                     steps=steps_per_epoch(len(split.train), config.batch_size), lr=lr,
                     save_checkpoint=save_checkpoint, previous=previous, baseline=baseline,
                     validation_data=val, first=first)


def build_fine_tune_optimizer(config: TrainConfig, trained: keras.Model, head: keras.Model,
                              n_train: int) -> keras.optimizers.Optimizer:
    """The fine-tuning optimizer: the body's rate warms up, then decays on a cosine; the head's
    variables (inside `trained`) train `fine_tune_head_lr_factor` x faster.

    Args:
        config: the run's settings (optimizer, rates, epochs, warm-up, batch size).
        trained: the model being fitted (its trainable variables include the head's).
        head: the head inside `trained`.
        n_train: training images (steps per epoch follow from the batch size).
    """
    steps = steps_per_epoch(n_train, config.batch_size)
    total = steps * config.fine_tune_epochs
    warmup = min(steps * config.fine_tune_warmup_epochs, total)
    schedule = build_lr_schedule(config.learning_rate * config.fine_tune_lr_factor, total, warmup)
    return make_optimizer(config.optimizer, schedule, faster=head.trainable_variables,
                          faster_factor=config.fine_tune_head_lr_factor)


def _copy_head(head: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(head)
    copy.set_weights(head.get_weights())
    return copy


def _starting_point(metrics: dict) -> dict | None:
    """The best epoch of the last phase, which fine-tuning has to beat (accuracy, then loss).

    Early stopping restores the best epoch; starting from this baseline means an epoch that never
    beats the frozen model keeps the frozen weights instead of a worse state.
    """
    phases = [p for p in (metrics or {}).get("phases", {}).values() if p.get("val_loss") is not None]
    if not phases:
        return None
    last = phases[-1]
    return {"epoch": last.get("best_epoch"), "val_loss": last["val_loss"],
            "val_accuracy": last.get("val_accuracy")}
