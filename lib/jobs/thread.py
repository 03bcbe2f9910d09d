"""Background jobs in this process: a thread running `target(job)`, lock-protected state, and a stop Event.

The UI starts long work (training, fine-tuning, attacks, zoo measurement) as a `Job`, keeps the job
object in session state, and polls `job.snapshot()` from a `st.fragment(run_every=...)`. The thread
itself never calls Streamlit: it only reports through the job's methods (`append`, `set_progress`,
`set_result`), which take the lock, and reads `job.stop_event` to stop early.

A server keeps one `JobRegistry`: every job with its owner (a visitor), so one visitor can be held
to a number of running jobs, a team can list and stop them, and a job whose page stopped polling
(its browser closed) is stopped instead of running on with nobody able to stop it.

No Streamlit here, so the CLI, tests and benchmarks can run jobs too.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from lib.jobs.handle import JobHandle, error_message
from lib.status import DONE, FAILED, RUNNING, STOPPED

FINISHED = (DONE, FAILED, STOPPED)  # how a thread job ends (a job in the store can also be "interrupted")
QUEUED_MESSAGE = "Queued: other jobs are using this server's CPU; starts when one ends…"
SLOT_POLL_S = 0.25  # how often a queued job checks its stop event
REAP_EVERY_S = 15.0  # how often the registry looks for abandoned jobs while any runs
ABANDONED_MESSAGE = "Stopped: nobody had looked at this job for {minutes} min (its page was closed)."


class Job(JobHandle):
    """One unit of background work with state the UI can poll.

    Attributes:
        id: a unique string, so the UI can tell one run of a job kind from the next.
        kind: what the job does, e.g. `"train"`, `"finetune"`, `"attack"`.
        stop_event: set by `stop()`; the target checks it (lib functions take it as `stop_event`).
    """

    def __init__(self, kind: str, target: Callable[[Job], Any],
                 slots: threading.Semaphore | None = None) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.stop_event = threading.Event()
        self._target = target
        self._slots = slots
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._status = RUNNING
        self._done = 0
        self._total = 0
        self._message = "Starting…"
        self._eta: float | None = None
        self._events: dict[str, list[dict]] = {}
        self._result: Any = None
        self._error: str | None = None
        self._traceback: str | None = None
        self._started = time.time()
        self._finished: float | None = None
        self._seen = time.monotonic()  # the last `snapshot()`: the UI polling it
        self.owner = ""  # set by `JobRegistry.register`

    # ----- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Job:
        """Starts the thread (a daemon, so a stuck job never keeps the server from exiting)."""
        if self._thread is not None:
            raise RuntimeError(f"Job {self.kind}/{self.id} was already started.")
        with self._lock:
            self._started = time.time()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.kind}-{self.id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Asks the target to stop; it finishes its current batch and returns."""
        self.stop_event.set()
        with self._lock:
            if self._status == RUNNING:
                self._message = "Stopping after the current batch…"

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the thread ends or `timeout` seconds pass. Returns True when it ended."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._status == RUNNING

    def unseen_for(self, now: float | None = None) -> float:
        """Seconds since the UI last took a snapshot (`time.monotonic()` clock)."""
        with self._lock:
            return (time.monotonic() if now is None else now) - self._seen

    def _wait_for_slot(self) -> bool:
        """Waits for one of the server's job slots; False when stopped while still queued."""
        if self._slots is None or self._slots.acquire(blocking=False):
            return True
        self.set_message(QUEUED_MESSAGE)
        while not self._slots.acquire(timeout=SLOT_POLL_S):
            if self.stop_event.is_set():
                return False
        if self.stop_event.is_set():  # stopped just as a slot came free: hand it on
            self._slots.release()
            return False
        with self._lock:
            # The ETA is estimated from the time since start; time spent queued is not work.
            self._started = time.time()
            self._message = "Starting…"
        return True

    def _run(self) -> None:
        if not self._wait_for_slot():
            self._finish(STOPPED)
            return
        try:
            self._run_target()
        finally:
            if self._slots is not None:
                self._slots.release()

    def _run_target(self) -> None:
        try:
            result = self._target(self)
        except Exception as e:  # noqa: BLE001 - any bug must end the job visibly, not kill silently
            self._finish(FAILED, error=error_message(e), tb=traceback.format_exc())
        else:
            if result is not None:
                self.set_result(result)
            self._finish(STOPPED if self.stop_event.is_set() else DONE)

    def _finish(self, status: str, error: str | None = None, tb: str | None = None) -> None:
        with self._lock:
            self._status = status
            self._error = error
            self._traceback = tb
            self._finished = time.time()
            self._eta = 0.0 if status == DONE else None
            self._message = {DONE: "Done.", STOPPED: "Stopped.", FAILED: error or "Failed."}[status]
            if status == DONE and self._total:
                self._done = self._total

    # ----- reporting (called from the thread) ----------------------------------------------------

    def append(self, kind: str, row: dict) -> None:
        """Records one event row, e.g. `append("batch", {...})` or `append("epoch", {...})`.

        The row is copied, so the caller may reuse its dict.
        """
        row = dict(row)
        row.setdefault("time", time.time() - self._started)
        with self._lock:
            self._events.setdefault(kind, []).append(row)

    def set_progress(self, done: int | float, total: int | float, message: str | None = None,
                     eta: float | None = None) -> None:
        """Updates the progress bar state.

        Args:
            done: units finished.
            total: units in all (0 when unknown).
            message: what is happening now, for a person. Defaults to None (keep the last one).
            eta: seconds left. Defaults to None: estimated from the elapsed time and `done/total`.
        """
        now = time.time()
        with self._lock:
            self._done, self._total = done, total
            if message is not None:
                self._message = message
            if eta is None and total and done:
                eta = (now - self._started) * (total - done) / done
            self._eta = eta

    def set_message(self, message: str) -> None:
        """Changes the status line without touching the numbers."""
        with self._lock:
            self._message = message

    def set_result(self, result: Any) -> None:
        """Stores the job's result (also done automatically with the target's return value)."""
        with self._lock:
            self._result = result

    # ----- reading (called from the UI) ----------------------------------------------------------

    def snapshot(self) -> dict:
        """A consistent copy of the state, taken under the lock (cheap: lists are shallow-copied).

        Returns:
            A dict with `id, kind, status, done, total, fraction, message, eta, events` (kind ->
            list of row dicts), `result, error, traceback, started, finished, elapsed, stopping`.
        """
        return self._snapshot(touch=True)

    def peek(self) -> dict:
        """A snapshot that does not count as the page looking (for server-wide job lists)."""
        return self._snapshot(touch=False)

    def _snapshot(self, *, touch: bool) -> dict:
        with self._lock:
            if touch:
                self._seen = time.monotonic()
            end = self._finished or time.time()
            return {
                "id": self.id,
                "kind": self.kind,
                "status": self._status,
                "done": self._done,
                "total": self._total,
                "fraction": min(1.0, self._done / self._total) if self._total else 0.0,
                "message": self._message,
                "eta": self._eta,
                "events": {k: list(v) for k, v in self._events.items()},
                "result": self._result,
                "error": self._error,
                "traceback": self._traceback,
                "started": self._started,
                "finished": self._finished,
                "elapsed": end - self._started,
                "stopping": self.stop_event.is_set() and self._status == RUNNING,
                "owner": self.owner,
            }

    def __repr__(self) -> str:
        return f"Job(kind={self.kind!r}, id={self.id!r}, status={self._status!r})"


def format_seconds(seconds: float | None) -> str:
    """A duration for a person: "45 s", "3 min 20 s", "1 h 05 min"; "–" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class JobRegistry:
    """Every job one server started, with its owner: the server-wide list behind per-visitor limits,
    the team's job list and the stopping of abandoned jobs. Thread-safe.

    Args:
        abandon_after: seconds without a `snapshot()` after which a running job is stopped as
            abandoned; 0 never stops one. Defaults to 0.
        reap_every: how often a background thread looks for abandoned jobs while any job runs.
            Defaults to `REAP_EVERY_S`.
    """

    def __init__(self, abandon_after: float = 0.0, reap_every: float = REAP_EVERY_S) -> None:
        if abandon_after < 0 or reap_every <= 0:
            raise ValueError(f"Received `abandon_after={abandon_after}`, `reap_every={reap_every}`;"
                             " use abandon_after >= 0 and reap_every > 0.")
        self.abandon_after = float(abandon_after)
        self.reap_every = float(reap_every)
        self._lock = threading.Lock()
        self._jobs: list[Job] = []
        self._reaper: threading.Thread | None = None

    def register(self, job: Job, owner: str) -> Job:
        """Records `job` as `owner`'s and forgets jobs that have ended. Returns the job."""
        job.owner = owner
        with self._lock:
            self._jobs = [j for j in self._jobs if j.running] + [job]
            if self.abandon_after and (self._reaper is None or not self._reaper.is_alive()):
                self._reaper = threading.Thread(target=self._reap_loop, name="job-reaper",
                                                daemon=True)
                self._reaper.start()
        return job

    def running(self, owner: str | None = None) -> list[Job]:
        """The running jobs, oldest first; only `owner`'s when given."""
        with self._lock:
            jobs = list(self._jobs)
        return [j for j in jobs if j.running and (owner is None or j.owner == owner)]

    def find(self, job_id: str) -> Job | None:
        """The registered job with id `job_id`, or None."""
        with self._lock:
            return next((j for j in self._jobs if j.id == job_id), None)

    def reap(self, now: float | None = None) -> list[Job]:
        """Stops every running job nobody has polled for `abandon_after` seconds.

        Args:
            now: the `time.monotonic()` time to judge by. Defaults to None (now).

        Returns:
            The jobs it stopped.
        """
        if not self.abandon_after:
            return []
        stale = [j for j in self.running() if j.unseen_for(now) > self.abandon_after and
                 not j.stop_event.is_set()]
        for job in stale:
            job.stop()
            job.set_message(ABANDONED_MESSAGE.format(minutes=round(self.abandon_after / 60)))
        return stale

    def _reap_loop(self) -> None:
        while self.running():
            time.sleep(self.reap_every)
            self.reap()


def start_job(kind: str, target: Callable[[Job], Any],
              slots: threading.Semaphore | None = None, *, registry: JobRegistry | None = None,
              owner: str = "") -> Job:
    """Creates and starts a job.

    Args:
        kind: what the job does, e.g. `"train"`.
        target: `target(job) -> result`; it reports through `job` and checks `job.stop_event`.
            A `TransferLabError` it raises becomes the job's error message as is; any other
            exception becomes "Unexpected error: ..." with the traceback kept in `traceback`.
        slots: a semaphore shared by every job of the server (a hosted demo on a few cores):
            the job queues, saying so, until a slot is free. Defaults to None (start at once).
        registry: the server's `JobRegistry`, to record the job in. Defaults to None.
        owner: who started it (a visitor id), recorded with the job. Defaults to "".

    Returns:
        The running job.
    """
    job = Job(kind, target, slots)
    if registry is not None:
        registry.register(job, owner)
    return job.start()


def job_callbacks(job: Job, *, epochs: int | None = None, epoch_offset: int = 0) -> dict[str, Callable]:
    """Keyword callbacks that record lib progress into `job`, for lib functions that take them.

    The keys follow the project's callback names: `on_batch_end(row)`, `on_epoch_end(row)`,
    `on_extract(done, total)`, `on_progress(done, total, message)`, `on_message(text)`; pass only
    the keys the lib function accepts. Batch rows (`epoch` and `batch` counted from 1, `batches`,
    `eta_seconds`) also drive the progress bar.

    Args:
        job: the job to record into.
        epochs: epochs in this job, for the progress bar. Defaults to None: read `epochs` from the
            rows when they carry it.
        epoch_offset: epochs already in the history before this job (fine-tuning continues the
            frozen phase's numbering). Defaults to 0.
    """

    def on_batch_end(row: dict) -> None:
        job.append("batch", row)
        batches = int(row.get("batches") or 0)
        total_epochs = epochs or int(row.get("epochs") or 0) - epoch_offset
        if batches and total_epochs > 0:
            epoch = int(row.get("epoch", 1)) - epoch_offset
            batch = int(row.get("batch", 1))
            done = min((epoch - 1) * batches + batch, total_epochs * batches)
            phase = str(row.get("phase") or "training").replace("_", "-")
            job.set_progress(done, total_epochs * batches,
                             f"{phase.capitalize()}: epoch {epoch}/{total_epochs}, "
                             f"batch {batch}/{batches}", eta=row.get("eta_seconds"))

    def on_epoch_end(row: dict) -> None:
        job.append("epoch", row)

    def on_extract(done: int, total: int) -> None:
        job.append("extract", {"done": done, "total": total})
        job.set_progress(done, total, f"Extracting features: {done}/{total} images")

    def on_progress(done: int, total: int, message: str = "") -> None:
        job.set_progress(done, total, message or None)

    def on_message(text: str) -> None:
        job.append("message", {"text": text})
        job.set_message(text)

    return {"on_batch_end": on_batch_end, "on_epoch_end": on_epoch_end, "on_extract": on_extract,
            "on_progress": on_progress, "on_message": on_message}
