"""Transfer learning against training from scratch on the built-in set, with the same budget.

`builtin:faces` (200 real 25x25 grey photos: faces vs not-faces), seeded 80/20 split, EfficientNet-
Lite0 architecture, Adam 1e-3, batch 32, the same number of epochs and no early stopping:

* transfer: ImageNet weights, frozen body, a fresh head (`lib.training.train`);
* scratch: the same architecture from random weights, every layer trainable
  (`lib.training.train_from_scratch`).

Prints the validation accuracy per epoch of both and the best of each; the README quotes it.
Writes bench/results/transfer_vs_scratch.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TRANSFERLAB_CACHE"] = tempfile.mkdtemp(prefix="transferlab-bench-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = ROOT / "bench" / "results" / "transfer_vs_scratch.json"
DATA = "builtin:faces"
EPOCHS = 10


def machine() -> dict:
    import tensorflow as tf

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "tensorflow": tf.__version__, "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def main() -> int:
    from lib.backbones import load_backbone
    from lib.data.sources import load_dataset
    from lib.training import TrainConfig, train, train_from_scratch

    backbone = load_backbone("efficientnet_lite0")
    index = load_dataset(DATA)
    config = TrainConfig(data=DATA, val_split=0.2, test_split=0.0, epochs=EPOCHS,
                         early_stopping_patience=None)
    start = time.perf_counter()
    transfer = train(config, backbone=backbone, dataset=index)
    transfer_s = time.perf_counter() - start
    start = time.perf_counter()
    scratch = train_from_scratch(config, dataset=index)
    scratch_s = time.perf_counter() - start
    t_acc = transfer.history["val_accuracy"].tolist()
    s_acc = scratch.history["val_accuracy"].tolist()
    print(f"{DATA}: {len(transfer.split.train)} train / {len(transfer.split.val)} val images, "
          f"Lite0, {EPOCHS} epochs each")
    print(f"{'epoch':>5} {'transfer':>9} {'scratch':>8}")
    for epoch, (t, s) in enumerate(zip(t_acc, s_acc, strict=False), start=1):
        print(f"{epoch:>5} {t:>9.3f} {s:>8.3f}")
    best_t, best_s = max(t_acc), max(s_acc)
    print(f"best val accuracy: transfer {best_t:.3f} ({transfer_s:.0f} s with feature extraction), "
          f"scratch {best_s:.3f} ({scratch_s:.0f} s); first epoch {t_acc[0]:.3f} vs {s_acc[0]:.3f}")
    result = {
        "summary": {"transfer_best_val_accuracy": round(best_t, 4),
                    "scratch_best_val_accuracy": round(best_s, 4),
                    "transfer_epoch1": round(t_acc[0], 4), "scratch_epoch1": round(s_acc[0], 4),
                    "transfer_s": round(transfer_s, 1), "scratch_s": round(scratch_s, 1)},
        "target": "transfer beats scratch",
        "passed": best_t > best_s,
        "transfer_val_accuracy": t_acc, "scratch_val_accuracy": s_acc,
        "transfer_val_loss": transfer.history["val_loss"].tolist(),
        "scratch_val_loss": scratch.history["val_loss"].tolist(),
        "n_train": len(transfer.split.train), "n_val": len(transfer.split.val),
        "epochs": EPOCHS, "machine": machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
