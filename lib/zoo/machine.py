"""The machine a timing was taken on: CPU model and usable cores, GPU, TensorFlow and Keras versions.

Timings are comparable only on the same fingerprint, so the zoo keeps one cache file per fingerprint
key, and the benchmarks describe the machine with the same fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

# The fields that identify a machine; `device` and `key` are derived from them.
IDENTITY_FIELDS = ("cpu", "cores", "gpu", "tensorflow", "keras")


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
    import keras
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
    """A short stable hash of the fingerprint's identifying fields (`IDENTITY_FIELDS`)."""
    ident = {k: fingerprint.get(k) for k in IDENTITY_FIELDS}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
