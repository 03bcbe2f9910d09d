"""Jobs yield the CPU to pages: a worker that runs a job lowers its own scheduling priority.

On one machine (`TRANSFERLAB_SCHEDULER=local`, or workers beside the front-end) a training keeps
every core busy; at the default priority the web process then waits its turn like any other and a
page takes seconds to draw. A niced job still gets every idle cycle, so it loses almost nothing
when nobody is looking at pages.
"""

from __future__ import annotations

import os
from pathlib import Path

JOB_NICE_ENV = "TRANSFERLAB_JOB_NICE"
DEFAULT_JOB_NICE = 10


def job_nice(raw: str | None = None) -> int:
    """The niceness jobs run at: `raw`, else `TRANSFERLAB_JOB_NICE`, else 10; 0 leaves it.

    Text that is not an integer in 0..19 gives the default, so a typo never stops a worker.
    """
    raw = os.environ.get(JOB_NICE_ENV, str(DEFAULT_JOB_NICE)) if raw is None else raw
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_JOB_NICE
    return value if 0 <= value <= 19 else DEFAULT_JOB_NICE


def lower_process_priority(nice: int | None = None) -> int:
    """Raises the niceness of every thread of this process to `nice` (never lowers it).

    Linux applies a niceness per thread, and the thread pools TensorFlow made earlier would keep
    theirs, so each thread (`/proc/self/task`) is set; threads made later inherit it.

    Args:
        nice: the niceness. Defaults to None: `job_nice()`.

    Returns:
        The threads changed (0 where the platform has no per-thread priorities).
    """
    nice = job_nice() if nice is None else nice
    tasks = Path("/proc/self/task")
    if not nice or not tasks.is_dir():
        return 0
    changed = 0
    for task in tasks.iterdir():
        try:
            tid = int(task.name)
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
        except (ValueError, OSError):  # a thread that ended meanwhile, or no permission
            continue
    return changed
