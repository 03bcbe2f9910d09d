"""Frozen-layer inference: today's TensorFlow path against LiteRT + XNNPACK (issue 8).

On `../shared/datasets/cats_vs_dogs` with EfficientNet-Lite0 (224 px, pooled top features):

1. End-to-end extraction (decode + resize + forward, `lib.features.extract_features`), the
   TensorFlow engine against the LiteRT engine, interleaved in rounds (the order alternates), so a
   noisy shared machine slows both alike. Wall time and CPU time per image, and the ratio.
2. The forward pass alone on 32 decoded real photos, per engine, in CPU ms per image (each timed
   call after a short pause, so neither engine is charged the other's spinning threads), against the
   machine's 1-core matmul peak measured in the same run (a 2048² float32 matmul in a subprocess
   with one BLAS thread): share of peak = (2 x MACs per image) / CPU time / peak FLOP/s.
3. Features agree: the largest difference between the engines, relative to the largest feature.
4. With `--train`: a frozen `train` on the same data with each engine (cold feature cache each;
   the LiteRT conversion, timed once as `conversion_s_cold`, already cached), wall time and
   held-out accuracy.

Targets: extraction >= 2.5x faster end to end; the LiteRT forward >= 60% of the 1-core peak.
`--smoke` runs everything on a few images in about a minute (numbers then mean little).
Writes bench/results/inference_engines.json (or inference_engines_smoke.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import machine  # noqa: E402

# A private cache: conversion and extraction are measured cold; the user's cache is not touched.
os.environ["TRANSFERLAB_CACHE"] = tempfile.mkdtemp(prefix="transferlab-bench-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.pop("TRANSFERLAB_ENGINE", None)

DATA = ROOT.parent / "shared" / "datasets" / "cats_vs_dogs"
RESULTS = ROOT / "bench" / "results"
BACKBONE = "efficientnet_lite0"
FORWARD_BATCH = 32
MATMUL_N = 2048
# Pause before each timed forward call: TensorFlow's and XNNPACK's worker threads spin for a
# while after their work ends, and process CPU time would charge that spin to the other engine's
# measurement when the two are interleaved per repetition.
SETTLE_S = 0.2
TARGET_SPEEDUP = 2.5
TARGET_PEAK_SHARE = 0.60

MATMUL_SNIPPET = f"""
import time, numpy as np
a = np.random.default_rng(0).standard_normal(({MATMUL_N}, {MATMUL_N})).astype(np.float32)
a @ a
best = min((lambda t: (a @ a, time.process_time() - t)[1])(time.process_time()) for _ in range(5))
print(2 * {MATMUL_N} ** 3 / best / 1e9)
"""


def matmul_peak_gflops() -> float:
    """GFLOP per CPU-second of a float32 matmul on one core (a subprocess with one BLAS thread)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MATMUL_SNIPPET], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def count_macs(model) -> int:
    """Multiply-adds of one image through the convolutions and dense layers of a model."""
    import keras

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            macs += count_macs(layer)
            continue
        out = getattr(layer, "output", None)
        if out is None or not hasattr(layer, "kernel"):
            continue
        kernel = tuple(layer.kernel.shape)
        positions = 1
        for d in out.shape[1:-1]:
            positions *= int(d)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            macs += positions * int(out.shape[-1]) * kernel[0] * kernel[1]
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            per_output = 1
            for d in kernel[:-1]:
                per_output *= int(d)
            macs += positions * int(out.shape[-1]) * per_output
    return macs


def timed(fn):
    """Runs fn(); returns (its value, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def records_of(folder: Path, limit: int | None):
    from lib.data.sources import load_dataset

    records = load_dataset(str(folder)).records
    if limit:
        per_class = {}
        for r in records:
            per_class.setdefault(r.label, []).append(r)
        records = [r for rs in per_class.values() for r in rs[: limit // len(per_class)]]
    return records


def extraction_rounds(body, records, size: int, rounds: int) -> dict:
    """End-to-end extraction per engine, interleaved; the first call of each engine is a warm-up."""
    from lib.engine import LITERT, TF
    from lib.features import extract_features_run

    for engine in (TF, LITERT):  # trace / convert / plan once, on a few images, untimed
        extract_features_run(body, records[:8], size, engine=engine)
    per = {TF: [], LITERT: []}
    features = {}
    for i in range(rounds):
        for engine in (TF, LITERT) if i % 2 == 0 else (LITERT, TF):
            run, wall, cpu = timed(lambda e=engine: extract_features_run(body, records, size, engine=e))
            assert run.engine == engine, run.fallback_reason
            features[engine] = run.features
            per[engine].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                                "img_per_s": round(len(records) / wall, 2),
                                "cpu_ms_per_image": round(cpu * 1000 / len(records), 2)})
            print(f"round {i + 1} {engine:6s} {per[engine][-1]}", file=sys.stderr, flush=True)
    med = {e: statistics.median(r["wall_s"] for r in rs) for e, rs in per.items()}
    med_cpu = {e: statistics.median(r["cpu_s"] for r in rs) for e, rs in per.items()}
    import numpy as np

    scale = float(np.abs(features[TF]).max())
    diff = float(np.abs(features[TF] - features[LITERT]).max())
    return {
        "images": len(records), "rounds": per,
        "median_wall_s": med, "median_cpu_s": med_cpu,
        "speedup_wall": round(med[TF] / med[LITERT], 2),
        "speedup_cpu": round(med_cpu[TF] / med_cpu[LITERT], 2),
        "max_abs_feature_diff": diff, "max_abs_feature": scale,
        "relative_feature_diff": diff / scale,
    }


def forward_alone(body, records, size: int, reps: int, peak: float, macs: int) -> dict:
    """The forward pass alone on one decoded batch, per engine, interleaved, in CPU ms per image."""
    from lib.data.pipeline import make_dataset
    from lib.engine import LITERT, TF, open_forward

    pixels = next(iter(make_dataset(records[:FORWARD_BATCH], 2, size, FORWARD_BATCH,
                                    shuffle=False, cache=False)))[0].numpy()
    n = len(pixels)
    cpu_ms = {TF: [], LITERT: []}
    with open_forward(body, engine=TF) as tf_fwd, open_forward(body, engine=LITERT) as lite_fwd:
        threads = lite_fwd.threads
        forwards = {TF: tf_fwd, LITERT: lite_fwd}
        for fwd in forwards.values():
            fwd(pixels)  # warm-up
        for i in range(reps):
            for engine in (TF, LITERT) if i % 2 == 0 else (LITERT, TF):
                time.sleep(SETTLE_S)
                _, _, cpu = timed(lambda f=forwards[engine]: f(pixels))
                cpu_ms[engine].append(cpu * 1000 / n)
    gflop = 2 * macs / 1e9
    out = {"batch": n, "reps": reps, "litert_threads": threads, "macs_per_image": macs,
           "peak_gflops_1core": round(peak, 1),
           "limit_cpu_ms_per_image": round(gflop / peak * 1000, 2)}
    for engine, values in cpu_ms.items():
        med = statistics.median(values)
        out[engine] = {"cpu_ms_per_image": round(med, 2),
                       "share_of_peak": round(gflop / (med / 1000) / peak, 3)}
    out["speedup_cpu"] = round(out[TF]["cpu_ms_per_image"] / out[LITERT]["cpu_ms_per_image"], 2)
    return out


def train_per_engine(data: str) -> dict:
    """A frozen `train` per engine, each with a cold feature cache: wall time and held-out accuracy."""
    from lib.engine import ENGINE_ENV, LITERT, TF
    from lib.training import TrainConfig, train

    out = {}
    converted = Path(os.environ["TRANSFERLAB_CACHE"]) / "engines"
    for engine in (TF, LITERT):
        cache = Path(tempfile.mkdtemp(prefix=f"transferlab-bench-{engine}-"))
        # Cold features; the one-off conversion (timed above as conversion_s_cold) is kept, as
        # it is on any machine after the backbone's first LiteRT pass.
        shutil.copytree(converted, cache / "engines")
        os.environ["TRANSFERLAB_CACHE"] = str(cache)
        os.environ[ENGINE_ENV] = engine
        config = TrainConfig(backbone=BACKBONE, data=data, epochs=10, seed=0)
        result, wall, _ = timed(lambda c=config: train(c, run_dir=Path(tempfile.mkdtemp()) / "run"))
        evaluation = result.metrics.get("evaluation") or {}
        out[engine] = {"wall_s": round(wall, 2), "split": evaluation.get("split"),
                       "accuracy": evaluation.get("accuracy"), "n": evaluation.get("n")}
        print(f"train {engine}: {out[engine]}", file=sys.stderr, flush=True)
    os.environ.pop(ENGINE_ENV, None)
    out["speedup_wall"] = round(out[TF]["wall_s"] / out[LITERT]["wall_s"], 2)
    return out


def smoke_folder(records, root: Path) -> str:
    """Copies a few images into a class-folder dataset (for the smoke `--train`)."""
    for r in records:
        dest = root / Path(r.path).parent.name / Path(r.path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path, dest)
    return str(root)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few images, one round (~1 min)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--reps", type=int, default=12, help="forward-alone repetitions (default 12)")
    parser.add_argument("--train", action="store_true", help="also a frozen train per engine")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"dataset not found: {DATA}")
    from lib.backbones import load_backbone
    from lib.engine import cached_tflite
    from lib.models import build_body

    limit, rounds, reps = (64, 1, 4) if args.smoke else (None, args.rounds, args.reps)
    records = records_of(DATA, limit)
    backbone = load_backbone(BACKBONE)
    body = build_body(backbone)
    size = backbone.spec.input_size
    _, convert_s, _ = timed(lambda: cached_tflite(body, name=BACKBONE))
    peak = matmul_peak_gflops()
    report = {
        "machine": machine(), "backbone": BACKBONE, "smoke": args.smoke,
        "conversion_s_cold": round(convert_s, 2),
        "extraction": extraction_rounds(body, records, size, rounds),
        "forward": forward_alone(body, records, size, reps, peak, count_macs(body)),
    }
    if args.train:
        data = smoke_folder(records, Path(tempfile.mkdtemp()) / "d") if args.smoke else str(DATA)
        report["train"] = train_per_engine(data)
    report["targets"] = {
        "extraction_speedup_wall": f"{report['extraction']['speedup_wall']} (target >= {TARGET_SPEEDUP})",
        "litert_share_of_peak": f"{report['forward']['litert']['share_of_peak']} "
                                f"(target >= {TARGET_PEAK_SHARE})",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "inference_engines_smoke.json" if args.smoke else "inference_engines.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
