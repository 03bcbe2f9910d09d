"""The one runner every benchmark script uses (the leading underscore keeps run_all from running it).

It holds what each script would otherwise repeat: the repository paths and the shared datasets
folder, the environment (quiet TensorFlow logs, optional thread counts, a private TransferLab cache),
the machine description (the zoo's fingerprint, so a benchmark and the zoo name a machine alike, plus
the load it saw) and the results file `bench/results/NAME.json`.

A script starts with the two lines that make the repository importable, then uses this module:

    ROOT = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(ROOT))
    from bench import _common as common  # noqa: E402

`--smoke` (from `parser`) asks a script for its smallest run, to check that it still starts,
computes and writes its file; its figures mean nothing, so it writes `NAME.smoke.json` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS_DIR = BENCH / "results"
DATASETS = ROOT.parent / "shared" / "datasets"
THREADS_ENV = "TRANSFERLAB_BENCH_THREADS"  # "intra,inter" or one number for both; unset: TF's default
TF_LOG_LEVEL = "3"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes (`--smoke`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true",
                   help="smallest run, to check the script works; writes NAME.smoke.json")
    return p


def missing_datasets(*names: str) -> str | None:
    """Why a script that reads `../shared/datasets/NAME` cannot run here, or None when it can."""
    missing = [n for n in names if not (DATASETS / n).is_dir()]
    return f"{', '.join(missing)} not found in {DATASETS}" if missing else None


def skip(reason: str) -> int:
    """Says why a benchmark does not run; returns the exit status for `main` (0: not a failure)."""
    print(f"skipped: {reason}")
    return 0


def prepare(*, private_cache: bool = False, threads: str | None = None) -> None:
    """Sets the environment a benchmark runs in; call it before importing TensorFlow or lib.

    Args:
        private_cache: point `TRANSFERLAB_CACHE` at a fresh temporary folder, so cold paths are
            measured cold and the user's cache is not touched. Defaults to False (the user's cache,
            e.g. weights converted by an earlier run).
        threads: TF intra- and inter-op threads, `"N"` or `"INTRA,INTER"`. Defaults to the
            `TRANSFERLAB_BENCH_THREADS` variable, else TensorFlow's own choice (as the app runs).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    if private_cache:
        os.environ["TRANSFERLAB_CACHE"] = tempfile.mkdtemp(prefix="transferlab-bench-")
    threads = threads or os.environ.get(THREADS_ENV)
    if threads:
        import tensorflow as tf

        intra, _, inter = threads.partition(",")
        tf.config.threading.set_intra_op_parallelism_threads(int(intra))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter or intra))


def load_average() -> float:
    """The 1-minute load average: on shared cores timings scale with it."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict:
    """The machine a benchmark ran on, as the zoo fingerprints it, with the load it saw.

    Returns:
        The zoo fingerprint (`cpu`, `cores`, `gpu`, `tensorflow`, `keras`, `device`, `key`) plus
        `python`, `total_ram_gb`, `tf_threads` (intra, inter; 0 = TensorFlow's choice) and
        `load_avg_1m`.
    """
    import psutil
    import tensorflow as tf

    from lib.zoo.machine import machine_fingerprint

    return {
        **machine_fingerprint(),
        "python": platform.python_version(),
        "total_ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "tf_threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                       tf.config.threading.get_inter_op_parallelism_threads()],
        "load_avg_1m": load_average(),
    }


def results_path(name: str, smoke: bool = False) -> Path:
    """`bench/results/NAME.json`, or `NAME.smoke.json` for a smoke run."""
    return RESULTS_DIR / f"{name}{'.smoke' if smoke else ''}.json"


def read_results(name: str, smoke: bool = False) -> dict:
    """The benchmark's last results file, or {} when there is none."""
    path = results_path(name, smoke)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_results(name: str, result: dict, *, smoke: bool = False, indent: int = 1) -> Path:
    """Writes `bench/results/NAME.json` (run_all reads it), adding the machine when it is missing.

    Args:
        name: the script's name, without `.py`.
        result: JSON-serialisable apart from paths and the like (written with `str`).
        smoke: a smoke run: writes `NAME.smoke.json` and marks it. Defaults to False.
        indent: JSON indent. Defaults to 1.

    Returns:
        The path written.
    """
    result = {**result, "machine": result.get("machine") or machine()}
    if smoke:
        result["smoke"] = True
    path = results_path(name, smoke)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent, default=str))
    return path
