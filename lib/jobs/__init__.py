"""Background jobs: one backend interface, run in this process or on a Dask cluster.

    handle.py        JobHandle: what a page holds for a job, whichever backend runs it
    thread.py        Job (a thread, lock-protected state, a stop Event), JobRegistry, start_job,
                     job_callbacks, format_seconds
    slots.py         the server's job slots, per-visitor limit, abandon time (env variables)
    spec.py          JobSpec: a job by names and JSON parameters, runnable on any worker
    store.py         job state in the run folder (job.json, events.jsonl, a stop file), StoreJob
    tasks.py         the training jobs as specs, and what a worker runs for them
    follow.py        StoreJob (a job followed through the store), EventTail
    backend.py       JobBackend: submit, handle, snapshot, stop, list, result
    choose.py        get_backend() by TRANSFERLAB_SCHEDULER
    embedded.py      EmbeddedBackend: threads here, with slots (the default)
    dask_backend.py  DaskBackend: tasks on Dask workers (`local` or tcp://HOST:PORT)

Threads make no Streamlit calls; pages poll `snapshot()` from a fragment. Importing this package
imports neither TensorFlow nor Dask.
"""

from lib.jobs.backend import JobBackend
from lib.jobs.choose import SCHEDULER_ENV, get_backend
from lib.jobs.handle import JobHandle, error_message
from lib.jobs.spec import JobSpec
from lib.jobs.thread import (
    ABANDONED_MESSAGE,
    FINISHED,
    QUEUED_MESSAGE,
    REAP_EVERY_S,
    SLOT_POLL_S,
    Job,
    JobRegistry,
    format_seconds,
    job_callbacks,
    start_job,
)
from lib.status import DONE, FAILED, RUNNING, STOPPED

__all__ = [
    "ABANDONED_MESSAGE", "DONE", "FAILED", "FINISHED", "QUEUED_MESSAGE", "REAP_EVERY_S", "RUNNING",
    "SCHEDULER_ENV", "SLOT_POLL_S", "STOPPED", "Job", "JobBackend", "JobHandle", "JobRegistry",
    "JobSpec", "error_message", "format_seconds", "get_backend", "job_callbacks", "start_job",
]
