"""The server's job slots: how many heavy background jobs (training, attacks, zoo) run at once,
how many of them one visitor may hold, and when a job nobody watches counts as abandoned.

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
# One visitor (every tab of one browser) runs at most this many jobs, so nobody holds every slot.
JOBS_PER_VISITOR_ENV = "TRANSFERLAB_JOBS_PER_VISITOR"
DEFAULT_JOBS_PER_VISITOR = 1
# A running job whose page has not polled it for this long is stopped: its browser is gone. An open
# tab polls every few seconds, and even a hidden one (throttled by the browser) about once a minute.
ABANDON_AFTER_ENV = "TRANSFERLAB_ABANDON_AFTER_S"
DEFAULT_ABANDON_AFTER_S = 600.0


def _read_limit(raw: str | None, env: str, default: float, kind: type = int) -> float:
    """`raw`, else the variable `env`, else `default`; text that is not a number >= 0 gives
    `default`, so a typo in the environment never takes the server down."""
    raw = os.environ.get(env, str(default)) if raw is None else raw
    try:
        value = kind(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


def max_jobs(raw: str | None = None) -> int:
    """The job limit: `raw`, else `TRANSFERLAB_MAX_JOBS`, else `DEFAULT_MAX_JOBS`; 0 means none.

    Args:
        raw: the limit as text. Defaults to None: read `TRANSFERLAB_MAX_JOBS`.

    Returns:
        A limit >= 0. Text that is not an integer (or is negative) gives `DEFAULT_MAX_JOBS`, so a
        typo in the environment never takes the server down.
    """
    return int(_read_limit(raw, MAX_JOBS_ENV, DEFAULT_MAX_JOBS))


def jobs_per_visitor(raw: str | None = None) -> int:
    """Running jobs one visitor may have: `raw`, else `TRANSFERLAB_JOBS_PER_VISITOR`, else
    `DEFAULT_JOBS_PER_VISITOR` (1); 0 means no limit. Bad text gives the default."""
    return int(_read_limit(raw, JOBS_PER_VISITOR_ENV, DEFAULT_JOBS_PER_VISITOR))


def abandon_after_s(raw: str | None = None) -> float:
    """Seconds without a poll after which a running job is stopped as abandoned: `raw`, else
    `TRANSFERLAB_ABANDON_AFTER_S`, else `DEFAULT_ABANDON_AFTER_S`; 0 means never."""
    return float(_read_limit(raw, ABANDON_AFTER_ENV, DEFAULT_ABANDON_AFTER_S, float))


def make_job_slots(limit: int | None = None) -> threading.BoundedSemaphore | None:
    """A semaphore with one slot per job the server may run at once.

    Args:
        limit: slots. Defaults to None: `max_jobs()`.

    Returns:
        A `threading.BoundedSemaphore`, or None when `limit` is 0 (no limit).
    """
    limit = max_jobs() if limit is None else int(limit)
    return threading.BoundedSemaphore(limit) if limit > 0 else None
