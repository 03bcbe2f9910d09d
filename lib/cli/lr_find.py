"""`lr-find`: the learning-rate finder (the Fine-tune page's "Find a learning rate" button).

Prints JSON: the phase, the swept rates, the smoothed losses and the suggested rate.
"""

from __future__ import annotations

import argparse

from lib.errors import TransferLabError
from lib.training.config import LR_FIND_END, LR_FIND_START, LR_FIND_STEPS, TrainConfig

DEFAULTS = TrainConfig()


def lr_find_command(args: argparse.Namespace) -> dict:
    """Sweeps the frozen head's rate on `--data`, or the fine-tuning rate of `--run`."""
    from lib.cli.train import progress_callbacks
    from lib.training.lr_find import find_learning_rate

    callbacks = progress_callbacks()
    if args.run:
        from lib.training import load_train_result

        result = load_train_result(args.run, callbacks=callbacks)
        for flag, given, saved in (("--data", args.data, result.config.data),
                                   ("--backbone", args.backbone, result.config.backbone)):
            if given is not None and given != saved:
                raise TransferLabError(f"Received `{flag} {given}`, but the run {args.run} used {saved}.")
        config = result.config
        if args.unfreeze_blocks is not None:
            from dataclasses import replace

            config = replace(config, unfreeze=None, unfreeze_from=None,
                             unfreeze_blocks=args.unfreeze_blocks)
        finding = find_learning_rate(config, result=result, start=args.start, end=args.end,
                                     steps=args.steps, callbacks=callbacks)
    else:
        if args.data is None:
            raise TransferLabError("Give `--data` (the frozen head's rate) or `--run` (a fine-tuning rate).")
        config = TrainConfig(data=args.data, backbone=args.backbone or DEFAULTS.backbone,
                             batch_size=args.batch_size, seed=args.seed)
        finding = find_learning_rate(config, start=args.start, end=args.end, steps=args.steps,
                                     callbacks=callbacks)
    return finding.to_dict()


def register(subparsers) -> None:
    p = subparsers.add_parser("lr-find", help="sweep the learning rate and suggest one (fastai's lr_find)")
    p.add_argument("--data", default=None, help="folder of class folders, .zip, or builtin:NAME")
    p.add_argument("--backbone", default=None,
                   help=f"registry name (default {DEFAULTS.backbone}, or the run's)")
    p.add_argument("--run", default=None,
                   help="a run folder: find its fine-tuning rate (default: the frozen head's rate)")
    p.add_argument("--unfreeze-blocks", type=int, default=None,
                   help="with --run: top blocks to unfreeze (default: the run's setting)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="default %(default)s")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="default %(default)s")
    p.add_argument("--start", type=float, default=LR_FIND_START, help="first rate (default %(default)g)")
    p.add_argument("--end", type=float, default=LR_FIND_END, help="last rate (default %(default)g)")
    p.add_argument("--steps", type=int, default=LR_FIND_STEPS,
                   help="rates to try, one batch each (default %(default)s)")
    p.set_defaults(handler=lr_find_command)
