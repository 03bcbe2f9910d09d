"""The zoo table: this machine's cache of measured rows, and the flat rows the CLI and the page show.

Results live in `<cache_dir()>/zoo/<fingerprint key>.json`. The fingerprint is the CPU model and
core count, the GPU name if TensorFlow sees one, and the TF and Keras versions, so a table measured on
another machine (or a GPU) is kept apart. Measuring refreshes only the rows asked for. Top-1/top-5
are published ImageNet figures with their source, never measured here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from lib.backbones import RANDOM, get_spec, list_specs
from lib.errors import TransferLabError
from lib.progress import ProgressFn
from lib.storage import atomic_write_text, cache_dir
from lib.zoo.machine import fingerprint_key, machine_fingerprint
from lib.zoo.measure import (
    ACCURACY_NOTE,
    DEFAULT_BATCHES,
    DEPTH_METHOD,
    LATENCY_METHOD,
    MEMORY_METHOD,
    MIN_RUNS,
    SIZE_METHOD,
    TIME_BUDGET_S,
    check_batches,
    measure_backbone,
    measure_in_subprocess,
    registry_row,
)

SCHEMA_VERSION = 1

# The columns of one zoo row, in display order (the CLI's JSON and the page use these names).
ZOO_COLUMNS = (
    "name", "family", "input_size", "feature_dim", "params", "depth", "size_mb",
    "top1", "top5", "accuracy_source", "weights", "measured_pretrained",
    "latency_ms_b1", "latency_ms_b1_p10", "latency_ms_b1_p90", "throughput_b1",
    "latency_ms_b32", "latency_ms_b32_p10", "latency_ms_b32_p90", "throughput_b32",
    "latency_ms_b1_litert", "latency_ms_b32_litert", "throughput_b32_litert", "litert_error",
    "peak_mem_mb", "device", "gpu", "host", "measured_at",
)


# ----- the cache, one file per machine fingerprint --------------------------------------------------

def zoo_cache_path(fingerprint: dict | None = None) -> Path:
    """`<cache_dir()>/zoo/<fingerprint key>.json` for this machine (or the given fingerprint)."""
    fingerprint = fingerprint or machine_fingerprint()
    return cache_dir() / "zoo" / f"{fingerprint.get('key') or fingerprint_key(fingerprint)}.json"


def load_zoo_cache(fingerprint: dict | None = None) -> dict:
    """Returns `{"schema", "fingerprint", "rows": {name: row}}` for this machine; empty rows when none yet.

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


def save_zoo_cache(data: dict) -> Path:
    """Writes a cache (as `load_zoo_cache` returns it) atomically; returns its path."""
    path = zoo_cache_path(data["fingerprint"])
    atomic_write_text(path, json.dumps(data, indent=1))
    return path


def merge_zoo_rows(fingerprint: dict, rows: dict[str, dict]) -> dict:
    """Stores rows measured elsewhere (a job on a worker whose cache folder is not this one's) in
    the cache of the machine that measured them; the other rows are kept.

    Args:
        fingerprint: the measuring machine's fingerprint (its table's key).
        rows: `{name: row}` as `measure_zoo` stores them.

    Returns:
        The updated cache (as `load_zoo_cache` returns it).
    """
    data = load_zoo_cache(fingerprint)
    data["rows"].update(rows)
    save_zoo_cache(data)
    return data


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


# ----- measuring into the cache ----------------------------------------------------------------------

def _resolve_names(names: Sequence[str] | None) -> list[str]:
    if not names:
        return [s.name for s in list_specs()]
    return [get_spec(n).name for n in names]  # raises for unknown names, listing the known ones


def measure_zoo(names: Sequence[str] | None = None, batches: Sequence[int] = DEFAULT_BATCHES, *,
                min_runs: int = MIN_RUNS, budget_s: float = TIME_BUDGET_S,
                fingerprint: dict | None = None, on_progress: ProgressFn | None = None,
                stop_event: threading.Event | None = None, isolate: bool = True,
                worker: dict | None = None) -> dict:
    """Measures backbones and stores their rows in this machine's zoo cache (other rows are kept).

    Args:
        names: registry names; defaults to every listed backbone.
        batches: batch sizes to time. Defaults to (1, 32).
        min_runs, budget_s: see `lib.zoo.measure.time_batches`.
        fingerprint: the machine fingerprint (tests pass a fake one). Defaults to this machine's.
        on_progress: `on_progress(done, total, message)` before each backbone and at the end
            (`done` < `total` there when it was stopped).
        stop_event: set it to stop after the current backbone.
        isolate: measure each backbone in a fresh Python process (comparable memory figures, and
            the calling process, e.g. the Streamlit server, does not keep 40 models' allocations).
            Backbones registered only in this process (tests) need False. Defaults to True.
        worker: where this runs (a job's worker: backend, address, host, pid), recorded in each
            measured row as `worker`. Defaults to None (not recorded).

    Returns:
        The updated cache: `{"schema", "fingerprint", "rows": {name: row}}`. A backbone that fails
        gets a row with `"error"` instead of measurements.
    """
    batches = check_batches(batches)
    names = _resolve_names(names)
    fingerprint = fingerprint or machine_fingerprint()
    data = load_zoo_cache(fingerprint)
    measure = measure_in_subprocess if isolate else measure_backbone
    measured = 0
    for i, name in enumerate(names):
        if stop_event is not None and stop_event.is_set():
            break
        if on_progress:
            on_progress(i, len(names), f"Measuring {name} ({i + 1}/{len(names)})")
        try:
            data["rows"][name] = measure(name, batches, min_runs=min_runs, budget_s=budget_s)
        except TransferLabError as e:
            data["rows"][name] = {**registry_row(get_spec(name)), "error": str(e)}
        if worker is not None:
            data["rows"][name]["worker"] = dict(worker)
        save_zoo_cache(data)  # after every row, so a stopped or killed run keeps what it measured
        measured = i + 1
    if on_progress:  # a stopped run's bar stays where it stopped
        on_progress(measured, len(names), "Done" if measured == len(names) else
                    f"Stopped after {measured} of {len(names)} backbones")
    return data


# ----- the table -------------------------------------------------------------------------------------

def flatten_row(row: dict) -> dict:
    """A cached row as a flat dict with every column in `ZOO_COLUMNS` (None where unmeasured).

    Latency columns are named by batch size (`latency_ms_b32`, `throughput_b32`, ...); batch sizes
    other than 1 and 32 add their own columns.
    """
    flat = {column: row.get(column) for column in ZOO_COLUMNS}
    for extra in ("cut_points", "preprocessing", "weights_source", "error"):
        flat[extra] = row.get(extra)
    for batch, t in (row.get("timings") or {}).items():
        flat[f"latency_ms_b{batch}"] = t["median_ms_per_image"]
        flat[f"latency_ms_b{batch}_p10"] = t["p10_ms_per_image"]
        flat[f"latency_ms_b{batch}_p90"] = t["p90_ms_per_image"]
        flat[f"throughput_b{batch}"] = t["throughput_ips"]
    for batch, t in (row.get("timings_litert") or {}).items():
        flat[f"latency_ms_b{batch}_litert"] = t["median_ms_per_image"]
        flat[f"throughput_b{batch}_litert"] = t["throughput_ips"]
    return flat


def zoo_table(names: Sequence[str] | None = None, fingerprint: dict | None = None) -> dict:
    """What the registry and this machine's cache know, without measuring anything.

    Args:
        names: registry names (or hub handles); defaults to every listed backbone.
        fingerprint: the machine fingerprint. Defaults to this machine's.

    Returns:
        `{"fingerprint", "device", "depth_method", "latency_method", "memory_method", "size_method",
        "accuracy_note", "columns", "rows"}`; `rows` are flat (see `flatten_row`), in registry order,
        and `weights` is checked now.
    """
    fingerprint = fingerprint or machine_fingerprint()
    cached = load_zoo_cache(fingerprint)["rows"]
    rows = []
    for name in _resolve_names(names):
        row = {**cached.get(name, {}), **registry_row(get_spec(name))}  # registry facts are current
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
