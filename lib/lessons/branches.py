"""What the fine-tuning lessons share (`frozen-vs-finetune`, `batchnorm-pitfall`): a small seeded
subset of a dataset, the head trained on the frozen body, and several fine-tuning branches from
that one head, each in its own run folder, in a temporary folder thrown away afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lib.lessons.lesson import Models

ProgressFn = Callable[[int, int, str], None]


def load_subset(data: str, per_class: int, seed: int):
    """`data` with at most `per_class` images of each class, drawn with `seed` (0 keeps all).

    A live lesson trains on few images so a class waits seconds, not minutes.
    """
    from lib.data.records import DatasetIndex
    from lib.data.sources import load_dataset
    from lib.training.config import check, is_int

    check(is_int(per_class) and per_class >= 0,
          f"Received `per_class={per_class}`; use 0 (every image) or more.")
    dataset = load_dataset(data)
    if per_class == 0:
        return dataset
    rng = np.random.default_rng(seed)
    kept = []
    for records in dataset.records_by_class().values():
        picks = rng.permutation(len(records))[:per_class]
        kept.extend(records[i] for i in sorted(picks))
    return DatasetIndex(name=f"{dataset.name} ({per_class} per class)",
                        class_names=dataset.class_names, records=tuple(kept),
                        report=dataset.report)


def epoch_progress(on_progress: ProgressFn | None, total: int):
    """`TrainCallbacks` that count finished epochs into `on_progress(done, total, message)`."""
    from lib.training import TrainCallbacks

    if on_progress is None:
        return TrainCallbacks()
    done = [0]

    def on_epoch_end(row: dict) -> None:
        done[0] += 1
        on_progress(min(done[0], total), total,
                    f"{row['phase'].replace('_', ' ')} epoch {row['epoch']}: validation accuracy "
                    f"{row['val_accuracy']:.0%}")
    return TrainCallbacks(on_epoch_end=on_epoch_end,
                          on_message=lambda text: on_progress(done[0], total, text))


def train_frozen_head(models: Models, folder: Path, *, backbone: str, data: str, per_class: int,
                      epochs: int, learning_rate: float, batch_size: int, blocks: int, seed: int,
                      callbacks, **fine_tune_settings):
    """Phase 1 on a subset: the head on the frozen body (cached features), in `folder`.

    The fine-tuning settings the branches share go into the config now: no augmentation (a live
    step has no time for it), no warm-up, the head at the body's rate, no early stopping.
    """
    from lib.training import TrainConfig, train

    config = TrainConfig(backbone=backbone, data=data, learning_rate=learning_rate,
                         batch_size=batch_size, epochs=epochs, seed=seed,
                         early_stopping_patience=None, unfreeze_blocks=blocks,
                         fine_tune_augment_copies=0, fine_tune_warmup_epochs=0,
                         fine_tune_head_lr_factor=1.0, **fine_tune_settings)
    return train(config, backbone=models.backbone(backbone),
                 dataset=load_subset(data, per_class, seed), run_dir=folder / "frozen",
                 callbacks=callbacks)


def fine_tune_branch(result, folder: Path, name: str, *, epochs: int, callbacks, **settings):
    """Phase 2 from a frozen result, in a new run `folder/name` (the result is left as it was)."""
    from lib.training import fine_tune

    return fine_tune(result, epochs=epochs, new_run=True, run_dir=folder / name,
                     callbacks=callbacks, **settings)


def train_branches(models: Models, branches: dict[str, dict], *, backbone: str, data: str,
                   per_class: int, head_epochs: int, fine_tune_epochs: int, blocks: int,
                   learning_rate: float, batch_size: int, seed: int,
                   on_progress: ProgressFn | None = None) -> tuple[object, dict[str, object]]:
    """Trains the head on the frozen body once, then fine-tunes the top `blocks` blocks from it
    once per branch, in the order given, in a temporary folder that is removed afterwards.

    Args:
        models: where the backbone comes from.
        branches: branch name -> `fine_tune` settings of that branch (e.g. `{"lr_factor": 0.1}`).
        backbone: a registry name.
        data: a dataset spec.
        per_class: images of each class used (0: all).
        head_epochs: epochs of the head on the frozen body.
        fine_tune_epochs: epochs of each branch.
        blocks: top blocks unfrozen.
        learning_rate: the head's rate (each branch's `lr_factor` scales it).
        batch_size: images per step, in every phase.
        seed: the subset, the split, the head and the batch order.
        on_progress: `fn(done, total, message)` after each epoch of any phase. Defaults to None.

    Returns:
        `(frozen, {name: fine-tuned})`: the `TrainResult`s, whose histories and models stay
        usable after their folder is gone.
    """
    if not branches:
        raise ValueError(f"Received `branches={branches}`; name at least one branch.")
    callbacks = epoch_progress(on_progress, head_epochs + len(branches) * fine_tune_epochs)
    with tempfile.TemporaryDirectory(prefix="lesson-branches-") as tmp:
        folder = Path(tmp)
        frozen = train_frozen_head(models, folder, backbone=backbone, data=data,
                                   per_class=per_class, epochs=head_epochs,
                                   learning_rate=learning_rate, batch_size=batch_size,
                                   blocks=blocks, seed=seed, callbacks=callbacks)
        tuned = {name: fine_tune_branch(frozen, folder, name, epochs=fine_tune_epochs,
                                        callbacks=callbacks, **settings)
                 for name, settings in branches.items()}
    return frozen, tuned


def last_val_accuracy(history: pd.DataFrame) -> float:
    """The validation accuracy of a history's last epoch, rounded as the lessons report it."""
    return round(float(history["val_accuracy"].iloc[-1]), 4)


def curve_end(history: pd.DataFrame, phase: str = "fine_tune") -> dict:
    """Where a phase's validation curve ends (its last epoch), and its lowest accuracy.

    The run itself keeps its best epoch (and the frozen weights if fine-tuning never beats them);
    the lesson reports where the curve went, which is what the students watch.
    """
    rows = history[history["phase"] == phase]
    return {"val_accuracy": round(float(rows["val_accuracy"].iloc[-1]), 4),
            "val_loss": round(float(rows["val_loss"].iloc[-1]), 4),
            "lowest_val_accuracy": round(float(rows["val_accuracy"].min()), 4)}


def make_branch_figures(histories: dict[str, pd.DataFrame]) -> dict:
    """The branches' validation accuracy and loss, each branch's curve after the head's.

    Args:
        histories: legend name -> a branch's history (the frozen phase first).

    Returns:
        `{"curves": Figure, "loss": Figure}` (plotly).
    """
    from lib.plots.fine_tuning import make_branch_curves_figure

    return {"curves": make_branch_curves_figure(histories, "val_accuracy"),
            "loss": make_branch_curves_figure(histories, "val_loss")}
