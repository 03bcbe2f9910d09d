"""Helpers shared by the benchmark scripts (the leading underscore keeps run_all from running it)."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    """The machine a benchmark ran on, with the load it saw (results are ratios within one run)."""
    import tensorflow as tf

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "tensorflow": tf.__version__, "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}
