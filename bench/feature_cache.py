"""Per-epoch head training on cached features against the plain frozen recipe, on cats_vs_dogs.

Both sides train the same head (GAP -> Dropout 0.2 -> Dense 2) on the same frozen Lite0 body, the
same seeded 80/20 split (1600 train / 400 val) and batch size 32, with validation every epoch:

* plain recipe (the seed lessons'): `model.fit` of body + head on the `tf.data` pipeline
  (`make_dataset`, cached decoded images, shuffled), so the frozen body runs on every batch of
  every epoch. Its first epoch also decodes the images, so the per-epoch time is the second one;
* TransferLab: `lib.training.train` with the feature cache, cold (empty cache): one extraction
  pass, then epochs on the stored features, with all the machinery (callbacks, early-stopping
  bookkeeping, checkpoints, history, TensorBoard summaries). The per-epoch time is the median of
  the recorded epoch times;
* for reference, a bare `model.fit` of the head on in-memory features.

Reports the per-epoch speed-up (target >= 200x) and the break-even epoch count once the one-off
extraction is included: the smallest n with extraction + n x fast <= n x plain.

Writes bench/results/feature_cache.json. `--smoke` runs on `builtin:faces` (200 small images)
with 1 plain and 3 cached epochs.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

DATASETS_NEEDED = ("cats_vs_dogs",)
DATA = str(common.DATASETS / "cats_vs_dogs")
SMOKE_DATA = "builtin:faces"
PLAIN_EPOCHS = 2
FAST_EPOCHS = 20
BATCH = 32
TARGET = 200.0


class EpochTimer:
    """Wall time of each epoch of a `model.fit`."""

    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.start = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):
                self.seconds.append(time.perf_counter() - cb.start)
                self.val_accuracy.append(float(logs.get("val_accuracy", math.nan)))

        self.seconds: list[float] = []
        self.val_accuracy: list[float] = []
        self.callback = _Timer()


def plain_recipe(backbone, split, num_classes: int, epochs: int = PLAIN_EPOCHS) -> dict:
    """`model.fit` of body + head on the tf.data pipeline: the body runs every batch."""
    import keras

    from lib.data.pipeline import make_dataset
    from lib.models import HeadConfig, build_body, build_classifier, build_head
    from lib.training import TrainConfig, compile_model

    size = backbone.spec.input_size
    body = build_body(backbone)
    model = build_classifier(body, build_head(body.output.shape[1:], num_classes, HeadConfig()), size)
    compile_model(model, TrainConfig(), 1e-3, from_logits=False)  # the classifier ends in softmax
    train = make_dataset(split.train, num_classes, size, BATCH, shuffle=True, seed=0)
    val = make_dataset(split.val, num_classes, size, BATCH)
    timer = EpochTimer()
    model.fit(train, validation_data=val, epochs=epochs, callbacks=[timer.callback], verbose=0)
    keras.backend.clear_session()
    return {"epoch_seconds": timer.seconds, "val_accuracy": timer.val_accuracy,
            "per_epoch_s": timer.seconds[-1]}


def transferlab_fast_path(backbone, index, data: str = DATA, epochs: int = FAST_EPOCHS) -> dict:
    """`lib.training.train` with the feature cache, from a cold cache."""
    from lib.training import TrainConfig, train

    config = TrainConfig(data=data, val_split=0.2, test_split=0.0, epochs=epochs,
                         batch_size=BATCH, early_stopping_patience=None)
    start = time.perf_counter()
    result = train(config, backbone=backbone, dataset=index)
    wall = time.perf_counter() - start
    history = result.history
    return {
        "extract_s": result.metrics["feature_cache"]["seconds"],
        "epoch_seconds": history["seconds"].round(5).tolist(),
        "per_epoch_s": float(history["seconds"].iloc[1:].median()),  # epoch 1 traces the graphs
        "first_epoch_s": float(history["seconds"].iloc[0]),
        "wall_s": wall,
        "val_accuracy": result.metrics["val_accuracy"],
        "features_file": result.metrics["feature_cache"]["path"],
    }


def bare_fit_on_features(path: str, split, num_classes: int) -> dict:
    """The floor: `model.fit` of the head on in-memory features, no machinery."""
    import keras
    import numpy as np

    from lib.models import build_head
    from lib.training import TrainConfig, compile_model, one_hot

    with np.load(path) as data:
        row = {s: i for i, s in enumerate(data["sha1"])}
        features = data["features"]
    x = features[[row[r.sha1] for r in split.train]]
    xv = features[[row[r.sha1] for r in split.val]]
    y, yv = one_hot(split.train, num_classes), one_hot(split.val, num_classes)
    head = build_head(x.shape[1:], num_classes)
    compile_model(head, TrainConfig(), 1e-3)
    timer = EpochTimer()
    head.fit(x, y, validation_data=(xv, yv), batch_size=BATCH, epochs=6, callbacks=[timer.callback],
             verbose=0)
    keras.backend.clear_session()
    return {"per_epoch_s": float(np.median(timer.seconds[1:]))}


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    data, plain_epochs, fast_epochs = ((SMOKE_DATA, 1, 3) if args.smoke
                                       else (DATA, PLAIN_EPOCHS, FAST_EPOCHS))
    reason = None if args.smoke else common.missing_datasets(*DATASETS_NEEDED)
    if reason:
        return common.skip(reason)
    # A private cache: the extraction is measured cold, and nothing of the user's cache is touched.
    common.prepare(private_cache=True)
    from lib.backbones import load_backbone
    from lib.data.sources import load_dataset
    from lib.data.split import split_dataset

    backbone = load_backbone("efficientnet_lite0")
    index = load_dataset(data)
    split = split_dataset(index, val_fraction=0.2, test_fraction=0.0, seed=0)
    fast = transferlab_fast_path(backbone, index, data, fast_epochs)
    bare = bare_fit_on_features(fast["features_file"], split, index.num_classes)
    plain = plain_recipe(backbone, split, index.num_classes, plain_epochs)
    speedup = plain["per_epoch_s"] / fast["per_epoch_s"]
    gain = plain["per_epoch_s"] - fast["per_epoch_s"]
    break_even = math.ceil(fast["extract_s"] / gain) if gain > 0 else None
    rows = [
        ("plain recipe (body every batch)", plain["per_epoch_s"], 1.0),
        ("TransferLab feature cache", fast["per_epoch_s"], speedup),
        ("bare fit on in-memory features", bare["per_epoch_s"], plain["per_epoch_s"] / bare["per_epoch_s"]),
    ]
    print(f"{Path(data).name}: {len(split.train)} train / {len(split.val)} val images, Lite0, batch {BATCH}")
    print(f"{'path':<34} {'s/epoch':>9} {'speed-up':>9}")
    for name, seconds, ratio in rows:
        print(f"{name:<34} {seconds:>9.4f} {ratio:>8.0f}x")
    print(f"one-off extraction: {fast['extract_s']:.1f} s; break-even after {break_even} epoch(s)")
    print(f"val accuracy: feature cache {fast['val_accuracy']:.4f} ({fast_epochs} epochs), "
          f"plain {plain['val_accuracy'][-1]:.4f} ({plain_epochs} epochs)")
    result = {
        "summary": {"speedup_per_epoch": round(speedup, 1), "break_even_epochs": break_even,
                    "plain_s_per_epoch": round(plain["per_epoch_s"], 3),
                    "cached_s_per_epoch": round(fast["per_epoch_s"], 4),
                    "extract_s": round(fast["extract_s"], 1)},
        "target": f">= {TARGET:.0f}x per epoch",
        "passed": speedup >= TARGET,
        "plain": plain, "transferlab": fast, "bare": bare,
        "n_train": len(split.train), "n_val": len(split.val), "machine": common.machine(),
    }
    common.write_results("feature_cache", result, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
