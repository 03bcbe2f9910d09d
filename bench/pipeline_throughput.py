"""Images/s through TransferLab's input pipeline + Lite0 against `model.predict` on in-memory pixels.

Both sides run the same Lite0 classifier over the same images from ../shared/datasets/cats_vs_dogs:

* pipeline: `lib.data.pipeline.make_dataset` (read, decode, centre-crop, resize; first epoch, so no
  cache) fed to `model.predict` (preprocessing + forward, as training and evaluation do);
* in memory: the same pixels, decoded beforehand by `load_arrays`, fed to `model.predict`.

Target: pipeline / in-memory >= 0.9 (the pipeline must not starve the model). The scan also varies
the decode parallelism and the batch size, to find what suits this machine. Each pair is measured
four rounds, each round
measuring every setting, keeping the best of each, because the machine is shared. A third column,
forward-only (`predict_on_batch` on ready batches), is the model's own ceiling.

Writes bench/results/pipeline_throughput.json. `--smoke`: 32 images, batch 16, decode 1, one round.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

DATASETS_NEEDED = ("cats_vs_dogs",)
DATA = common.DATASETS / "cats_vs_dogs"
N_IMAGES = 192
BATCHES = (16, 32, 64)
REPEATS = 4
TARGET = 0.9


def balanced_records(n: int):
    from lib.data.sources import load_folder

    index = load_folder(DATA)
    by_class = index.records_by_class()
    per_class = n // len(by_class)
    records = [r for rs in by_class.values() for r in rs[:per_class]]
    return records, index.num_classes


def time_pipeline(model, records, num_classes: int, batch: int, parallel) -> float:
    from lib.data import pipeline

    pipeline.DECODE_PARALLEL = parallel  # read at dataset build time
    dataset = pipeline.make_dataset(records, num_classes, 224, batch, cache=False)
    images_only = dataset.map(lambda x, y: x)
    start = time.perf_counter()
    model.predict(images_only, verbose=0)
    return len(records) / (time.perf_counter() - start)


def time_in_memory(model, images, batch: int) -> float:
    start = time.perf_counter()
    model.predict(images, batch_size=batch, verbose=0)
    return len(images) / (time.perf_counter() - start)


def time_forward(model, images, batch: int) -> float:
    """The model alone: `predict_on_batch` over ready-made batches (no data adapter, no decode)."""
    batches = [images[i:i + batch] for i in range(0, len(images), batch)]
    model.predict_on_batch(batches[0])
    start = time.perf_counter()
    for x in batches:
        model.predict_on_batch(x)
    return len(images) / (time.perf_counter() - start)


def parse_args(argv: list[str] | None):
    parser = common.parser("Input pipeline vs in-memory predict, Lite0.")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="e.g. 16,32,64")
    parser.add_argument("--decode", default="1,2,AUTOTUNE", help="decode parallelism values to scan")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="rounds; the best of each is kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.batches, args.decode, args.repeats = "16", "1", 1
    reason = common.missing_datasets(*DATASETS_NEEDED)
    if reason:
        return common.skip(reason)
    common.prepare()
    import tensorflow as tf

    from lib.backbones import load_backbone
    from lib.data.pipeline import load_arrays

    records, num_classes = balanced_records(32 if args.smoke else N_IMAGES)
    model = load_backbone("efficientnet_lite0").model
    images, _ = load_arrays(records, num_classes, 224)  # also warms the OS file cache
    model.predict(images[:64], batch_size=32, verbose=0)  # trace once
    batches = [int(b) for b in args.batches.split(",")]
    decodes = [tf.data.AUTOTUNE if d.strip().upper() == "AUTOTUNE" else int(d) for d in args.decode.split(",")]
    settings = [(b, p) for b in batches for p in decodes]
    pipe = {s: 0.0 for s in settings}
    mem = {b: 0.0 for b in batches}
    forward = {b: 0.0 for b in batches}
    # Repeats outermost, so a burst of load from other processes hits every setting alike.
    for _ in range(args.repeats):
        for batch in batches:
            mem[batch] = max(mem[batch], time_in_memory(model, images, batch))
            forward[batch] = max(forward[batch], time_forward(model, images, batch))
        for batch, parallel in settings:
            pipe[(batch, parallel)] = max(pipe[(batch, parallel)],
                                          time_pipeline(model, records, num_classes, batch, parallel))
    rows = []
    for batch, parallel in settings:
        rows.append({
            "batch": batch,
            "decode_parallel": "AUTOTUNE" if parallel == tf.data.AUTOTUNE else parallel,
            "pipeline_ips": round(pipe[(batch, parallel)], 1),
            "in_memory_ips": round(mem[batch], 1),
            "forward_only_ips": round(forward[batch], 1),
            "ratio": round(pipe[(batch, parallel)] / mem[batch], 3),
            "ratio_vs_forward_only": round(pipe[(batch, parallel)] / forward[batch], 3),
        })
    best = max(rows, key=lambda r: (r["ratio"] >= TARGET, r["pipeline_ips"]))
    default = next((r for r in rows if r["batch"] == 32 and r["decode_parallel"] == "AUTOTUNE"), rows[0])
    print(f"{'batch':>5} {'decode':>9} {'pipeline img/s':>15} {'predict(mem) img/s':>19} {'ratio':>6} "
          f"{'forward-only img/s':>19} {'ratio':>6}")
    for r in rows:
        print(f"{r['batch']:>5} {r['decode_parallel']!s:>9} {r['pipeline_ips']:>15} {r['in_memory_ips']:>19} "
              f"{r['ratio']:>6} {r['forward_only_ips']:>19} {r['ratio_vs_forward_only']:>6}")
    print(f"default (batch {default['batch']}, {default['decode_parallel']}): ratio {default['ratio']} (target >= {TARGET})")
    print(f"best: batch {best['batch']}, decode_parallel {best['decode_parallel']}: "
          f"{best['pipeline_ips']} img/s, ratio {best['ratio']}")
    result = {
        "name": "pipeline_throughput",
        "machine": common.machine(),
        "images": len(records),
        "cpu_threads": os.cpu_count(),
        "rows": rows,
        "repeats": args.repeats,
        "summary": {"ratio_default_b32_autotune": default["ratio"],
                    "ratio_vs_forward_only_b32_autotune": default["ratio_vs_forward_only"],
                    "best_ratio": best["ratio"],
                    "best_setting": f"batch {best['batch']}, decode {best['decode_parallel']}",
                    "best_pipeline_ips": best["pipeline_ips"]},
        "target": f"ratio >= {TARGET}",
        "passed": default["ratio"] >= TARGET,
    }
    common.write_results("pipeline_throughput", result, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
