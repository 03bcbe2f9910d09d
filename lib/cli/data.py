"""`data`: the data report the Data page shows, as JSON."""

from __future__ import annotations

import argparse
import sys

from lib.data.sources import TFDS_PREFIX, load_dataset
from lib.data.split import split_dataset


def print_scan_progress(done: int, total: int, message: str) -> None:
    """A one-line progress counter on stderr while a big folder is scanned."""
    print(f"\r{message} {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def data_command(args: argparse.Namespace) -> dict:
    if args.data.startswith(TFDS_PREFIX):
        from lib.cli import import_tensorflow_quietly

        import_tensorflow_quietly(args.debug)
    index = load_dataset(args.data, on_progress=print_scan_progress)
    split = split_dataset(index, val_fraction=args.val_split, test_fraction=args.test_split, seed=args.seed)
    return {
        "name": index.name,
        "classes": list(index.class_names),
        "fingerprint": index.fingerprint(),
        "summary": index.report.summary(),
        "report": index.report.to_dict(),
        "split": split.counts(index.class_names),
        "cross_split_duplicates": [list(pair) for pair in index.report.cross_split_duplicates(split)],
    }


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="scan a dataset and print its report and split")
    p.add_argument("--data", required=True, help="folder, .zip, builtin:NAME or tfds:NAME")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction (default 0.2)")
    p.add_argument("--test-split", type=float, default=0.1, help="test fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    # A `tfds:` source needs TensorFlow; `data_command` imports it then (quietly).
    p.set_defaults(handler=data_command, needs_tensorflow=False)
