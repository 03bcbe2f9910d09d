"""Reopen a saved run as a `TrainResult`, so that it can be fine-tuned (CLI `fine-tune --run`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lib import runs
from lib.data.sources import DatasetIndex, load_dataset
from lib.errors import TransferLabError
from lib.evaluate import check_class_names
from lib.training.callbacks import TrainCallbacks
from lib.training.config import SCRATCH, TrainConfig, feature_cache_reason
from lib.training.engine import TrainResult
from lib.training.inputs import split_for


def load_train_result(run_dir: Path | str, *, dataset: DatasetIndex | None = None,
                      callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Loads a saved transfer run with its model, history, metrics and data split.

    The split is recomputed from the run's data, fractions and seed, so it is the one the run
    trained on; the data must be the same images under the same labels (its fingerprint).

    Args:
        run_dir: a run folder written by `train` (or `fine_tune`).
        dataset: the run's dataset, if the caller has it loaded. Defaults to None (load the run's
            `data`).
        callbacks: where to say what is loading. Defaults to None.

    Returns:
        A `TrainResult` for `fine_tune`; `stopped` is False.

    Raises:
        TransferLabError: not a loadable run, a from-scratch run, or data that changed since.
    """
    run = runs.load_run(run_dir)
    facts = run["config"]
    if facts.get("kind") == SCRATCH:
        raise TransferLabError(
            f"{run_dir} was trained from scratch: every layer already trained, so there is nothing "
            "to unfreeze. Fine-tune a transfer run."
        )
    config = TrainConfig.from_dict(facts).validate()
    model, labels = runs.load_trained_model(run_dir)
    if dataset is None:
        (callbacks or TrainCallbacks()).message(f"Loading {config.data}…")
        dataset = load_dataset(config.data)
    check_class_names(labels, dataset.class_names, dataset.name)
    expected = facts.get("data_fingerprint")
    if expected and dataset.fingerprint() != expected:
        raise TransferLabError(
            f"The images of {config.data} changed since {run_dir} was trained, so its validation "
            "split cannot be rebuilt; fine-tune on the data the run was trained on."
        )
    reason = feature_cache_reason(config)
    return TrainResult(
        run_dir=Path(run_dir), model=model, class_names=list(labels), history=run["history"],
        metrics=run["metrics"], stopped=False, used_feature_cache=reason is None,
        feature_cache_reason=reason or "", config=config, split=split_for(config, dataset),
        pretrained=bool(facts.get("pretrained", True)),
    )


def load_run_result(run_dir: Path | str, *, dataset: DatasetIndex | None = None) -> TrainResult:
    """A finished run of any kind as a `TrainResult`: what a page shows after a job ran elsewhere.

    A transfer run loads as `load_train_result` does (ready to fine-tune); a from-scratch run
    loads its model, history and metrics without a split (nothing fine-tunes it).

    Raises:
        TransferLabError: not a loadable run.
    """
    run = runs.load_run(run_dir)
    facts = run["config"]
    if facts.get("kind") != SCRATCH:
        result = load_train_result(run_dir, dataset=dataset)
        return replace(result, stopped=run["status"].get("status") == runs.STOPPED)
    config = TrainConfig.from_dict(facts).validate()
    model, labels = runs.load_trained_model(run_dir)
    return TrainResult(
        run_dir=Path(run_dir), model=model, class_names=list(labels), history=run["history"],
        metrics=run["metrics"], stopped=run["status"].get("status") == runs.STOPPED,
        used_feature_cache=False, feature_cache_reason=feature_cache_reason(config, SCRATCH) or "",
        config=config, split=None, pretrained=False,
    )
