"""Lesson `batchnorm-pitfall`: fine-tuning with BatchNorm in inference mode, and in training mode."""

from __future__ import annotations

from lib.lessons.branches import (
    ProgressFn,
    curve_end,
    last_val_accuracy,
    make_branch_figures,
    train_branches,
)
from lib.lessons.finetune import DATA
from lib.lessons.lesson import LESSON_BACKBONE, Lesson, Models

# Measured on Lite0, builtin:faces, 40 images per class, the top 5 blocks, the head 8 epochs at 1e-2
# then 3 of fine-tuning at 1e-3 (the rate the frozen-vs-finetune lesson shows is safe). Inference mode
# ends at 100% in every run. Training mode: batches of 4 and of 2 also end at 100% (seeds 0, 1), only
# the validation loss rises (0.20 -> 0.53 at 4; 0.24 -> 0.40 at 2): two classes this far apart
# survive a lot. Batches of 1 image (the extreme of a small batch: each image normalised with its
# own statistics) fall to 50% on the way and end at 87.5% (seed 0; loss 0.69, a coin toss's) and
# 56% (seed 1; loss 2.05), against 100% in inference mode.
LEARNING_RATE = 1e-2
LR_FACTOR = 0.1
BLOCKS = 5
BATCH_SIZE = 1
MODES = ("inference", "training")


def run(models: Models, *, backbone: str = LESSON_BACKBONE, data: str = DATA, per_class: int = 40,
        head_epochs: int = 8, fine_tune_epochs: int = 3, blocks: int = BLOCKS,
        learning_rate: float = LEARNING_RATE, batch_size: int = BATCH_SIZE, seed: int = 0,
        on_progress: ProgressFn | None = None) -> dict:
    """Trains the head, then fine-tunes the same top blocks twice from it at the same rate: the
    body called in inference mode (`training=False`), and in training mode with trainable
    BatchNorm (`TrainConfig.batchnorm_mode="training"`).

    Args:
        models: where the backbone comes from.
        backbone: a registry name. Defaults to EfficientNet-Lite0.
        data: a dataset spec. Defaults to "builtin:faces".
        per_class: images of each class used (0: all). Defaults to 40.
        head_epochs: epochs of the head on the frozen body. Defaults to 8.
        fine_tune_epochs: epochs of each fine-tuning run. Defaults to 3.
        blocks: top blocks unfrozen (their BatchNorm layers train in training mode). Defaults to
            `BLOCKS`.
        learning_rate: the head's rate; fine-tuning runs at a tenth of it. Defaults to
            `LEARNING_RATE`.
        batch_size: images per step: the smaller, the further a batch's statistics are from the
            data's. Defaults to `BATCH_SIZE` (1).
        seed: the subset, the split, the head and the batch order. Defaults to 0.
        on_progress: `fn(done, total, message)` after each epoch. Defaults to None.

    Returns:
        numbers: `{"bn_inference": acc, "bn_training": acc, "frozen": acc, "curves": {...},
        "batch_size", "rate"}` (validation accuracies at each curve's last epoch); figures:
        `curves` (validation accuracy), `loss` (validation loss).
    """
    frozen, branches = train_branches(
        models, {mode: {"lr_factor": LR_FACTOR, "batchnorm_mode": mode} for mode in MODES},
        backbone=backbone, data=data, per_class=per_class, head_epochs=head_epochs,
        fine_tune_epochs=fine_tune_epochs, blocks=blocks, learning_rate=learning_rate,
        batch_size=batch_size, seed=seed, on_progress=on_progress)
    ends = {mode: curve_end(branches[mode].history) for mode in MODES}
    numbers = {
        "backbone": backbone, "data": data, "per_class": per_class,
        "frozen": last_val_accuracy(frozen.history),
        "bn_inference": ends["inference"]["val_accuracy"],
        "bn_training": ends["training"]["val_accuracy"],
        "curves": ends, "batch_size": batch_size, "rate": learning_rate * LR_FACTOR,
    }
    histories = {"BatchNorm in inference mode (training=False)": branches["inference"].history,
                 f"BatchNorm in training mode, batches of {batch_size}": branches["training"].history}
    return {"numbers": numbers, "images": {}, "figures": make_branch_figures(histories)}


LESSON = Lesson(
    name="batchnorm-pitfall",
    title="The BatchNorm pitfall",
    paragraphs=(
        "A BatchNormalization layer rescales each channel with a mean and a variance. While the "
        "network trained on ImageNet, each such layer kept running averages of them (the moving "
        "statistics); in inference mode it uses those stored values.",
        "In training mode it uses the mean and variance of the current batch instead, and moves "
        "its stored averages towards them. Fine-tuning on a few images in small batches, the "
        "features then change with every batch, and the stored statistics drift to those of "
        "small batches, not of our data as a whole: the head no longer fits the features.",
        "So Keras' advice is to call the pretrained body with training=False while fine-tuning. "
        "Here the same model is fine-tuned twice, at the same low rate, one image per step: once "
        "that way, once with BatchNorm in training mode.",
    ),
    notice=(
        "Both runs start from the same head, with the same images and the same learning rate; "
        "only the BatchNorm mode differs.",
        "In inference mode the validation accuracy stays where the head left it.",
        "In training mode it falls once fine-tuning starts, and the validation loss rises to "
        "about 0.69, what a coin toss scores on two classes.",
    ),
    question="The learning rate here is small. Why does the accuracy still fall in training mode?",
    answer="BatchNorm's moving mean and variance are not learned by gradient descent: in training "
           "mode each step normalises with one small batch's statistics and pulls the stored ones "
           "towards them, at the same pace whatever the learning rate. The features the head sees "
           "change under it. (With larger batches the damage is smaller; on this easy two-class "
           "set, batches of 4 only raise the loss.)",
    run=run,
    defaults={"backbone": LESSON_BACKBONE, "data": DATA, "per_class": 40, "head_epochs": 8,
              "fine_tune_epochs": 3, "blocks": BLOCKS, "learning_rate": LEARNING_RATE,
              "batch_size": BATCH_SIZE, "seed": 0},
    timing="about 55 s: the head, then two fine-tuning runs at one image per step",
    replay=True,
)
