"""Where the CPU goes in frozen-layer extraction, per image and per stage (issue 8).

On N cats/dogs photos (default 200) with EfficientNet-Lite0 (224 px, pooled top features):

* LiteRT path, stage by stage on one thread (thread CPU time, `time.thread_time`): read the file,
  decode, crop + resize, forward (one single-thread interpreter, one image per invoke). Then the
  real pass (`lib.features.extract_features_run`, engine LiteRT) in process CPU time; what it costs
  beyond the sum of the stages is the pool's overhead (thread hand-offs, the stacking of rows,
  XNNPACK's idle spinning).
* TensorFlow path: tf.data decode + crop + resize alone (process CPU of iterating
  `make_dataset`), the forward alone on the decoded batches, and the real pass.

Also loading one image into the engine's input buffer before and after the cheaper path (the
crop inside the sparse resize, one copy), interleaved. CPU time, not wall time, so a shared
machine distorts it little. `python3 bench/engine_stages.py [--n 200]` (about 2 minutes; `--smoke`:
16 photos); writes bench/results/engine_stages.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

# A private cache (the conversion is not measured here; TRANSFERLAB_BENCH_CACHE reuses one).
os.environ["TRANSFERLAB_CACHE"] = os.environ.get("TRANSFERLAB_BENCH_CACHE") or tempfile.mkdtemp(
    prefix="transferlab-bench-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.pop("TRANSFERLAB_ENGINE", None)

DATASETS_NEEDED = ("cats_vs_dogs",)
DATA = common.DATASETS / "cats_vs_dogs"
BACKBONE = "efficientnet_lite0"


def cpu_ms(fn, n: int, clock=time.process_time) -> tuple[object, float]:
    """Runs fn(); returns (its value, CPU ms per image of `clock`)."""
    start = clock()
    value = fn()
    return value, (clock() - start) * 1000 / n


def load_before(path: str, size: int) -> np.ndarray:
    """The LiteRT path's image loading before this diagnosis (width first on the transposed crop)."""
    from lib.data.pipeline import build_resize_matrix, decode_pixels

    image = decode_pixels(Path(path).read_bytes())
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    across = build_resize_matrix(side, size, 3)  # (S*3, W*3)
    columns = across @ np.ascontiguousarray(square.reshape(side, side * 3).T)  # (S*3, H)
    rows = build_resize_matrix(side, size) @ np.ascontiguousarray(columns.T)  # (S, S*3)
    out = rows.astype(np.float32, copy=False).reshape(size, size, 3)
    return np.clip(out, 0.0, 255.0, out=out)


def load_before_after(paths: list[str], size: int, rounds: int = 5) -> dict:
    """Loading one image into an engine input buffer, before and after, interleaved (thread CPU).

    Before: the old resize, then `np.ascontiguousarray` + the copy `set_tensor` made. After:
    `load_pixels` (the crop inside the sparse products), copied once into the buffer.
    """
    from lib.data.pipeline import load_pixels

    buffer = np.empty((1, size, size, 3), np.float32)
    ways = {"before": lambda p: np.copyto(buffer[0], np.ascontiguousarray(load_before(p, size))),
            "after": lambda p: np.copyto(buffer[0], load_pixels(p, size))}
    best = {name: float("inf") for name in ways}
    diff = max(float(np.abs(load_before(p, size) - load_pixels(p, size)).max()) for p in paths[:50])
    for _ in range(rounds):
        for name, way in ways.items():
            ms = cpu_ms(lambda w=way: [w(p) for p in paths], len(paths), time.thread_time)[1]
            best[name] = min(best[name], ms)
    return {**{f"{k}_ms": v for k, v in best.items()}, "max_abs_pixel_diff": f"{diff:.1e}"}


def litert_stages(paths: list[str], size: int, model_path: Path) -> dict:
    """Each stage of the LiteRT worker's loop on this thread, in thread CPU ms per image."""
    import tensorflow as tf

    from lib.data import pipeline
    from lib.engine import LiteRTRunner

    runner = LiteRTRunner(model_path, 1)
    clock = time.thread_time
    raw, _ = cpu_ms(lambda: [Path(p).read_bytes() for p in paths], len(paths), clock)
    read = cpu_ms(lambda: [Path(p).read_bytes() for p in paths], len(paths), clock)[1]
    decoded, decode = cpu_ms(lambda: [pipeline.decode_pixels(b) for b in raw], len(paths), clock)
    # decode_jpeg skips decode_image's format sniffing: the same pixels, measured for comparison.
    decode_jpeg = cpu_ms(lambda: [tf.io.decode_jpeg(b, channels=3).numpy() for b in raw],
                         len(paths), clock)[1]
    pixels, resize = cpu_ms(lambda: [pipeline.crop_and_resize(d, size) for d in decoded],
                            len(paths), clock)
    runner(pixels[0][None])  # plans the buffers
    _, forward = cpu_ms(lambda: [runner(p[None]) for p in pixels], len(paths), clock)
    return {"read": read, "decode": decode, "decode_jpeg (for comparison)": decode_jpeg,
            "crop_resize": resize, "forward_1thread": forward,
            "sum": read + decode + resize + forward}


def tf_stages(records, size: int, body) -> dict:
    """tf.data decode + resize alone, then the forward alone, in process CPU ms per image."""
    from lib.data.pipeline import make_dataset
    from lib.engine import TF, open_forward

    def decode():
        dataset = make_dataset(records, 2, size, 32, shuffle=False, cache=False)
        return [x.numpy() for x, _ in dataset]

    decode()  # builds the pipeline's functions once
    batches, decode_ms = cpu_ms(decode, len(records))
    with open_forward(body, engine=TF) as forward:
        forward(batches[0])
        time.sleep(0.3)
        _, forward_ms = cpu_ms(lambda: [forward(b) for b in batches], len(records))
    return {"decode_crop_resize (tf.data)": decode_ms, "forward": forward_ms,
            "sum": decode_ms + forward_ms}


def main(argv: list[str] | None = None) -> dict:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="photos (default 200)")
    args = parser.parse_args(argv)
    reason = common.missing_datasets(*DATASETS_NEEDED)
    if reason:
        common.skip(reason)
        return {}
    if args.smoke:
        args.n = 16
    from lib.backbones import load_backbone
    from lib.data.sources import load_dataset
    from lib.engine import LITERT, TF, cached_tflite
    from lib.features import extract_features_run
    from lib.models import build_body

    records = load_dataset(str(DATA)).records
    half = args.n // 2
    records = [r for r in records if r.label == 0][:half] + [r for r in records if r.label == 1][:half]
    backbone = load_backbone(BACKBONE)
    body = build_body(backbone)
    size = backbone.spec.input_size
    model_path = cached_tflite(body, name=BACKBONE)
    report = {"images": len(records), "load": os.getloadavg()[0]}
    report["load_into_buffer_thread_cpu_ms"] = load_before_after([r.path for r in records], size)
    report["litert_stages_thread_cpu_ms"] = litert_stages([r.path for r in records], size, model_path)
    report["tf_stages_cpu_ms"] = tf_stages(records, size, body)
    for engine in (TF, LITERT):
        extract_features_run(body, records[:8], size, engine=engine)  # warm-up
        time.sleep(0.3)
        run, ms = cpu_ms(lambda e=engine: extract_features_run(body, records, size, engine=e),
                         len(records))
        report[f"{engine}_end_to_end_cpu_ms"] = ms
    lite = report["litert_stages_thread_cpu_ms"]
    report["litert_overhead_cpu_ms"] = report[f"{LITERT}_end_to_end_cpu_ms"] - lite["sum"]
    report["tf_overhead_cpu_ms"] = report[f"{TF}_end_to_end_cpu_ms"] - report["tf_stages_cpu_ms"]["sum"]
    report["ratio_cpu"] = report[f"{TF}_end_to_end_cpu_ms"] / report[f"{LITERT}_end_to_end_cpu_ms"]
    report = json.loads(json.dumps(report, default=str), parse_float=lambda v: round(float(v), 3))
    print(json.dumps(report, indent=2))
    common.write_results("engine_stages", report, smoke=args.smoke, indent=2)
    return report


if __name__ == "__main__":
    main()
