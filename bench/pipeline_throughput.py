"""Images/s through TransferLab's input pipeline + Lite0 against `model.predict` on in-memory pixels.

Both sides run the same Lite0 classifier over the same images from ../shared/datasets/cats_vs_dogs:

* pipeline: `lib.data.pipeline.make_dataset` (read, decode, centre-crop, resize; first epoch, so no
  cache) fed to `model.predict` (preprocessing + forward, as training and evaluation do);
* in memory: the same pixels, decoded beforehand by `load_arrays`, fed to `model.predict`.

Target: pipeline / in-memory >= 0.9 (the pipeline must not starve the model). The scan also varies
the decode parallelism and the batch size, to find what suits this machine. Each pair is measured
back to back, three times, keeping the best run of each, because the machine is shared.

Writes bench/results/pipeline_throughput.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "cats_vs_dogs"
RESULTS = ROOT / "bench" / "results" / "pipeline_throughput.json"
N_IMAGES = 192
BATCHES = (16, 32, 64)
REPEATS = 3
TARGET = 0.9


def machine() -> dict:
    import tensorflow as tf

    from lib.zoo import machine_fingerprint

    fp = machine_fingerprint()
    return {"device": fp["device"], "tensorflow": tf.__version__, "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


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


def main() -> int:
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return 0
    import tensorflow as tf

    from lib.backbones import load_backbone
    from lib.data.pipeline import load_arrays

    records, num_classes = balanced_records(N_IMAGES)
    model = load_backbone("efficientnet_lite0").model
    images, _ = load_arrays(records, num_classes, 224)  # also warms the OS file cache
    model.predict(images[:64], batch_size=32, verbose=0)  # trace once
    settings = [(b, p) for b in BATCHES for p in (1, 2, tf.data.AUTOTUNE)]
    rows = []
    for batch, parallel in settings:
        best_pipe, best_mem = 0.0, 0.0
        for _ in range(REPEATS):
            best_mem = max(best_mem, time_in_memory(model, images, batch))
            best_pipe = max(best_pipe, time_pipeline(model, records, num_classes, batch, parallel))
        rows.append({
            "batch": batch,
            "decode_parallel": "AUTOTUNE" if parallel == tf.data.AUTOTUNE else parallel,
            "pipeline_ips": round(best_pipe, 1),
            "in_memory_ips": round(best_mem, 1),
            "ratio": round(best_pipe / best_mem, 3),
        })
    best = max(rows, key=lambda r: (r["ratio"] >= TARGET, r["pipeline_ips"]))
    default = next(r for r in rows if r["batch"] == 32 and r["decode_parallel"] == "AUTOTUNE")
    print(f"{'batch':>5} {'decode':>9} {'pipeline img/s':>15} {'in-memory img/s':>16} {'ratio':>6}")
    for r in rows:
        print(f"{r['batch']:>5} {r['decode_parallel']!s:>9} {r['pipeline_ips']:>15} {r['in_memory_ips']:>16} {r['ratio']:>6}")
    print(f"default (batch 32, AUTOTUNE): ratio {default['ratio']} (target >= {TARGET})")
    print(f"best: batch {best['batch']}, decode_parallel {best['decode_parallel']}: "
          f"{best['pipeline_ips']} img/s, ratio {best['ratio']}")
    result = {
        "name": "pipeline_throughput",
        "machine": machine(),
        "images": len(records),
        "cpu_threads": os.cpu_count(),
        "rows": rows,
        "summary": {"ratio_default_b32_autotune": default["ratio"], "best_ratio": best["ratio"],
                    "best_setting": f"batch {best['batch']}, decode {best['decode_parallel']}",
                    "best_pipeline_ips": best["pipeline_ips"]},
        "target": f"ratio >= {TARGET}",
        "passed": default["ratio"] >= TARGET,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
