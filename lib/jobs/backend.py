"""The job backend interface; `lib.jobs.choose.get_backend` picks one by `TRANSFERLAB_SCHEDULER`.

    unset or ""         `EmbeddedBackend`: threads in this process, with the server's job slots
    local               `DaskBackend` on a `distributed.LocalCluster` of worker processes, started
                        once per process: a job that crashes takes down its worker, not the server
    tcp://HOST:PORT     `DaskBackend` with a `distributed.Client` to that scheduler

Pages and the CLI call only `submit`, `handle`, `snapshot`, `stop`, `list` and `result`, so
nothing in a page knows which backend runs. A job's state lives in its run folder
(`lib.jobs.store`), so any front-end lists and follows every job.
"""

from __future__ import annotations

from typing import Any

from lib.jobs.handle import JobHandle
from lib.jobs.spec import JobSpec

LOCAL = "local"
EMBEDDED = "embedded"


class JobBackend:
    """What runs jobs. Subclasses implement every method.

    Attributes:
        name: "embedded" or "dask".
        address: where the scheduler is ("" for embedded).
    """

    name = ""
    address = ""

    def submit(self, spec: JobSpec, *, local: dict | None = None) -> str:
        """Starts (or queues) a job and returns its id (its run folder's name).

        Args:
            spec: the job; a run folder is allocated when `spec.run_dir` is "".
            local: objects this process already holds (`backbone`, `dataset`, `result`), used by
                a backend that runs the job here; a remote backend ignores them. Defaults to None.

        Raises:
            TransferLabError: the job cannot be submitted (the scheduler does not answer).
        """
        raise NotImplementedError

    def handle(self, job_id: str) -> JobHandle:
        """The object a page keeps for the job (`snapshot()`, `stop()`, `running`)."""
        raise NotImplementedError

    def snapshot(self, job_id: str) -> dict:
        """The job's state as the UI draws it (see `lib.jobs.Job.snapshot`)."""
        return self.handle(job_id).snapshot()

    def stop(self, job_id: str) -> None:
        """Asks the job to stop after its current batch."""
        self.handle(job_id).stop()

    def list(self, owner: str | None = None) -> list[dict]:
        """Snapshots (without events) of the queued and running jobs, `owner`'s only when given."""
        raise NotImplementedError

    def result(self, job_id: str) -> Any:
        """The finished job's result (a `TrainResult` for training), None while it runs."""
        return self.handle(job_id).snapshot()["result"]

    def describe(self) -> str:
        """Where jobs run, for a person."""
        return "in this server's process" if self.name == EMBEDDED else f"on the Dask cluster at {self.address}"
