"""Transfer learning against training from scratch on a built-in set, with the same budget.

`--data builtin:faces` (the default: 200 real 25x25 grey photos, faces vs not-faces) or
`--data builtin:digits` (1,000 MNIST digits, 10 classes of 100), seeded splits, EfficientNet-
Lite0 architecture, Adam 1e-3, batch 32, the same number of epochs and no early stopping:

* transfer: ImageNet weights, frozen body, a fresh head (`lib.training.train`);
* scratch: the same architecture from random weights, every layer trainable
  (`lib.training.train_from_scratch`).

Two regimes: the default 80/20 split, and 10 training images per class (the small-data case where
transfer matters most; both sets have 100 images per class, so a 0.9 validation share leaves 10).
`--small`: that regime only (full epochs). Prints the validation accuracy per epoch of both and the best of each, with
wall times; the README quotes it.
Writes bench/results/transfer_vs_scratch.json (`transfer_vs_scratch_digits.json` for digits). `--smoke`: the small regime only, 1 epoch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

DATA = "builtin:faces"
EPOCHS = 10
# The default split leaves 160 training images; face vs not-face is then easy enough that a network
# trained from scratch also gets there (just ~25x slower). With 10 images per class it cannot.
REGIMES = {"default 80/20 split": 0.2, "10 training images per class": 0.9}
SMOKE_REGIME = "10 training images per class"


def compare(backbone, index, val_split: float, epochs: int = EPOCHS, data: str = DATA) -> dict:
    """Trains transfer and scratch on one split; returns their curves and wall times."""
    from lib.training import TrainConfig, train, train_from_scratch

    config = TrainConfig(data=data, val_split=val_split, test_split=0.0, epochs=epochs,
                         early_stopping_patience=None)
    start = time.perf_counter()
    transfer = train(config, backbone=backbone, dataset=index)
    transfer_s = time.perf_counter() - start
    start = time.perf_counter()
    scratch = train_from_scratch(config, dataset=index)
    scratch_s = time.perf_counter() - start
    t_acc = transfer.history["val_accuracy"].tolist()
    s_acc = scratch.history["val_accuracy"].tolist()
    return {
        "val_split": val_split, "n_train": len(transfer.split.train), "n_val": len(transfer.split.val),
        "transfer_val_accuracy": t_acc, "scratch_val_accuracy": s_acc,
        "transfer_val_loss": transfer.history["val_loss"].tolist(),
        "scratch_val_loss": scratch.history["val_loss"].tolist(),
        "transfer_final": round(t_acc[-1], 4), "scratch_final": round(s_acc[-1], 4),
        "transfer_best": round(max(t_acc), 4), "scratch_best": round(max(s_acc), 4),
        "transfer_s": round(transfer_s, 1), "scratch_s": round(scratch_s, 1),
        "transfer_beats_scratch": max(t_acc) > max(s_acc),
    }


def print_regime(name: str, row: dict, epochs: int = EPOCHS) -> None:
    print(f"{name}: {row['n_train']} train / {row['n_val']} val images, Lite0, {epochs} epochs each")
    print(f"{'epoch':>5} {'transfer':>9} {'scratch':>8}")
    pairs = zip(row["transfer_val_accuracy"], row["scratch_val_accuracy"], strict=False)
    for epoch, (t, s) in enumerate(pairs, start=1):
        print(f"{epoch:>5} {t:>9.3f} {s:>8.3f}")
    print(f"best: transfer {row['transfer_best']:.3f} in {row['transfer_s']:.0f} s (with feature "
          f"extraction), scratch {row['scratch_best']:.3f} in {row['scratch_s']:.0f} s; "
          f"time ratio {row['scratch_s'] / max(row['transfer_s'], 1e-9):.0f}x\n")


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help=f"a built-in set (default {DATA})")
    parser.add_argument("--small", action="store_true",
                        help=f"only the regime '{SMOKE_REGIME}', with the full epochs")
    args = parser.parse_args(argv)
    common.prepare(private_cache=True)
    from lib.backbones import load_backbone
    from lib.data.sources import load_dataset

    epochs = 1 if args.smoke else EPOCHS
    chosen = {SMOKE_REGIME: REGIMES[SMOKE_REGIME]} if args.smoke or args.small else REGIMES
    backbone = load_backbone("efficientnet_lite0")
    index = load_dataset(args.data)
    regimes = {name: compare(backbone, index, split, epochs, args.data)
               for name, split in chosen.items()}
    for name, row in regimes.items():
        print_regime(f"{args.data}, {name}", row, epochs)
    result = {
        "summary": {f"{name}: {key}": row[key] for name, row in regimes.items()
                    for key in ("transfer_best", "scratch_best", "transfer_s", "scratch_s")},
        "target": "transfer beats scratch (best val accuracy), per regime",
        "passed": {name: row["transfer_beats_scratch"] for name, row in regimes.items()},
        "regimes": regimes, "epochs": epochs, "data": args.data, "machine": common.machine(),
    }
    suffix = "" if args.data == DATA else "_" + args.data.split(":")[-1]
    common.write_results(f"transfer_vs_scratch{suffix}", result, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
