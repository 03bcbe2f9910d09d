"""`JobHandle`: what a page holds for a job, whichever backend runs it.

A job in this process (`lib.jobs.thread.Job`) and a job on a Dask worker, read back from the run
store (`lib.jobs.store.StoreJob`), answer the same calls, so the job panel, the sidebar and the
session's result keys never ask which backend ran it.
"""

from __future__ import annotations

from lib.errors import TransferLabError


class JobHandle:
    """The calls every job answers; subclasses set `id`, `kind`, `owner` and `stop_event`.

    Attributes:
        id: unique among the server's jobs (a run folder's name for a job with a run).
        kind: what the job does, e.g. `"train"`, `"finetune"`, `"attack"`.
        owner: who started it (a visitor id), "" when unknown.
        stop_event: has `is_set()`; set when a stop was asked for.
    """

    id: str
    kind: str
    owner: str

    @property
    def running(self) -> bool:
        """True while the job runs or waits for a slot or a worker."""
        raise NotImplementedError

    def snapshot(self) -> dict:
        """The job's state for the UI: `id, kind, status, done, total, fraction, message, eta,
        events, result, error, traceback, started, finished, elapsed, stopping` (and `owner`)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Asks the job to stop after its current batch."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job ends or `timeout` seconds pass. Returns True when it ended."""
        raise NotImplementedError

    def unseen_for(self, now: float | None = None) -> float:
        """Seconds since a page last took a snapshot (0 when the backend does not track it)."""
        return 0.0


def error_message(error: BaseException) -> str:
    """What a person reads when a job raised: a `TransferLabError`'s message as is, anything else
    as "Unexpected error: Type: text" (a bug; the traceback is kept beside it)."""
    if isinstance(error, TransferLabError):
        return str(error)
    return f"Unexpected error: {type(error).__name__}: {error}"
