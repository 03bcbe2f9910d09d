"""`DaskBackend`: jobs as tasks on Dask workers; this process only submits, polls and renders.

Decisions:
* A job is submitted once (`retries=0`) and kept by the scheduler with `fire_and_forget`, so it
  runs on when the web server that submitted it restarts. Dask reschedules a task whose worker
  died; `lib.jobs.tasks.run_job` then finds the job already started and records it as
  interrupted instead of training again: a person decides to run it again (Runs page).
* Snapshots read the run store, never the scheduler: pages keep drawing jobs while the scheduler
  is down, and any front-end sees every job.
* The client connects on the first submission and reconnects after the scheduler comes back; a
  scheduler that does not answer fails `submit` with a `TransferLabError` a page can show.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from lib.errors import TransferLabError
from lib.jobs.backend import LOCAL, JobBackend
from lib.jobs.follow import StoreJob, store_snapshot
from lib.jobs.handle import JobHandle
from lib.jobs.spec import JobSpec
from lib.jobs.store import (
    QUEUED,
    allocate_run_dir,
    finish_unstarted,
    job_dir,
    list_jobs,
    read_job,
    request_stop,
    write_job,
)
from lib.status import FAILED, STOPPED

CONNECT_TIMEOUT_S = 5.0
LOCAL_WORKERS_ENV = "TRANSFERLAB_LOCAL_WORKERS"  # worker processes of `TRANSFERLAB_SCHEDULER=local`
DEFAULT_LOCAL_WORKERS = 2
RESOURCES_ENV = "TRANSFERLAB_JOB_RESOURCES"  # e.g. "GPU=1": one job per GPU (`dask worker --resources GPU=1`)
MAX_HANDLES = 256


def parse_resources(raw: str | None = None) -> dict[str, float]:
    """`"GPU=1,MEM=2"` -> `{"GPU": 1.0, "MEM": 2.0}`; `raw` defaults to `TRANSFERLAB_JOB_RESOURCES`.

    Raises:
        TransferLabError: text that is not `NAME=NUMBER` pairs.
    """
    raw = os.environ.get(RESOURCES_ENV, "") if raw is None else raw
    resources = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, _, value = part.partition("=")
        try:
            resources[name.strip()] = float(value)
        except ValueError:
            raise TransferLabError(f"Received `{RESOURCES_ENV}={raw!r}`; write NAME=NUMBER pairs "
                                   "such as 'GPU=1'.") from None
    return resources


def local_workers(raw: str | None = None) -> int:
    """Worker processes of a local cluster: `raw`, else `TRANSFERLAB_LOCAL_WORKERS`, else 2."""
    raw = os.environ.get(LOCAL_WORKERS_ENV, "") if raw is None else raw
    try:
        return max(1, int(raw))
    except ValueError:
        return DEFAULT_LOCAL_WORKERS


class DaskBackend(JobBackend):
    """Runs jobs on a Dask cluster.

    Args:
        setting: "local" (a `LocalCluster` of worker processes, started on first use) or a
            scheduler address.
    """

    name = "dask"

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.address = "" if setting == LOCAL else setting
        self._lock = threading.Lock()
        self._client = None
        self._cluster = None
        self._futures: dict[str, Any] = {}
        self._handles: dict[str, StoreJob] = {}

    # ----- connection ----------------------------------------------------------------------------

    def client(self):
        """The connected `distributed.Client`, (re)connecting when needed.

        Raises:
            TransferLabError: the scheduler does not answer.
        """
        with self._lock:
            if self._client is not None and self._client.status == "running":
                return self._client
            self._drop_client()
            try:
                from distributed import Client, LocalCluster

                if self.setting == LOCAL and self._cluster is None:
                    self._cluster = LocalCluster(n_workers=local_workers(), threads_per_worker=1,
                                                 processes=True, dashboard_address=None)
                    self.address = self._cluster.scheduler_address
                self._client = Client(self.address, timeout=CONNECT_TIMEOUT_S,
                                      set_as_default=False)
            except (OSError, TimeoutError) as e:
                self._drop_client()
                raise TransferLabError(f"Jobs cannot be submitted: the scheduler at {self.address} "
                                       f"does not answer ({type(e).__name__}). Pages keep working; "
                                       "submit again once it is back.") from e
            return self._client

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close(timeout=1)
            except Exception:  # noqa: BLE001, S110 - a dead connection may fail to close; it is dropped anyway
                pass
            self._client = None

    def unavailable(self) -> str | None:
        """Why jobs cannot be submitted now, or None when the scheduler answers."""
        try:
            self.client()
        except TransferLabError as e:
            return str(e)
        return None

    def close(self) -> None:
        """Closes the client (and the local cluster); jobs on a remote cluster run on."""
        with self._lock:
            self._drop_client()
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    # ----- the interface -------------------------------------------------------------------------

    def submit(self, spec: JobSpec, *, local: dict | None = None) -> str:
        from distributed import fire_and_forget

        from lib.jobs.tasks import run_job, spec_names

        spec = spec.validate()
        resources = parse_resources()
        client = self.client()
        if not spec.run_dir:
            spec = spec.with_run_dir(allocate_run_dir(*spec_names(spec)))
        write_job(spec, backend=self.name, scheduler=self.address)
        try:
            future = client.submit(run_job, spec.to_dict(), key=f"transferlab-job-{spec.id}",
                                   pure=False, retries=0, resources=resources or None)
            fire_and_forget(future)
        except Exception as e:
            message = f"The job could not be submitted to the scheduler at {self.address}: {e}"
            finish_unstarted(spec.run_dir, FAILED, message)
            raise TransferLabError(message) from e
        with self._lock:
            self._futures[spec.id] = future
        return spec.id

    def handle(self, job_id: str) -> JobHandle:
        from lib.jobs.tasks import load_job_result

        with self._lock:
            if job_id not in self._handles:
                if len(self._handles) >= MAX_HANDLES:
                    self._handles.pop(next(iter(self._handles)))
                self._handles[job_id] = StoreJob(job_dir(job_id), load_job_result,
                                                 stop=lambda: self.stop(job_id))
            return self._handles[job_id]

    def stop(self, job_id: str) -> None:
        """Asks the job to stop; a job still queued is taken off the queue at once."""
        run_dir = job_dir(job_id)
        request_stop(run_dir)
        state = read_job(run_dir)
        if state is not None and state["status"] == QUEUED and finish_unstarted(run_dir, STOPPED):
            with self._lock:
                future = self._futures.pop(job_id, None)
            if future is not None:
                future.cancel()

    def list(self, owner: str | None = None) -> list[dict]:
        snaps = []
        for state in list_jobs(owner=owner, active=True):
            snap = store_snapshot(state, {})
            snap.pop("events")
            snap["unseen"] = 0.0
            snaps.append(snap)
        return snaps
