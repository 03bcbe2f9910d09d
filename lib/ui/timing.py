"""Per-run timing of the app's script, for the load bench: what each page render costs the server.

With `TRANSFERLAB_RENDER_LOG=PATH` set, every full run of the app's script (a page render: the
router, the sidebar and the page; fragment reruns are not counted) appends one JSON line to PATH:
`{"page", "session", "cpu_s", "wall_s", "at"}`. `cpu_s` is the CPU time of the thread that ran the
script, so it counts the render's own work and none of the other sessions' or jobs' work that
shares the process (which wall time does count). Unset, nothing is measured or written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lib.ui import state

RENDER_LOG_ENV = "TRANSFERLAB_RENDER_LOG"


@contextmanager
def timed_run() -> Iterator[dict]:
    """Times the enclosed script run; set `["page"]` on the dict it yields to name the row.

    The row is written also when the run ends in `st.rerun()`, `st.stop()` or an error.
    """
    path = os.environ.get(RENDER_LOG_ENV)
    row: dict = {"page": ""}
    if not path:
        yield row
        return
    # The session is read first: after `st.stop()` every Streamlit call raises again, and the
    # `finally` below must still write the row.
    row["session"] = state.session_owner()
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        yield row
    finally:
        row.update(cpu_s=round(time.thread_time() - cpu, 4),
                   wall_s=round(time.perf_counter() - wall, 4), at=round(time.time(), 3))
        try:
            # One short line per write in append mode: rows from concurrent sessions never mix.
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        except OSError:
            pass  # a log that cannot be written must not break the page
