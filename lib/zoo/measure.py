"""Measuring one backbone on this machine, in this process or in a fresh worker process.

Per backbone:

* `params`: `model.count_params()` of the full classifier (or feature model for hub backbones);
* `depth`: layers that have weights, which is how the Keras Applications table counts depth ("Depth
  counts the number of layers with parameters": VGG16 = 13 conv + 3 dense = 16; ResNet50 = 53 conv +
  53 BatchNorm + 1 dense = 107, both as published). A hub SavedModel is one TFSMLayer, so its depth
  is not comparable and is reported as None;
* `size_mb`: bytes of the saved weights (`model.save_weights` to a temporary `.weights.h5`, or the
  SavedModel's `variables/` for hub backbones), in MB (10^6 bytes);
* latency per image at each batch size: `predict_on_batch` on random pixels, one warm-up call (it
  traces), then timed calls until at least `MIN_RUNS` and `TIME_BUDGET_S` per batch size, at most
  `MAX_RUNS`; the median per-image time is reported with the p10 and p90 of the runs, and
  throughput = batch / median batch time;
* `peak_mem_mb`: the largest resident-set-size increase of this process over its value just before
  the backbone was built, sampled every `MEMORY_SAMPLE_S` by a psutil thread while it is built and
  run. It is what this backbone costs a process that already runs TensorFlow; TF's allocator keeps
  freed memory, so backbones measured later in the same process may read lower (hence the worker);
* `device` / `gpu`: where the TensorFlow timings ran: "GPU" and its name when TensorFlow sees a
  GPU (the model is built and timed on the first one), else "CPU" and "no GPU"; `host`: the
  machine's name (a Dask worker's, when a job measured it there);
* weights availability (`offline` / `cached` / `download needed` / `random`). Backbones whose weights
  are unavailable are measured with random weights (same cost), flagged `measured_pretrained=False`.

The worker is `python -m lib.zoo JOB_JSON` (`lib/zoo/__main__.py` calls `run_worker`).
"""

from __future__ import annotations

import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from lib.backbones import RANDOM, Backbone, BackboneSpec, get_spec
from lib.errors import TransferLabError

DEFAULT_BATCHES = (1, 32)
MIN_RUNS = 3
MAX_RUNS = 30
TIME_BUDGET_S = 2.0  # timed seconds per batch size, after the warm-up
MEMORY_SAMPLE_S = 0.005
MAX_BATCH = 1024
WORKER_TIMEOUT_S = 3600  # one backbone in its own process (EfficientNetB7 at batch 32 is slow on CPU)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEPTH_METHOD = "layers with weights (as the Keras Applications table counts depth)"
LATENCY_METHOD = (
    f"predict_on_batch on random pixels; 1 warm-up call, then >= {MIN_RUNS} timed calls and >= "
    f"{TIME_BUDGET_S:g} s per batch size (at most {MAX_RUNS}); median ms per image, with p10-p90, "
    "on the first GPU when TensorFlow sees one (column device), else the CPU. The LiteRT columns time the same model converted to LiteRT with XNNPACK (what deploying it on "
    "this machine would cost), the same way"
)
MEMORY_METHOD = (
    "peak RSS increase over the process baseline while the backbone is built and run "
    f"(psutil, sampled every {MEMORY_SAMPLE_S * 1000:g} ms); each backbone is measured in a fresh "
    "process, so rows do not share allocator memory"
)
SIZE_METHOD = "saved weights file (.weights.h5), MB = 10^6 bytes"
NO_GPU = "no GPU"
ACCURACY_NOTE = "Top-1/top-5 are published ImageNet figures (see accuracy_source), not measured here."


class _PeakRss:
    """Samples this process's RSS on a thread; `peak_delta_mb` is the largest rise over the baseline."""

    def __init__(self, interval: float = MEMORY_SAMPLE_S) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="zoo-rss")
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def peak_delta_mb(self) -> float:
        return (self.peak - self.baseline) / 1e6


def registry_row(spec: BackboneSpec, status: str | None = None) -> dict:
    """What the registry knows about a backbone, before any measurement: every zoo row starts here.

    Args:
        spec: the backbone.
        status: its weights status when already checked. Defaults to checking it now.
    """
    return {
        "name": spec.name,
        "family": spec.family,
        "input_size": spec.input_size,
        "feature_dim": spec.feature_dim,
        "top1": spec.top1,
        "top5": spec.top5,
        "accuracy_source": spec.accuracy_source,
        "weights": status or spec.weights_status(),
        "weights_source": spec.weights_source,
        "preprocessing": spec.preprocessing,
        "cut_points": list(spec.cut_points),
    }


def count_depth(model: keras.Model) -> int | None:
    """Layers with weights, as the Keras Applications table counts depth; None for hub models."""
    if any(type(layer).__name__ == "TFSMLayer" for layer in model.layers):
        return None
    return sum(1 for layer in model.layers if layer.weights)


def weights_size_mb(model: keras.Model, spec: BackboneSpec) -> float:
    """Size of the saved weights on disk in MB (hub: the SavedModel's variables folder)."""
    if spec.weights_source.startswith("hub:"):
        from lib.backbones.hub_compat import resolve_handle

        variables = Path(resolve_handle(spec.weights_source)) / "variables"
        return sum(p.stat().st_size for p in variables.rglob("*") if p.is_file()) / 1e6
    with tempfile.TemporaryDirectory(prefix="transferlab-zoo-") as tmp:
        path = Path(tmp) / "w.weights.h5"
        model.save_weights(path)
        return path.stat().st_size / 1e6


def check_batches(batches: Sequence[int]) -> tuple[int, ...]:
    """Returns the batch sizes as ints; raises TransferLabError echoing them when one is out of range."""
    batches = tuple(int(b) for b in batches)
    if not batches or any(b < 1 or b > MAX_BATCH for b in batches):
        raise TransferLabError(f"Received `batches={list(batches)}`; use sizes from 1 to {MAX_BATCH}.")
    return batches


def time_batches(model: keras.Model, input_size: int, batch: int, *, min_runs: int = MIN_RUNS,
                 max_runs: int = MAX_RUNS, budget_s: float = TIME_BUDGET_S, seed: int = 0) -> dict:
    """Times `predict_on_batch` at one batch size.

    Args:
        model: any pixels -> output model.
        input_size: square input side.
        batch: images per call.
        min_runs, max_runs: timed calls, at least / at most. Defaults to MIN_RUNS / MAX_RUNS.
        budget_s: keep timing until this many seconds have passed (and `min_runs` are done).
        seed: for the random pixels.

    Returns:
        `{"batch", "runs", "median_ms_per_image", "p10_ms_per_image", "p90_ms_per_image",
        "iqr_ms_per_image", "throughput_ips"}`.
    """
    if batch < 1 or batch > MAX_BATCH:
        raise TransferLabError(f"Received `batch={batch}`; use 1 to {MAX_BATCH}.")
    pixels = np.random.default_rng(seed).uniform(0, 255, (batch, input_size, input_size, 3)).astype("float32")
    model.predict_on_batch(pixels)  # warm-up: traces the predict function for this shape
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        model.predict_on_batch(pixels)
        times.append(time.perf_counter() - t0)
    per_image_ms = np.asarray(times) * 1000.0 / batch
    p10, p25, p50, p75, p90 = np.percentile(per_image_ms, [10, 25, 50, 75, 90])
    return {
        "batch": batch,
        "runs": len(times),
        "median_ms_per_image": round(float(p50), 4),
        "p10_ms_per_image": round(float(p10), 4),
        "p90_ms_per_image": round(float(p90), 4),
        "iqr_ms_per_image": round(float(p75 - p25), 4),
        "throughput_ips": round(batch / statistics.median(times), 2),
    }


def timing_device(gpus: Sequence | None = None) -> dict:
    """Where the TensorFlow timings run: the first GPU TensorFlow sees, else the CPU.

    Args:
        gpus: physical GPU devices. Defaults to None: `tf.config.list_physical_devices("GPU")`.

    Returns:
        `{"device": "GPU" | "CPU", "gpu": the GPU's name or NO_GPU, "tf_device": "/GPU:0" | "/CPU:0"}`.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU") if gpus is None else list(gpus)
    if not gpus:
        return {"device": "CPU", "gpu": NO_GPU, "tf_device": "/CPU:0"}
    try:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    except (ValueError, TypeError, AttributeError):  # not a real device (tests) or no details
        name = None
    return {"device": "GPU", "gpu": str(name or getattr(gpus[0], "name", gpus[0])), "tf_device": "/GPU:0"}


def build_for_timing(spec: BackboneSpec, status: str) -> tuple[keras.Model, bool]:
    """The backbone's model and whether its weights are pretrained.

    As `load_backbone(name, allow_random=True)`, but from a spec, so a hub handle resolved in the
    worker is measured without being registered: random weights where the pretrained ones cannot
    be had (same size and cost).

    Args:
        spec: the backbone.
        status: its weights status (`spec.weights_status()`).
    """
    if status != RANDOM:
        try:
            return spec.builder(True), True
        except TransferLabError:
            pass
    return spec.builder(False), False


def time_litert(model: keras.Model, input_size: int, batches: Sequence[int], *, min_runs: int,
                budget_s: float) -> tuple[dict, str | None]:
    """Times the same model on LiteRT (XNNPACK), what deploying it on this machine would cost.

    Returns:
        `(timings by batch size, None)`, or `({}, why)` when the model cannot run on LiteRT here
        (a conversion that fails, e.g. a TF Hub SavedModel layer): the TensorFlow columns still stand.
    """
    from lib.engine import LITERT, time_forward

    try:
        return {str(b): time_forward(model, input_size, b, engine=LITERT, min_runs=min_runs,
                                     budget_s=budget_s) for b in batches}, None
    except TransferLabError as e:
        return {}, str(e)


def measure_spec(spec: BackboneSpec, batches: Sequence[int] = DEFAULT_BATCHES, *, min_runs: int = MIN_RUNS,
                 budget_s: float = TIME_BUDGET_S) -> dict:
    """Builds one backbone in this process and measures it (see the module docstring).

    Args:
        spec: the backbone.
        batches: batch sizes to time. Defaults to (1, 32).
        min_runs: timed calls per batch size, at least. Defaults to MIN_RUNS.
        budget_s: timed seconds per batch size. Defaults to TIME_BUDGET_S.

    Returns:
        One zoo row (registry facts + measurements), JSON-serialisable.

    Raises:
        TransferLabError: bad batch sizes, or a backbone that cannot be built at all.
    """
    import tensorflow as tf

    batches = check_batches(batches)
    status = spec.weights_status()
    where = timing_device()
    with _PeakRss() as rss, tf.device(where["tf_device"]):
        model, pretrained = build_for_timing(spec, status)
        timings = {str(b): time_batches(model, spec.input_size, b, min_runs=min_runs, budget_s=budget_s)
                   for b in batches}
    litert, litert_error = time_litert(model, spec.input_size, batches, min_runs=min_runs, budget_s=budget_s)
    row = registry_row(spec, status)
    row.update(
        params=int(model.count_params()),
        depth=count_depth(model),
        size_mb=round(weights_size_mb(model, spec), 2),
        measured_pretrained=pretrained,
        peak_mem_mb=round(rss.peak_delta_mb, 1),
        device=where["device"],
        gpu=where["gpu"],
        host=socket.gethostname(),
        timings=timings,
        timings_litert=litert,
        litert_error=litert_error,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    del model
    gc.collect()
    return row


def measure_backbone(name: str, batches: Sequence[int] = DEFAULT_BATCHES, *, min_runs: int = MIN_RUNS,
                     budget_s: float = TIME_BUDGET_S) -> dict:
    """`measure_spec` of a registry name (or hub handle), in this process.

    Raises:
        TransferLabError: unknown name, bad batch sizes, or a backbone that cannot be built at all.
    """
    return measure_spec(get_spec(name), batches, min_runs=min_runs, budget_s=budget_s)


def measure_in_subprocess(name: str, batches: Sequence[int] = DEFAULT_BATCHES, *,
                          min_runs: int = MIN_RUNS, budget_s: float = TIME_BUDGET_S,
                          timeout: float = WORKER_TIMEOUT_S) -> dict:
    """`measure_backbone` in a fresh `python -m lib.zoo` process; returns its row.

    A hub backbone travels as its name, which is its handle (see `job_spec`).

    Raises:
        TransferLabError: the worker failed (its last error line is in the message) or timed out.
    """
    spec = get_spec(name)
    job = {"name": spec.name, "batches": list(batches), "min_runs": min_runs, "budget_s": budget_s}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        proc = subprocess.run([sys.executable, "-m", "lib.zoo", json.dumps(job)], capture_output=True,
                              text=True, timeout=timeout, cwd=PROJECT_ROOT, env=env)
    except subprocess.TimeoutExpired as e:
        raise TransferLabError(f"Measuring {name} took longer than {timeout:g} s; stopped.") from e
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise TransferLabError(f"Measuring {name} failed: {errors[-1] if errors else proc.returncode}")
    return json.loads(lines[-1])


def job_spec(job: dict) -> BackboneSpec:
    """The spec a worker job names: a registry entry, or a TF Hub handle (its name is the handle,
    with `@SIZE` when not the default, so `get_spec` rebuilds it here without registering it)."""
    return get_spec(job["name"])


def run_worker(argument: str) -> int:
    """Entry point of `python -m lib.zoo JOB_JSON`: prints one measured row as JSON.

    Returns:
        The exit status: 0, or 2 after printing the error to stderr.
    """
    job = json.loads(argument)
    try:
        row = measure_spec(job_spec(job), job["batches"], min_runs=job["min_runs"], budget_s=job["budget_s"])
    except TransferLabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(row))
    return 0


def describe_cut_points(backbone: Backbone) -> list[dict]:
    """Each cut point of a loaded backbone: its output shape and how much of the network lies below.

    Args:
        backbone: a `lib.backbones.Backbone`.

    Returns:
        `[{"cut", "output_shape", "layers_below", "params_below_m"}]`, bottom to top. "Below" counts
        the layers listed before the cut point (for branching networks, the layers computed first).
    """
    model = backbone.model
    index = {layer.name: i for i, layer in enumerate(model.layers)}
    cumulative, total = [], 0
    for layer in model.layers:
        total += sum(int(np.prod(w.shape)) for w in layer.weights)
        cumulative.append(total)
    rows = []
    for cut in backbone.spec.cut_points:
        i = index[cut]
        shape = tuple(model.layers[i].output.shape[1:])
        rows.append({"cut": cut, "output_shape": "x".join(str(s) for s in shape),
                     "layers_below": i + 1, "params_below_m": round(cumulative[i] / 1e6, 3)})
    return rows
