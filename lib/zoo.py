"""The model zoo, measured on this machine and cached per machine fingerprint.

Published tables give latency on someone else's hardware. This module measures, per backbone:

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
  freed memory, so backbones measured later in the same process may read lower;
* weights availability (`offline` / `cached` / `download needed` / `random`). Backbones whose weights
  are unavailable are measured with random weights (same cost), flagged `measured_pretrained=False`;
* published ImageNet top-1/top-5 with their source: published figures, never measured here.

Results live in `<cache_dir()>/zoo/<fingerprint key>.json`. The fingerprint is the CPU model and
core count, the GPU name if TensorFlow sees one, and the TF and Keras versions, so a table measured on
another machine (or a GPU) is kept apart. Measuring refreshes only the rows asked for.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from lib.backbones import RANDOM, BackboneSpec, get_spec, list_specs, load_backbone
from lib.errors import TransferLabError
from lib.paths import atomic_write_text, cache_dir

SCHEMA_VERSION = 1
DEFAULT_BATCHES = (1, 32)
MIN_RUNS = 3
MAX_RUNS = 30
TIME_BUDGET_S = 2.0  # timed seconds per batch size, after the warm-up
MEMORY_SAMPLE_S = 0.005
MAX_BATCH = 1024
WORKER_TIMEOUT_S = 3600  # one backbone in its own process (EfficientNetB7 at batch 32 is slow on CPU)
PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEPTH_METHOD = "layers with weights (as the Keras Applications table counts depth)"
LATENCY_METHOD = (
    f"predict_on_batch on random pixels; 1 warm-up call, then >= {MIN_RUNS} timed calls and >= "
    f"{TIME_BUDGET_S:g} s per batch size (at most {MAX_RUNS}); median ms per image, with p10-p90"
)
MEMORY_METHOD = (
    "peak RSS increase over the process baseline while the backbone is built and run "
    f"(psutil, sampled every {MEMORY_SAMPLE_S * 1000:g} ms); each backbone is measured in a fresh "
    "process, so rows do not share allocator memory"
)
SIZE_METHOD = "saved weights file (.weights.h5), MB = 10^6 bytes"
ACCURACY_NOTE = "Top-1/top-5 are published ImageNet figures (see accuracy_source), not measured here."

# The columns of one zoo row, in display order (the CLI's JSON and the page use these names).
ZOO_COLUMNS = (
    "name", "family", "input_size", "feature_dim", "params", "depth", "size_mb",
    "top1", "top5", "accuracy_source", "weights", "measured_pretrained",
    "latency_ms_b1", "latency_ms_b1_p10", "latency_ms_b1_p90", "throughput_b1",
    "latency_ms_b32", "latency_ms_b32_p10", "latency_ms_b32_p90", "throughput_b32",
    "peak_mem_mb", "measured_at",
)

ProgressFn = Callable[[int, int, str], None]


# ----- machine fingerprint and cache ---------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use, not what the box has
    except AttributeError:
        return os.cpu_count() or 1


def _gpu_name() -> str | None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return str(details.get("device_name") or gpus[0].name)


def machine_fingerprint() -> dict:
    """What makes timings comparable: CPU model and usable cores, GPU name, TF and Keras versions.

    Returns:
        `{"cpu", "cores", "gpu", "tensorflow", "keras", "device", "key"}`; `key` hashes the rest and
        names the cache file, `device` is a label for people (the GPU name, else the CPU).
    """
    import tensorflow as tf

    gpu = _gpu_name()
    fields = {
        "cpu": _cpu_model(),
        "cores": _usable_cores(),
        "gpu": gpu,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    fields["device"] = f"GPU: {gpu}" if gpu else f"CPU: {fields['cpu']} ({fields['cores']} cores)"
    fields["key"] = fingerprint_key(fields)
    return fields


def fingerprint_key(fingerprint: dict) -> str:
    """A short stable hash of the fingerprint's identifying fields."""
    ident = {k: fingerprint.get(k) for k in ("cpu", "cores", "gpu", "tensorflow", "keras")}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def zoo_cache_path(fingerprint: dict | None = None) -> Path:
    """`<cache_dir()>/zoo/<fingerprint key>.json` for this machine (or the given fingerprint)."""
    fingerprint = fingerprint or machine_fingerprint()
    return cache_dir() / "zoo" / f"{fingerprint.get('key') or fingerprint_key(fingerprint)}.json"


def load_zoo_cache(fingerprint: dict | None = None) -> dict:
    """Returns `{"fingerprint", "rows": {name: row}}` for this machine; empty rows when none yet.

    A damaged or older-schema file reads as empty (it is rewritten by the next measurement).
    """
    fingerprint = fingerprint or machine_fingerprint()
    path = zoo_cache_path(fingerprint)
    try:
        data = json.loads(path.read_text())
        if data.get("schema") == SCHEMA_VERSION and isinstance(data.get("rows"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"schema": SCHEMA_VERSION, "fingerprint": fingerprint, "rows": {}}


def _save_zoo_cache(data: dict) -> None:
    atomic_write_text(zoo_cache_path(data["fingerprint"]), json.dumps(data, indent=1))


def list_zoo_caches() -> list[dict]:
    """Every stored zoo table (one per machine fingerprint): `{"fingerprint", "rows", "path"}`."""
    tables = []
    for path in sorted((cache_dir() / "zoo").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("schema") == SCHEMA_VERSION:
            tables.append({**data, "path": str(path)})
    return tables


# ----- measuring one backbone ------------------------------------------------------------------------

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


def measure_backbone(name: str, batches: Sequence[int] = DEFAULT_BATCHES, *, min_runs: int = MIN_RUNS,
                     budget_s: float = TIME_BUDGET_S) -> dict:
    """Builds one backbone in this process and measures it (see the module docstring).

    Args:
        name: registry name.
        batches: batch sizes to time. Defaults to (1, 32).
        min_runs: timed calls per batch size, at least. Defaults to MIN_RUNS.
        budget_s: timed seconds per batch size. Defaults to TIME_BUDGET_S.

    Returns:
        One zoo row (registry facts + measurements), JSON-serialisable.

    Raises:
        TransferLabError: unknown name, bad batch sizes, or a backbone that cannot be built at all.
    """
    batches = _check_batches(batches)
    spec = get_spec(name)
    status = spec.weights_status()
    with _PeakRss() as rss:
        backbone = load_backbone(name, allow_random=True)
        model = backbone.model
        timings = {str(b): time_batches(model, spec.input_size, b, min_runs=min_runs, budget_s=budget_s)
                   for b in batches}
    row = registry_row(spec, status)
    row.update(
        params=int(model.count_params()),
        depth=count_depth(model),
        size_mb=round(weights_size_mb(model, spec), 2),
        measured_pretrained=bool(backbone.pretrained),
        peak_mem_mb=round(rss.peak_delta_mb, 1),
        timings=timings,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    del backbone, model
    gc.collect()
    return row


def _check_batches(batches: Sequence[int]) -> tuple[int, ...]:
    batches = tuple(int(b) for b in batches)
    if not batches or any(b < 1 or b > MAX_BATCH for b in batches):
        raise TransferLabError(f"Received `batches={list(batches)}`; use sizes from 1 to {MAX_BATCH}.")
    return batches


def registry_row(spec: BackboneSpec, status: str | None = None) -> dict:
    """What the registry knows about a backbone, before any measurement."""
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


# ----- the zoo table -----------------------------------------------------------------------------------

def _resolve_names(names: Sequence[str] | None) -> list[str]:
    if not names:
        return [s.name for s in list_specs()]
    return [get_spec(n).name for n in names]  # raises for unknown names, listing the known ones


def measure_zoo(names: Sequence[str] | None = None, batches: Sequence[int] = DEFAULT_BATCHES, *,
                min_runs: int = MIN_RUNS, budget_s: float = TIME_BUDGET_S,
                fingerprint: dict | None = None, on_progress: ProgressFn | None = None,
                stop_event: threading.Event | None = None, isolate: bool = True) -> dict:
    """Measures backbones and stores their rows in this machine's zoo cache (other rows are kept).

    Args:
        names: registry names; defaults to every listed backbone.
        batches: batch sizes to time. Defaults to (1, 32).
        min_runs, budget_s: see `time_batches`.
        fingerprint: the machine fingerprint (tests pass a fake one). Defaults to this machine's.
        on_progress: `on_progress(done, total, message)` before each backbone and at the end.
        stop_event: set it to stop after the current backbone.
        isolate: measure each backbone in a fresh Python process (comparable memory figures, and
            the calling process, e.g. the Streamlit server, does not keep 40 models' allocations).
            Backbones registered only in this process (tests) need False. Defaults to True.

    Returns:
        The updated cache: `{"schema", "fingerprint", "rows": {name: row}}`. A backbone that fails
        gets a row with `"error"` instead of measurements.
    """
    batches = _check_batches(batches)
    names = _resolve_names(names)
    fingerprint = fingerprint or machine_fingerprint()
    data = load_zoo_cache(fingerprint)
    for i, name in enumerate(names):
        if stop_event is not None and stop_event.is_set():
            break
        if on_progress:
            on_progress(i, len(names), f"Measuring {name} ({i + 1}/{len(names)})")
        try:
            measure = measure_in_subprocess if isolate else measure_backbone
            data["rows"][name] = measure(name, batches, min_runs=min_runs, budget_s=budget_s)
        except TransferLabError as e:
            data["rows"][name] = {**registry_row(get_spec(name)), "error": str(e)}
        _save_zoo_cache(data)  # after every row, so a stopped or killed run keeps what it measured
    if on_progress:
        on_progress(len(names), len(names), "Done")
    return data


def measure_in_subprocess(name: str, batches: Sequence[int] = DEFAULT_BATCHES, *,
                          min_runs: int = MIN_RUNS, budget_s: float = TIME_BUDGET_S,
                          timeout: float = WORKER_TIMEOUT_S) -> dict:
    """`measure_backbone` in a fresh `python -m lib.zoo` process; returns its row.

    Hub backbones are registered again in the worker from their handle.

    Raises:
        TransferLabError: the worker failed (its last error line is in the message) or timed out.
    """
    spec = get_spec(name)
    job = {"name": name, "batches": list(batches), "min_runs": min_runs, "budget_s": budget_s,
           "hub": spec.weights_source[4:] if spec.weights_source.startswith("hub:") else None,
           "input_size": spec.input_size}
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


def _worker(argument: str) -> int:
    """Entry point of `python -m lib.zoo JOB_JSON`: prints one measured row as JSON."""
    job = json.loads(argument)
    try:
        row = measure_backbone(job["name"], job["batches"], min_runs=job["min_runs"], budget_s=job["budget_s"])
    except TransferLabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(row))
    return 0


def flatten_row(row: dict) -> dict:
    """A cached row as a flat dict with every column in `ZOO_COLUMNS` (None where unmeasured).

    Latency columns are named by batch size (`latency_ms_b32`, `throughput_b32`, ...); batch sizes
    other than 1 and 32 add their own columns.
    """
    flat = {column: row.get(column) for column in ZOO_COLUMNS}
    flat["cut_points"] = row.get("cut_points")
    flat["preprocessing"] = row.get("preprocessing")
    flat["weights_source"] = row.get("weights_source")
    flat["error"] = row.get("error")
    for batch, t in (row.get("timings") or {}).items():
        flat[f"latency_ms_b{batch}"] = t["median_ms_per_image"]
        flat[f"latency_ms_b{batch}_p10"] = t["p10_ms_per_image"]
        flat[f"latency_ms_b{batch}_p90"] = t["p90_ms_per_image"]
        flat[f"throughput_b{batch}"] = t["throughput_ips"]
    return flat


def zoo_table(names: Sequence[str] | None = None, fingerprint: dict | None = None) -> dict:
    """What the registry and this machine's cache know, without measuring anything.

    Returns:
        `{"fingerprint", "device", "depth_method", "latency_method", "memory_method", "size_method",
        "accuracy_note", "columns", "rows"}`; `rows` are flat (see `flatten_row`), in registry order,
        and `weights` is checked now.
    """
    fingerprint = fingerprint or machine_fingerprint()
    cached = load_zoo_cache(fingerprint)["rows"]
    rows = []
    for name in _resolve_names(names):
        spec = get_spec(name)
        row = {**cached.get(name, {}), **registry_row(spec)}  # registry facts are current
        rows.append(flatten_row(row))
    return {
        "fingerprint": fingerprint,
        "device": fingerprint.get("device"),
        "depth_method": DEPTH_METHOD,
        "latency_method": LATENCY_METHOD,
        "memory_method": MEMORY_METHOD,
        "size_method": SIZE_METHOD,
        "accuracy_note": ACCURACY_NOTE,
        "columns": list(ZOO_COLUMNS),
        "rows": rows,
    }


def pareto_front(rows: Sequence[dict], x: str = "latency_ms_b1", y: str = "top1") -> list[str]:
    """Names of the rows no other row beats on both `x` (lower is better) and `y` (higher is better).

    Rows missing either value are left out. Returns names ordered by `x`.
    """
    measured = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    # Fastest first; at equal speed the more accurate first, so it is the one kept.
    points = sorted(measured, key=lambda r: (float(r[x]), -float(r[y])))
    front, best_y = [], float("-inf")
    for row in points:
        if float(row[y]) > best_y:
            front.append(row["name"])
            best_y = float(row[y])
    return front


def weights_summary(rows: Sequence[dict]) -> dict[str, list[str]]:
    """Backbone names grouped by weights availability (for the page's 'offline' note)."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row.get("weights") or RANDOM, []).append(row["name"])
    return groups


# ----- for the page ------------------------------------------------------------------------------------

# Flat-row column -> header shown to people.
DISPLAY_COLUMNS = {
    "name": "Backbone",
    "family": "Family",
    "input_size": "Input px",
    "params_m": "Params (M)",
    "depth": "Depth",
    "size_mb": "Size (MB)",
    "top1": "Top-1 % (published)",
    "top5": "Top-5 % (published)",
    "latency_ms_b1": "ms/img b1",
    "latency_ms_b32": "ms/img b32",
    "throughput_b32": "img/s b32",
    "peak_mem_mb": "Peak mem (MB)",
    "weights": "Weights",
    "feature_dim": "Feature dim",
}


def display_table(table: dict, other_tables: Sequence[dict] = ()):
    """The zoo as a pandas DataFrame for display, one row per backbone, headers for people.

    Args:
        table: `zoo_table(...)`.
        other_tables: zoo caches from other devices (`list_zoo_caches()`); each adds a
            "ms/img b32 (<device>)" column, so CPU and GPU timings sit side by side.

    Returns:
        A DataFrame with the `DISPLAY_COLUMNS` headers (plus one column per other device).
        `Weights` says "random (timed)" where latency was measured without pretrained weights.
    """
    import pandas as pd

    records = []
    for row in table["rows"]:
        record = {**row, "params_m": None if row.get("params") is None else round(row["params"] / 1e6, 2)}
        if row.get("measured_pretrained") is False and row.get("latency_ms_b1") is not None:
            record["weights"] = f"{row['weights']} (timed with random weights)"
        records.append(record)
    frame = pd.DataFrame(records, columns=list(DISPLAY_COLUMNS)).rename(columns=DISPLAY_COLUMNS)
    current = table["fingerprint"].get("key")
    for other in other_tables:
        if other["fingerprint"].get("key") == current:
            continue
        label = f"ms/img b32 ({other['fingerprint'].get('device', 'other device')})"
        timings = {n: (r.get("timings") or {}).get("32", {}).get("median_ms_per_image")
                   for n, r in other["rows"].items()}
        frame[label] = [timings.get(n) for n in frame["Backbone"]]
    return frame


def describe_cut_points(backbone) -> list[dict]:
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


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
