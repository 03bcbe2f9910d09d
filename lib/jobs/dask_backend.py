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
* A queued job is watched by a background thread (`check_queued`, every `QUEUE_CHECK_S`), never by
  a page's poll, so no page waits on the scheduler: while no worker offers the resources it asks
  for (`TRANSFERLAB_JOB_RESOURCES=GPU=1`, no `--resources GPU=1` worker) its message says so and
  how to start one, and it keeps waiting; once the scheduler no longer knows its key (restarted
  before a worker took it) it is marked interrupted, like a killed worker's job, to run again.
"""

from __future__ import annotations

import os
import threading
import time
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
from lib.status import FAILED, INTERRUPTED, STOPPED

CONNECT_TIMEOUT_S = 5.0
LOCAL_WORKERS_ENV = "TRANSFERLAB_LOCAL_WORKERS"  # worker processes of `TRANSFERLAB_SCHEDULER=local`
DEFAULT_LOCAL_WORKERS = 2
RESOURCES_ENV = "TRANSFERLAB_JOB_RESOURCES"  # e.g. "GPU=1": one job per GPU (`dask worker --resources GPU=1`)
MAX_HANDLES = 256
QUEUE_CHECK_S = 2.0  # how often the watcher asks the scheduler about queued jobs
# A job submitted this recently may not have reached the scheduler yet (submission is
# asynchronous), so an unknown key only means "lost" after this long.
LOST_GRACE_S = 10.0
LOST_TEXT = ("The scheduler at {address} restarted (or lost this job) before any worker started "
             "it, so it never ran. Run it again with the same config (a training: on the Runs "
             "page), or submit it again.")


def job_key(job_id: str) -> str:
    """The Dask key of a job's task."""
    return f"transferlab-job-{job_id}"


def resources_text(resources: dict[str, float]) -> str:
    """`{"GPU": 1.0}` -> "GPU=1" (as `--resources` and `TRANSFERLAB_JOB_RESOURCES` write it)."""
    return ",".join(f"{name}={value:g}" for name, value in resources.items())


def waiting_note(need: dict[str, float], workers: dict[str, dict], address: str) -> str | None:
    """Why a queued job cannot start on the workers the scheduler has now, or None when one could.

    Args:
        need: the job's resources (`{"GPU": 1.0}`), {} for none.
        workers: `Client.scheduler_info()["workers"]` (each with its `resources`).
        address: the scheduler's address, for the command to start a worker.
    """
    if not workers:
        return (f"Queued: no worker is connected to the scheduler at {address}; start one with "
                f"`dask worker {address}`.")
    if need and not any(all(float((w.get("resources") or {}).get(k, 0)) >= v for k, v in need.items())
                        for w in workers.values()):
        text = resources_text(need)
        return (f"Queued: no worker offers {text}; start one with `dask worker {address} "
                f"--resources {text}`. The job waits until one does.")
    return None


def mark_lost(run_dir, address: str) -> bool:
    """Marks a queued job that its scheduler forgot as interrupted, with `LOST_TEXT`.

    Takes the job's start claim (so a worker that still got it leaves it alone); a training gets
    an interrupted `status.json` too, so the Runs page lists it with "Run again with the same
    config".

    Returns:
        False when a worker had started the job after all (nothing is written then).
    """
    from lib import runs
    from lib.jobs.tasks import TASKS

    message = LOST_TEXT.format(address=address)
    if not finish_unstarted(run_dir, INTERRUPTED, message):
        return False
    state = read_job(run_dir) or {}
    if state.get("kind") in TASKS:
        runs.write_status(run_dir, INTERRUPTED, reason="its scheduler lost it before it started",
                          error=message)
    return True


class DaskJob(StoreJob):
    """A job on the Dask cluster, followed through the run store; while it waits, its message
    says why (the backend's watcher sees that no worker offers what it needs)."""

    def __init__(self, run_dir, load_result, backend: DaskBackend) -> None:
        super().__init__(run_dir, load_result, stop=lambda: backend.stop(self.id))
        self._backend = backend

    def snapshot(self) -> dict:
        snap = super().snapshot()
        if snap.get("queued"):
            snap["message"] = self._backend.queued_note(self.id) or snap["message"]
        return snap


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
        # Futures, handles and the watch, apart from `_lock`, which is held while connecting (up
        # to CONNECT_TIMEOUT_S when the scheduler is down): a page's Stop never waits on that.
        self._book_lock = threading.Lock()
        self._watched: set[str] = set()
        self._notes: dict[str, str] = {}
        self._watcher: threading.Thread | None = None
        self._closed = threading.Event()

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
        self._closed.set()
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
        write_job(spec, backend=self.name, scheduler=self.address, resources=resources)
        try:
            future = client.submit(run_job, spec.to_dict(), key=job_key(spec.id),
                                   pure=False, retries=0, resources=resources or None)
            fire_and_forget(future)
        except Exception as e:
            message = f"The job could not be submitted to the scheduler at {self.address}: {e}"
            finish_unstarted(spec.run_dir, FAILED, message)
            raise TransferLabError(message) from e
        with self._book_lock:
            self._futures[spec.id] = future
        self.watch(spec.id)
        return spec.id

    def handle(self, job_id: str) -> JobHandle:
        from lib.jobs.tasks import load_job_result

        with self._book_lock:
            if job_id not in self._handles:
                if len(self._handles) >= MAX_HANDLES:
                    self._handles.pop(next(iter(self._handles)))
                self._handles[job_id] = DaskJob(job_dir(job_id), load_job_result, self)
            return self._handles[job_id]

    def stop(self, job_id: str) -> None:
        """Asks the job to stop; a job still queued is taken off the queue at once."""
        run_dir = job_dir(job_id)
        request_stop(run_dir)
        state = read_job(run_dir)
        if state is not None and state["status"] == QUEUED and finish_unstarted(run_dir, STOPPED):
            with self._book_lock:
                future = self._futures.pop(job_id, None)
            if future is not None:
                future.cancel()

    def list(self, owner: str | None = None) -> list[dict]:
        snaps = []
        for state in list_jobs(owner=owner, active=True):
            snap = store_snapshot(state, {})
            snap.pop("events")
            snap["unseen"] = 0.0
            if snap["queued"] and state.get("scheduler") == self.address:
                snap["message"] = self.queued_note(snap["id"]) or snap["message"]
            snaps.append(snap)
        return snaps

    # ----- queued jobs ---------------------------------------------------------------------------

    def queued_note(self, job_id: str) -> str | None:
        """Why the queued job `job_id` waits (no worker offers its resources), or None; the job
        is watched from now on. Never waits on the scheduler."""
        self.watch(job_id)
        with self._book_lock:
            return self._notes.get(job_id)

    def watch(self, job_id: str) -> None:
        """Has the watcher thread check `job_id` while it is queued (started on first use)."""
        with self._book_lock:
            self._watched.add(job_id)
            if self._watcher is None or not self._watcher.is_alive():
                self._closed.clear()
                self._watcher = threading.Thread(target=self._watch_loop, daemon=True,
                                                 name="transferlab-dask-queue")
                self._watcher.start()

    def _watch_loop(self) -> None:
        """Checks the watched jobs every QUEUE_CHECK_S; ends once none is queued (`watch` starts
        it again) or the backend is closed."""
        while not self._closed.is_set():
            try:
                self.check_queued()
            except Exception:  # noqa: BLE001, S110 - a failed check is retried; it never ends the watch
                pass
            with self._book_lock:
                if not self._watched:
                    self._watcher = None
                    return
            self._closed.wait(QUEUE_CHECK_S)

    def check_queued(self, now: float | None = None) -> dict[str, str]:
        """One look at the watched jobs that are still queued on this backend's scheduler.

        A job whose key the scheduler does not know (`LOST_GRACE_S` after it was submitted) is
        marked interrupted (`mark_lost`); for the others, a note when no connected worker could
        run it (`waiting_note`). Jobs no longer queued stop being watched.

        Args:
            now: the `time.time()` to judge a job's age by. Defaults to None (now).

        Returns:
            The notes of the jobs that wait, by job id.
        """
        with self._book_lock:
            watched = list(self._watched)
        queued = {}
        for job_id in watched:
            state = read_job(job_dir(job_id))
            if state is not None and state["status"] == QUEUED and state.get("scheduler") == self.address:
                queued[job_id] = state
        notes: dict[str, str] = {}
        if queued:
            try:
                client = self.client()
                workers = client.scheduler_info()["workers"]
                known = client.sync(client.scheduler.get_task_status,
                                    keys=[job_key(job_id) for job_id in queued])
            except TransferLabError:
                note = (f"Queued; the scheduler at {self.address} does not answer now. The job "
                        "starts when it is back, or reads interrupted if it lost the job.")
                notes = dict.fromkeys(queued, note)
            else:
                now = time.time() if now is None else now
                for job_id, state in queued.items():
                    young = now - float(state.get("submitted") or now) < LOST_GRACE_S
                    if known.get(job_key(job_id)) is None and not young:
                        if mark_lost(job_dir(job_id), self.address):
                            with self._book_lock:
                                self._futures.pop(job_id, None)
                        continue
                    note = waiting_note(state.get("resources") or {}, workers, self.address)
                    if note:
                        notes[job_id] = note
        with self._book_lock:
            self._watched -= set(watched) - set(queued)  # ended ones; new ones stay
            self._notes = notes
        return notes
