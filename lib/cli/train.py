"""`train`, `fine-tune` and `evaluate`: the same functions the Train, Fine-tune and Runs pages call.

Every default comes from `TrainConfig()`, the one place training defaults live.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lib.errors import TransferLabError
from lib.training.config import FINE_TUNE, FROZEN, SCRATCH, TrainConfig

BAR_WIDTH = 24
DEFAULTS = TrainConfig()


class ProgressBar:
    """Draws training progress on stderr: a live bar on a terminal, one line per epoch otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0

    def _bar(self, done: float, total: float) -> str:
        filled = int(BAR_WIDTH * done / total) if total else 0
        return "#" * filled + "-" * (BAR_WIDTH - filled)

    def _draw(self, text: str) -> None:
        if self.live:
            self.stream.write("\r" + text.ljust(90)[:120])
            self.stream.flush()

    def on_extract(self, done: int, total: int) -> None:
        self._draw(f"features [{self._bar(done, total)}] {done}/{total} images")
        if done == total and not self.live:
            self.stream.write(f"features: {total} images\n")

    def on_batch_end(self, row: dict) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.1 and row["batch"] < row["batches"]:
            return  # a terminal does not need more than 10 frames a second
        self._last_draw = now
        loss = f"{row['loss']:.4f}" if row.get("loss") is not None else "-"
        self._draw(f"{row['phase']} epoch {row['epoch']} [{self._bar(row['batch'], row['batches'])}] "
                   f"{row['batch']}/{row['batches']} loss {loss} eta {row['eta_seconds']:.0f}s")

    def on_epoch_end(self, row: dict) -> None:
        if self.live:
            self.stream.write("\r" + " " * 120 + "\r")
        parts = [f"{row['phase']} epoch {row['epoch']}/{row['epochs']}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if row.get(key) is not None:
                parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"{row['seconds']:.2f}s")
        self.stream.write("  ".join(parts) + "\n")
        self.stream.flush()

    def on_message(self, text: str) -> None:
        if self.live:
            self.stream.write("\r" + " " * 120 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


def config_from_args(args: argparse.Namespace):
    """Builds a validated `TrainConfig` from the command line."""
    from lib.data.augment import AugmentConfig
    from lib.models import HeadConfig

    return TrainConfig(
        backbone=args.backbone, data=args.data, cut=args.cut,
        head=HeadConfig(hidden_units=args.hidden, dropout=args.dropout),
        optimizer=args.optimizer, learning_rate=args.lr, batch_size=args.batch_size,
        epochs=args.epochs, label_smoothing=args.label_smoothing,
        early_stopping_patience=args.patience if args.patience > 0 else None,
        augment=AugmentConfig() if args.augment else None,
        val_split=args.val_split, test_split=args.test_split, seed=args.seed,
        use_feature_cache=not args.no_feature_cache, fine_tune_epochs=args.fine_tune_epochs,
        unfreeze=args.unfreeze, unfreeze_from=args.unfreeze_from,
        unfreeze_blocks=args.unfreeze_blocks, fine_tune_lr_factor=args.fine_tune_lr_factor,
        fine_tune_head_lr_factor=args.fine_tune_head_lr_factor,
        fine_tune_warmup_epochs=args.fine_tune_warmup_epochs,
        fine_tune_augment_copies=args.fine_tune_augment_copies,
    ).validate()


def progress_callbacks():
    """`TrainCallbacks` that draw progress on stderr."""
    from lib.training import TrainCallbacks

    bar = ProgressBar()
    return TrainCallbacks(on_batch_end=bar.on_batch_end, on_epoch_end=bar.on_epoch_end,
                          on_extract=bar.on_extract, on_message=bar.on_message)


def train_summary(result, start: float) -> dict:
    """The JSON that `train` and `fine-tune` print: the run, its accuracies, epochs and time."""
    phases = result.metrics.get("phases", {})
    first = phases.get(SCRATCH, phases.get(FROZEN, {}))
    return {
        "run": str(result.run_dir),
        "val_accuracy": first.get("val_accuracy"),
        "fine_tune_val_accuracy": phases.get(FINE_TUNE, {}).get("val_accuracy"),
        "epochs": int(len(result.history)),
        "seconds": round(time.perf_counter() - start, 2),
    }


def run_summary(state: dict) -> dict:
    """The JSON `train` prints, from the run folder a job wrote (`lib.cli.jobs.submit_and_follow`)."""
    from types import SimpleNamespace

    from lib import runs

    run = runs.load_run(state["run_dir"])
    result = SimpleNamespace(metrics=run["metrics"], history=run["history"], run_dir=state["run_dir"])
    summary = train_summary(result, time.perf_counter() - state["seconds"])
    summary.update(status=state["status"], job=Path(state["run_dir"]).name,
                   worker=state.get("worker") or {})
    return summary


def scheduler_of(args: argparse.Namespace) -> str:
    """`--scheduler`, else `TRANSFERLAB_SCHEDULER`; "" runs the training in this process."""
    from lib.jobs.choose import scheduler_setting

    return scheduler_setting(getattr(args, "scheduler", None))


def train_command(args: argparse.Namespace) -> dict:
    from lib.training import train, train_from_scratch

    config = config_from_args(args)
    scheduler = scheduler_of(args)
    if scheduler:
        from lib.cli.jobs import submit_and_follow
        from lib.jobs.tasks import scratch_spec, train_spec

        spec = (scratch_spec if args.scratch else train_spec)(config, owner="cli")
        return run_summary(submit_and_follow(spec, scheduler, args.out, ProgressBar()))
    callbacks = progress_callbacks()
    start = time.perf_counter()
    if args.scratch:
        result = train_from_scratch(config, run_dir=args.out, callbacks=callbacks)
    else:
        result = train(config, run_dir=args.out, callbacks=callbacks)
    return train_summary(result, start)


def fine_tune_command(args: argparse.Namespace) -> dict:
    """Fine-tunes a saved run into a new run folder (the saved run is left as it was)."""
    from lib.training import fine_tune, load_train_result
    from lib.training.config import check_fine_tune_settings

    check_fine_tune_settings(args.epochs, args.lr_factor)  # before loading anything
    scheduler = scheduler_of(args)
    if scheduler:
        from lib.cli.jobs import submit_and_follow
        from lib.jobs.tasks import finetune_spec
        from lib.runs import read_config, read_history

        config = read_config(args.run)
        if not config:
            raise TransferLabError(f"{args.run} is not a TransferLab run (no readable config.json).")
        if args.unfreeze is not None or args.unfreeze_from is not None:
            raise TransferLabError("On a scheduler, fine-tuning unfreezes whole blocks: use "
                                   "--unfreeze-blocks instead of --unfreeze/--unfreeze-from.")
        blocks = args.unfreeze_blocks or int(config.get("unfreeze_blocks") or DEFAULTS.unfreeze_blocks)
        spec = finetune_spec(Path(args.run).resolve(), epochs=args.epochs, unfreeze_blocks=blocks,
                             lr_factor=args.lr_factor, epoch_offset=len(read_history(args.run)),
                             owner="cli")
        return run_summary(submit_and_follow(spec, scheduler, args.out, ProgressBar()))
    start = time.perf_counter()
    callbacks = progress_callbacks()
    result = load_train_result(args.run, callbacks=callbacks)
    tuned = fine_tune(result, epochs=args.epochs, unfreeze=args.unfreeze,
                      unfreeze_from=args.unfreeze_from, unfreeze_blocks=args.unfreeze_blocks,
                      lr_factor=args.lr_factor,
                      callbacks=callbacks, new_run=True, run_dir=args.out)
    return train_summary(tuned, start)


def evaluate_command(args: argparse.Namespace) -> dict:
    from lib.data.sources import load_dataset
    from lib.evaluate import check_class_names, evaluate_model
    from lib.runs import load_trained_model

    model, labels = load_trained_model(args.run)
    dataset = load_dataset(args.data)
    check_class_names(labels, dataset.class_names, dataset.name)
    report = evaluate_model(model, dataset.records, labels, batch_size=args.batch_size)
    return {key: report[key] for key in ("accuracy", "n", "classes", "confusion", "per_class")}


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.2, got {text!r}") from None


def add_scheduler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", default=None,
                        help="run as a job on a Dask scheduler (tcp://HOST:PORT) or a local "
                             "cluster ('local'); default: TRANSFERLAB_SCHEDULER, else in this "
                             "process")


def register(subparsers) -> None:
    d = DEFAULTS
    p = subparsers.add_parser("train", help="train a head on a frozen backbone, then fine-tune")
    p.add_argument("--data", required=True, help="folder of class folders, .zip, or builtin:NAME")
    p.add_argument("--backbone", default=d.backbone, help="registry name (default %(default)s)")
    p.add_argument("--out", default=None, help="new run folder (default: a new folder under the runs dir)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="frozen-phase epochs (default %(default)s)")
    p.add_argument("--fine-tune-epochs", type=int, default=d.fine_tune_epochs,
                   help="fine-tuning epochs (default %(default)s: none)")
    p.add_argument("--unfreeze-blocks", type=int, default=d.unfreeze_blocks,
                   help="top body blocks to unfreeze (default %(default)s)")
    p.add_argument("--unfreeze", type=int, default=d.unfreeze,
                   help="top body layers to unfreeze instead of blocks")
    p.add_argument("--unfreeze-from", default=d.unfreeze_from, help="unfreeze from this layer up instead")
    p.add_argument("--fine-tune-lr-factor", type=float, default=d.fine_tune_lr_factor,
                   help="the body's peak fine-tuning rate = --lr x this (default %(default)s)")
    p.add_argument("--fine-tune-head-lr-factor", type=float, default=d.fine_tune_head_lr_factor,
                   help="the head's fine-tuning rate = the body's x this (default %(default)s)")
    p.add_argument("--fine-tune-warmup-epochs", type=int, default=d.fine_tune_warmup_epochs,
                   help="warm-up epochs before the cosine decay (default %(default)s)")
    p.add_argument("--fine-tune-augment-copies", type=int, default=d.fine_tune_augment_copies,
                   help="augmented copies per training image for fine-tuning; 0 = none "
                        "(default %(default)s)")
    p.add_argument("--val-split", type=_fraction, default=d.val_split,
                   help="validation fraction (default %(default)s)")
    p.add_argument("--test-split", type=_fraction, default=d.test_split,
                   help="test fraction (default %(default)s)")
    p.add_argument("--augment", action="store_true", help="flip/rotate/zoom/shift/contrast augmentation")
    p.add_argument("--seed", type=int, default=d.seed, help="split, init and order seed (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, default=d.learning_rate,
                   help="frozen-phase learning rate (default %(default)s)")
    p.add_argument("--optimizer", default=d.optimizer, help="adam, sgd or rmsprop (default %(default)s)")
    p.add_argument("--cut", default=d.cut, help="cut point (default: the top feature layer)")
    p.add_argument("--hidden", type=int, default=d.head.hidden_units,
                   help="hidden Dense units in the head (default %(default)s)")
    p.add_argument("--dropout", type=float, default=d.head.dropout, help="head dropout (default %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="default %(default)s")
    p.add_argument("--patience", type=int, default=d.early_stopping_patience or 0,
                   help="early-stopping patience; 0 = off (default %(default)s)")
    p.add_argument("--no-feature-cache", action="store_true", help="run the body on every batch")
    p.add_argument("--scratch", action="store_true",
                   help="the from-scratch baseline: same architecture, random init, all trainable")
    add_scheduler_argument(p)
    p.set_defaults(handler=train_command)

    p = subparsers.add_parser("fine-tune", help="fine-tune a saved run's top layers into a new run")
    p.add_argument("--run", required=True, help="a run folder written by `train`")
    p.add_argument("--epochs", type=int, required=True, help="fine-tuning epochs")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--unfreeze-blocks", type=int, default=None,
                       help=f"top body blocks to unfreeze (default: the run's, else {d.unfreeze_blocks})")
    which.add_argument("--unfreeze", type=int, default=d.unfreeze,
                       help="top body layers to unfreeze instead of blocks")
    which.add_argument("--unfreeze-from", default=None, help="unfreeze from this layer up instead")
    p.add_argument("--lr-factor", type=float, default=d.fine_tune_lr_factor,
                   help="peak rate = the run's learning rate x this (default %(default)s)")
    p.add_argument("--out", default=None,
                   help="new run folder (default: a new folder under the runs dir)")
    add_scheduler_argument(p)
    p.set_defaults(handler=fine_tune_command)

    p = subparsers.add_parser("evaluate", help="accuracy and confusion matrix of a run on a dataset")
    p.add_argument("--run", required=True, help="a run folder written by `train`")
    p.add_argument("--data", required=True, help="folder of class folders (same classes as the run)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.set_defaults(handler=evaluate_command)

