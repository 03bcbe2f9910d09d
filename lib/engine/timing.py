"""Latency of a forward pass on one engine, for the zoo's TensorFlow and LiteRT columns."""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np

from lib.engine.forward import open_forward
from lib.errors import TransferLabError

MIN_RUNS = 5
MAX_RUNS = 200
BUDGET_S = 2.0
MAX_BATCH = 256


def time_forward(model: keras.Model, input_size: int, batch: int, *, engine: str | None = None,
                 min_runs: int = MIN_RUNS, max_runs: int = MAX_RUNS, budget_s: float = BUDGET_S,
                 seed: int = 0) -> dict:
    """Times a forward pass of `model` on random pixels at one batch size, on one engine.

    Args:
        model: pixels -> output (a backbone, a body or a classifier); only read.
        input_size: square input side.
        batch: images per call, 1 to `MAX_BATCH`.
        engine: `"tf"`, `"litert"` or None (LiteRT, else TensorFlow). Defaults to None.
        min_runs, max_runs: timed calls, at least / at most. Defaults to 5 / 200.
        budget_s: keep timing until this many seconds have passed. Defaults to 2.0.
        seed: for the random pixels. Defaults to 0.

    Returns:
        `{"engine", "threads", "fallback_reason", "batch", "runs", "median_ms_per_image",
        "p10_ms_per_image", "p90_ms_per_image", "cpu_ms_per_image", "throughput_ips"}`
        (the first call, which converts, traces or plans buffers, is not timed).

    Raises:
        TransferLabError: a bad batch size, an unknown engine, or `litert` forced and unavailable.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise TransferLabError(f"Received `batch={batch}`; use 1 to {MAX_BATCH}.")
    pixels = np.random.default_rng(seed).uniform(0, 255, (batch, input_size, input_size, 3))
    pixels = pixels.astype(np.float32)
    with open_forward(model, engine=engine, pool=False, name=model.name) as forward:
        forward(pixels)  # warm-up
        times, cpu_start, start = [], time.process_time(), time.perf_counter()
        while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
            t0 = time.perf_counter()
            forward(pixels)
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu_start
    per_image_ms = np.asarray(times) * 1000.0 / batch
    p10, p50, p90 = np.percentile(per_image_ms, [10, 50, 90])
    return {
        "engine": forward.engine,
        "threads": forward.threads,
        "fallback_reason": forward.fallback_reason,
        "batch": batch,
        "runs": len(times),
        "median_ms_per_image": round(float(p50), 4),
        "p10_ms_per_image": round(float(p10), 4),
        "p90_ms_per_image": round(float(p90), 4),
        "cpu_ms_per_image": round(cpu * 1000.0 / (len(times) * batch), 4),
        "throughput_ips": round(batch / statistics.median(times), 2),
    }
