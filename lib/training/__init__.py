"""Training: a head on a frozen body, optional fine-tuning, and the from-scratch baseline.

    config.py     `TrainConfig` (the one place defaults live) and its validation
    callbacks.py  small Keras callbacks, one job each, and `TrainCallbacks` (progress functions)
    inputs.py     backbone and data loading, the split, seeded batches
    engine.py     the run context, compiling, one phase's `fit`, evaluation and metrics
    fast_path.py  training on cached features (frozen) and cached activations (fine-tuning)
    phases.py     `train`, `fine_tune`, `train_from_scratch`
    resume.py     `load_train_result`: a saved run, ready to fine-tune
    lr_find.py    `find_learning_rate`: the learning-rate finder (fastai's `lr_find`)

Run folders are written by `lib.runs.recorder.RunRecorder`, never by the training code itself.
"""

from lib.lazy import lazy_exports

# The settings import no TensorFlow, so the CLI's parser reads its defaults from them cheaply.
from lib.training.config import (
    FINE_TUNE,
    FROZEN,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    OPTIMIZERS,
    SCRATCH,
    SELECTED_BY,
    TrainConfig,
    feature_cache_reason,
    fine_tune_augment,
)

# Everything else imports TensorFlow, so it loads at first use (PEP 562 `__getattr__`):
# `from lib.training import train` works as before, `import lib.training.config` stays light.
_LAZY = {
    "lib.training.callbacks": ("BatchNormRecalibration", "BestWeights", "EpochLog", "EpochSummaries",
                               "ProgressReporter", "StopOnEvent", "TrainCallbacks", "TrainingStopped",
                               "recalibrate_batchnorm"),
    "lib.training.engine": ("TrainResult", "build_lr_schedule", "compile_model", "fit_phase",
                            "make_optimizer"),
    "lib.training.fast_path": ("FAST_STEPS_PER_EXECUTION", "ArrayValidation"),
    "lib.training.inputs": ("epoch_orders", "feature_dataset", "one_hot", "pixel_dataset",
                            "steps_per_epoch"),
    "lib.training.lr_find": ("LRFinding", "find_learning_rate"),
    "lib.training.phases": ("fine_tune", "train", "train_from_scratch", "unfrozen_copy"),
    "lib.training.resume": ("load_train_result",),
}
__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "FAST_STEPS_PER_EXECUTION", "FINE_TUNE", "FROZEN", "MAX_BATCH_SIZE", "MAX_EPOCHS", "OPTIMIZERS",
    "SCRATCH", "SELECTED_BY", "ArrayValidation", "BatchNormRecalibration", "BestWeights",
    "EpochLog", "EpochSummaries", "LRFinding", "ProgressReporter", "StopOnEvent", "TrainCallbacks",
    "TrainConfig", "TrainResult", "TrainingStopped", "build_lr_schedule", "compile_model",
    "epoch_orders", "feature_cache_reason", "feature_dataset", "find_learning_rate", "fine_tune",
    "fine_tune_augment", "fit_phase", "load_train_result", "make_optimizer", "one_hot",
    "pixel_dataset", "recalibrate_batchnorm", "steps_per_epoch", "train", "train_from_scratch",
    "unfrozen_copy",
]
