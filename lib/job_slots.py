"""The server's job slots: how many heavy background jobs (training, attacks, zoo) run at once.

On a hosted demo a few cores serve everyone: a job started while every slot is taken queues (and
says so, see `lib.jobs.Job`) instead of slowing every running job and every page. The UI makes one
semaphore per server process (`lib.ui.resources.job_slots`) and hands it to `lib.jobs.start_job`;
this module only builds it, so it holds no global state.
"""

from __future__ import annotations

import os
import threading

MAX_JOBS_ENV = "TRANSFERLAB_MAX_JOBS"
DEFAULT_MAX_JOBS = 2


def max_jobs(raw: str | None = None) -> int:
    """The job limit: `raw`, else `TRANSFERLAB_MAX_JOBS`, else `DEFAULT_MAX_JOBS`; 0 means none.

    Args:
        raw: the limit as text. Defaults to None: read `TRANSFERLAB_MAX_JOBS`.

    Returns:
        A limit >= 0. Text that is not an integer (or is negative) gives `DEFAULT_MAX_JOBS`, so a
        typo in the environment never takes the server down.
    """
    raw = os.environ.get(MAX_JOBS_ENV, str(DEFAULT_MAX_JOBS)) if raw is None else raw
    try:
        limit = int(raw)
    except ValueError:
        return DEFAULT_MAX_JOBS
    return limit if limit >= 0 else DEFAULT_MAX_JOBS


def make_job_slots(limit: int | None = None) -> threading.BoundedSemaphore | None:
    """A semaphore with one slot per job the server may run at once.

    Args:
        limit: slots. Defaults to None: `max_jobs()`.

    Returns:
        A `threading.BoundedSemaphore`, or None when `limit` is 0 (no limit).
    """
    limit = max_jobs() if limit is None else int(limit)
    return threading.BoundedSemaphore(limit) if limit > 0 else None
