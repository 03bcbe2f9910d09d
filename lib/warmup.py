"""Imports TensorFlow and the backbone registry on a background thread.

Importing TensorFlow takes seconds; the Home page does not need it, so a cold server can show Home
at once and be ready by the time the visitor opens another page. The UI starts this once per server
process (`lib.ui.resources.warm_engine`); the thread makes no Streamlit calls.
"""

from __future__ import annotations

import threading

THREAD_NAME = "warm-engine"


def import_engine() -> None:
    """Imports TensorFlow, Keras and every registry entry (what every page but Home needs)."""
    from lib.backbones import catalog  # noqa: F401


def start_warmup() -> threading.Thread:
    """Starts `import_engine` on a daemon thread and returns the thread (`is_alive()` = not ready)."""
    thread = threading.Thread(target=import_engine, name=THREAD_NAME, daemon=True)
    thread.start()
    return thread
