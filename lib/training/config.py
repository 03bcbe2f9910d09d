"""`TrainConfig`: every setting of a training run, its defaults and its validation.

The defaults live here only: the CLI's argparse and the pages' widgets read them from `TrainConfig()`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from lib.data.augment import AugmentConfig
from lib.errors import TransferLabError
from lib.models import HeadConfig

OPTIMIZERS = ("adam", "sgd", "rmsprop")
# How fine-tuning calls the body's BatchNorm layers. "inference" is the Keras guide's rule (moving
# statistics used and never updated); "training" lets the unfrozen blocks' BatchNorm normalise
# with each batch's statistics and update its moving ones: the batchnorm-pitfall lesson shows it.
BATCHNORM_MODES = ("inference", "training")
FROZEN, FINE_TUNE, SCRATCH = "frozen", "fine_tune", "scratch"
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_AUGMENT_COPIES = 32
# How the best epoch of a phase is chosen (and said so in the UI and in metrics.json): validation
# loss alone rewards sharper probabilities while accuracy moves within one image.
SELECTED_BY = "val_accuracy, then val_loss"

# The learning-rate finder's sweep (`lib.training.lr_find`): rates from START to END, one batch each.
LR_FIND_START = 1e-7
LR_FIND_END = 1.0
LR_FIND_STEPS = 100
# Measured defaults: a head on cached Lite0 features, 150-epoch curves without early stopping, on
# builtin:faces, flowers5 and 3 flowers classes of 30 photos (3 seeds), rates 1e-3/3e-3/1e-2,
# smoothing 0/0.1. At 1e-3 every rate-smoothing pair reached the same best validation accuracy
# (faces 100%, flowers3 96.3%, flowers5 93.2%); 1e-2 lost 1-2 points on flowers5. Without
# smoothing the validation loss keeps creeping down for 150 epochs (the head sharpens its
# probabilities), so "converged" never comes; with 0.1 it flattens, and patience 10 stops at
# epochs 37 (faces), 40 (flowers5) and 47-57 (flowers3), all before the cap of 100, at the best
# accuracy of the full curve. (The old 20 epochs / patience 5 stopped flowers3 at the cap with
# the loss still falling.)
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 10
DEFAULT_LABEL_SMOOTHING = 0.1
# Fine-tuning: the top blocks of EfficientNet-Lite0 that work at 7x7 (top conv, 7a, 6d, 6c, 6b);
# their input (block 6a's output) is small, so the activation cache stays cheap.
DEFAULT_UNFREEZE_BLOCKS = 5
# The body's peak rate 1e-4 (x 1e-3), the head's 1e-3. On flowers5, 3e-5 (factor 0.03) with
# these blocks, 4 augmented copies and 8 epochs left the best fine-tuned epoch at 92.8% against the
# frozen 93.2% while the training accuracy on augmented copies was still rising: too timid.
DEFAULT_FINE_TUNE_LR_FACTOR = 0.1
DEFAULT_AUGMENT_COPIES = 4
# Fine-tuning epochs the Fine-tune page and the benchmark start from (`TrainConfig.fine_tune_epochs`
# stays 0: `train` fine-tunes only when asked); with cached activations an epoch costs seconds.
SUGGESTED_FINE_TUNE_EPOCHS = 8


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as the run's `config.json`).

    Attributes:
        backbone: registry name. Defaults to "efficientnet_lite0".
        data: folder, zip, `builtin:NAME` or `tfds:NAME`. Defaults to "builtin:faces".
        cut: cut point; None means the backbone's top feature layer.
        head: hidden units and dropout. Defaults to `HeadConfig()`.
        optimizer: "adam", "sgd" (momentum 0.9) or "rmsprop". Defaults to "adam".
        learning_rate: frozen-phase learning rate. Defaults to `DEFAULT_LEARNING_RATE`.
        batch_size: images per step. Defaults to 32.
        epochs: frozen-phase epochs (early stopping may end sooner). Defaults to `DEFAULT_EPOCHS`:
            with the feature cache an epoch costs milliseconds, so the budget is set by where the
            head converges on small sets, not by time (see `DEFAULT_EPOCHS`).
        label_smoothing: in [0, 1). Defaults to `DEFAULT_LABEL_SMOOTHING`.
        early_stopping_patience: epochs in which neither the best epoch (see `SELECTED_BY`) nor
            the lowest `val_loss` improves before stopping; None turns early stopping off. Either
            way the best epoch's weights are kept. Defaults to `DEFAULT_PATIENCE`.
        augment: augmentation settings, or None for none. Turns the feature cache off for the
            frozen phase. Defaults to None.
        val_split: validation share of each class, in (0, 1). Defaults to 0.2.
        test_split: test share of each class, in [0, 1). Defaults to 0.1.
        seed: seeds the split, the head, the epoch order and the augmentation. Defaults to 0.
        use_feature_cache: use the fast path when possible. Defaults to True.
        fine_tune_epochs: epochs of phase 2 after the frozen phase; 0 skips it. Defaults to 0.
        unfreeze: top layers of the body to unfreeze for fine-tuning, counted as the Keras guide
            counts them; None unfreezes `unfreeze_blocks` blocks instead. Defaults to None.
        unfreeze_from: unfreeze from this layer up instead (overrides both). Defaults to None.
        unfreeze_blocks: top blocks of the body to unfreeze (blocks end at the backbone's cut
            points; at most the body's count). Defaults to `DEFAULT_UNFREEZE_BLOCKS`.
        fine_tune_lr_factor: the body's peak fine-tuning rate = learning_rate x this. Defaults to
            `DEFAULT_FINE_TUNE_LR_FACTOR`.
        fine_tune_head_lr_factor: the head's fine-tuning rate = the body's x this (the head is
            already trained but still the least settled part). Defaults to 10.
        fine_tune_warmup_epochs: epochs over which the fine-tuning rate rises linearly to its
            peak, before a cosine decay over the rest. Defaults to 1.
        fine_tune_augment_copies: augmented copies of each training image whose activations the
            fine-tuning cache holds (each epoch draws one per image); 0 fine-tunes without
            augmentation. The augmentation is `augment`, or `AugmentConfig()` when that is None.
            Defaults to `DEFAULT_AUGMENT_COPIES`.
        batchnorm_mode: how fine-tuning runs BatchNorm: "inference" (the body is called with
            `training=False`, every BatchNorm frozen) or "training" (the unfrozen blocks' BatchNorm
            layers train and normalise with each batch's statistics, updating their moving ones;
            a pitfall kept for teaching). Defaults to "inference".
        owner: who started the run, recorded in its config: the app's session on a hosted server
            (which lists only its own and shared runs), "" from the CLI. Defaults to "".
    """

    backbone: str = "efficientnet_lite0"
    data: str = "builtin:faces"
    cut: str | None = None
    head: HeadConfig = HeadConfig()
    optimizer: str = "adam"
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = 32
    epochs: int = DEFAULT_EPOCHS
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING
    early_stopping_patience: int | None = DEFAULT_PATIENCE
    augment: AugmentConfig | None = None
    val_split: float = 0.2
    test_split: float = 0.1
    seed: int = 0
    use_feature_cache: bool = True
    fine_tune_epochs: int = 0
    unfreeze: int | None = None
    unfreeze_from: str | None = None
    unfreeze_blocks: int = DEFAULT_UNFREEZE_BLOCKS
    fine_tune_lr_factor: float = DEFAULT_FINE_TUNE_LR_FACTOR
    fine_tune_head_lr_factor: float = 10.0
    fine_tune_warmup_epochs: int = 1
    fine_tune_augment_copies: int = DEFAULT_AUGMENT_COPIES
    batchnorm_mode: str = "inference"
    owner: str = ""

    def validate(self) -> TrainConfig:
        """Returns self, or raises TransferLabError naming the bad value."""
        check(bool(str(self.backbone).strip()), f"Received `backbone={self.backbone!r}`; name a backbone.")
        check(bool(str(self.data).strip()), f"Received `data={self.data!r}`; name a dataset.")
        check(self.optimizer in OPTIMIZERS,
              f"Received `optimizer={self.optimizer!r}`; use one of {', '.join(OPTIMIZERS)}.")
        check(is_number(self.learning_rate) and 0 < self.learning_rate <= 10,
              f"Received `learning_rate={self.learning_rate}`; use a positive rate such as 1e-3.")
        check(is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
              f"Received `batch_size={self.batch_size}`; use 1 to {MAX_BATCH_SIZE}.")
        check(is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS,
              f"Received `epochs={self.epochs}`; use 1 to {MAX_EPOCHS}.")
        check(is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1,
              f"Received `label_smoothing={self.label_smoothing}`; use a value in [0, 1).")
        check(self.early_stopping_patience is None
              or (is_int(self.early_stopping_patience) and self.early_stopping_patience >= 1),
              f"Received `early_stopping_patience={self.early_stopping_patience}`; use 1 or more, "
              "or None to turn early stopping off.")
        check(is_number(self.val_split) and 0 < self.val_split < 1,
              f"Received `val_split={self.val_split}`; use a fraction above 0 and below 1 "
              "(early stopping and the reported accuracy need validation images).")
        check(is_number(self.test_split) and 0 <= self.test_split < 1,
              f"Received `test_split={self.test_split}`; use a fraction in [0, 1).")
        check(is_int(self.fine_tune_epochs) and 0 <= self.fine_tune_epochs <= MAX_EPOCHS,
              f"Received `fine_tune_epochs={self.fine_tune_epochs}`; use 0 to {MAX_EPOCHS}.")
        check(self.unfreeze is None or (is_int(self.unfreeze) and self.unfreeze >= 1),
              f"Received `unfreeze={self.unfreeze}`; unfreeze at least 1 layer, or None for blocks.")
        check(is_int(self.unfreeze_blocks) and self.unfreeze_blocks >= 1,
              f"Received `unfreeze_blocks={self.unfreeze_blocks}`; unfreeze at least 1 block.")
        check(is_number(self.fine_tune_lr_factor) and 0 < self.fine_tune_lr_factor <= 10,
              f"Received `fine_tune_lr_factor={self.fine_tune_lr_factor}`; use a factor in (0, 10].")
        check(is_number(self.fine_tune_head_lr_factor) and 0 < self.fine_tune_head_lr_factor <= 1000,
              f"Received `fine_tune_head_lr_factor={self.fine_tune_head_lr_factor}`; use a factor "
              "in (0, 1000].")
        check(is_int(self.fine_tune_warmup_epochs) and 0 <= self.fine_tune_warmup_epochs <= MAX_EPOCHS,
              f"Received `fine_tune_warmup_epochs={self.fine_tune_warmup_epochs}`; use 0 to {MAX_EPOCHS}.")
        check(is_int(self.fine_tune_augment_copies)
              and 0 <= self.fine_tune_augment_copies <= MAX_AUGMENT_COPIES,
              f"Received `fine_tune_augment_copies={self.fine_tune_augment_copies}`; use 0 (no "
              f"augmentation) to {MAX_AUGMENT_COPIES}.")
        check(self.batchnorm_mode in BATCHNORM_MODES,
              f"Received `batchnorm_mode={self.batchnorm_mode!r}`; use one of "
              f"{', '.join(BATCHNORM_MODES)}.")
        check(is_int(self.seed), f"Received `seed={self.seed}`; use an integer.")
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


def check_fine_tune_settings(epochs: int, lr_factor: float) -> None:
    """Validates `fine_tune`'s own arguments, echoing a bad value."""
    check(is_int(epochs) and 1 <= epochs <= MAX_EPOCHS,
          f"Received `epochs={epochs}`; fine-tune for 1 to {MAX_EPOCHS} epochs.")
    check(is_number(lr_factor) and 0 < lr_factor <= 10,
          f"Received `lr_factor={lr_factor}`; use a factor in (0, 10].")


def fine_tune_augment(config: TrainConfig) -> AugmentConfig | None:
    """The augmentation fine-tuning uses: None when off, else `config.augment` or the default."""
    if config.fine_tune_augment_copies == 0:
        return None
    if config.augment is None:
        return AugmentConfig()
    return config.augment if config.augment.enabled else None


def feature_cache_reason(config: TrainConfig, phase: str = FROZEN) -> str | None:
    """Says why the feature cache cannot be used, or None when it can.

    For the frozen phase the cache holds the body's output; for fine-tuning it holds the output
    of the frozen layers below the unfrozen ones (computed once per fine-tuning call, in memory),
    for `fine_tune_augment_copies` augmented copies of each training image, so augmentation does
    not turn it off there.

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
    if phase == FROZEN and config.augment is not None and config.augment.enabled:
        return ("augmentation is on: every epoch sees different pixels, so the body's features "
                "cannot be computed once.")
    return None


def check(ok: bool, message: str) -> None:
    """Raises `TransferLabError(message)` unless `ok`."""
    if not ok:
        raise TransferLabError(message)


def is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)
