"""Job state in the run store: any process (another front-end, a restarted server, the CLI) lists
and follows a job by reading its run folder.

    <run>/job.json      the spec, where it runs (`worker`), status (queued | running | done |
                        stopped | failed | interrupted), phase, epoch, batch, done/total, ETA,
                        latest metrics, message, error, and a heartbeat renewed every JOB_WRITE_S
    <run>/events.jsonl  append-only progress rows: {"kind": "batch" | "epoch" | "extract" |
                        "message", ...the row}
    <run>/stop          present once someone asked the job to stop (honoured within one batch)

`job.json` is kept apart from the run's `status.json` on purpose: `status.json` is written by the
run recorder's heartbeat thread, and a second writer merging progress into it could put "running"
back over the final "done". The worker side writes through `JobReporter` (the same reporting calls
as a thread `Job`, so `lib.jobs.job_callbacks` feeds either); readers use `read_job`, `EventTail`
and `StoreJob`, which give the same snapshot dict a thread job gives.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lib import runs
from lib.errors import TransferLabError
from lib.jobs.spec import JobSpec
from lib.status import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED
from lib.storage import runs_dir

JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
STOP_FILE = "stop"
STARTED_FILE = ".job-started"  # created exclusively by the one process that runs the job
JOB_WRITE_S = 1.0  # progress and heartbeat reach job.json this often (a page polls every 1.5 s)
# A running job whose heartbeat is older than this is interrupted: its worker died on another
# machine (on the same machine a dead pid tells at once).
JOB_STALE_S = 12.0
JOB_STATUSES = (QUEUED, RUNNING, DONE, STOPPED, FAILED, INTERRUPTED)
METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
QUEUED_TEXT = "Queued: waiting for a free worker…"
INTERRUPTED_TEXT = ("The worker running this job stopped (killed, restarted or out of memory). Its "
                    "last checkpoint is kept: on the Runs page, run it again with the same config.")
RESTART_TEXT = ("The worker running this job stopped (killed, restarted or out of memory). A job "
                "of this kind keeps nothing to resume from: start it again from its page.")
FINAL_TEXT = {DONE: "Done.", STOPPED: "Stopped.", FAILED: "Failed.", INTERRUPTED: INTERRUPTED_TEXT}
TRAINING_TASKS = "lib.jobs.tasks:"  # the tasks that write checkpoints (train, scratch, fine-tune)


def interrupted_text(state: dict) -> str:
    """What to tell about a job whose worker died: a training's checkpoint and "Run again" on the
    Runs page, or (Look inside, the zoo) that the job is simply started again from its page."""
    task = str((state.get("spec") or {}).get("task", ""))
    return INTERRUPTED_TEXT if not task or task.startswith(TRAINING_TASKS) else RESTART_TEXT


def job_dir(job_id: str, root: Path | None = None) -> Path:
    """The run folder of job `job_id` (its name) under `root`.

    Raises:
        TransferLabError: an id that is not a plain folder name.
    """
    if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise TransferLabError(f"Received `job_id={job_id!r}`, which is not a job of this server.")
    return (Path(root) if root is not None else runs_dir()) / job_id


def allocate_run_dir(backbone: str, data: str, root: Path | None = None) -> Path:
    """A new, empty, unclaimed run folder named like every run (`<UTC time>-<backbone>-<data>`).

    The training that runs in it claims it (`lib.runs.claim_run_dir`), on whichever machine.
    """
    return runs.new_run_dir(SimpleNamespace(backbone=backbone, data=data), root, claim=False)


def _plain(value: Any) -> Any:
    """JSON for numpy numbers and paths in progress rows."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def write_job(spec: JobSpec, **fields) -> dict:
    """Writes a submitted job's `job.json` (status queued) into its run folder. Returns it."""
    state = {"id": spec.id, "kind": spec.kind, "owner": spec.owner, "spec": spec.to_dict(),
             "status": QUEUED, "message": QUEUED_TEXT, "submitted": time.time(), **fields}
    runs.write_json(Path(spec.run_dir) / JOB_FILE, state)
    return state


def _pid_gone(worker: dict) -> bool:
    """True when the worker ran on this machine and its process has ended."""
    if worker.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(worker.get("pid") or -1), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, OverflowError, TypeError, ValueError):
        return False
    return False


def read_job(run_dir: Path | str, now: float | None = None) -> dict | None:
    """A job's state from its run folder, a dead running job turned into "interrupted".

    Args:
        run_dir: the run folder.
        now: the `time.time()` to judge the heartbeat by. Defaults to None (now).

    Returns:
        The `job.json` dict (`status` always one of `JOB_STATUSES`, `stop_requested` added), or
        None when the folder holds no job.
    """
    run_dir = Path(run_dir)
    state = runs.read_json(run_dir / JOB_FILE)
    return None if state is None else judge_job(state, run_dir, now)


def judge_job(state: dict, run_dir: Path | str, now: float | None = None) -> dict:
    """`state` (a parsed `job.json`, changed in place) as it stands now: an unknown status reads
    failed, a running job whose worker died or went silent reads interrupted, and
    `stop_requested` says whether a stop file is there.

    Args:
        state: the parsed `job.json`.
        run_dir: the run folder (for the stop file).
        now: the `time.time()` to judge the heartbeat by. Defaults to None (now).
    """
    if state.get("status") not in JOB_STATUSES:
        state["status"] = FAILED
    if state["status"] == RUNNING:
        now = time.time() if now is None else now
        worker = state.get("worker") or {}
        if _pid_gone(worker) or now - float(state.get("heartbeat") or 0) > JOB_STALE_S:
            text = interrupted_text(state)
            state.update(status=INTERRUPTED, message=text, error=text)
    state["stop_requested"] = (Path(run_dir) / STOP_FILE).exists()
    return state


class JobFile:
    """One job's `job.json`, parsed again only when the file changed: what a page polls.

    A page redraws each running job every 1.5 s and asks whether it runs several times per
    redraw, while the worker rewrites the file about once a second (always through a new file
    renamed into place, so a rewrite changes the inode even within one clock tick). A read costs a
    `stat`; the liveness judgement (`judge_job`) is made on every read.

    Args:
        run_dir: the job's run folder.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOB_FILE
        self.parses = 0  # how often the file was parsed (the tests count them)
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._state: dict | None = None

    def read(self, now: float | None = None) -> dict | None:
        """Like `read_job(run_dir, now)`."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key != self._key:
                self._state, self._key = runs.read_json(self.path), key
                self.parses += 1
            if self._state is None:
                return None
            # A copy: the judgement changes it, and callers may keep or change what they get.
            return judge_job(dict(self._state), self.run_dir, now)


def request_stop(run_dir: Path | str) -> None:
    """Asks the job in `run_dir` to stop (from any process that sees the run store)."""
    path = Path(run_dir) / STOP_FILE
    if Path(run_dir).is_dir():
        path.touch(exist_ok=True)


class StopRequest:
    """A stop flag with the `threading.Event` calls lib functions use (`is_set`, `set`, `wait`),
    set by a `stop` file in the run folder or by an in-process event.

    Args:
        run_dir: the job's run folder.
        also: an event in this process that stops the job too (a thread job's). Defaults to None.
    """

    def __init__(self, run_dir: Path | str, also: threading.Event | None = None) -> None:
        self.path = Path(run_dir) / STOP_FILE
        self.also = also
        self._set = False

    def is_set(self) -> bool:
        if not self._set:
            self._set = bool(self.also is not None and self.also.is_set()) or self.path.exists()
            if self._set and self.also is not None:
                self.also.set()  # the thread job then ends "stopped" too
        return self._set

    def set(self) -> None:
        self._set = True
        request_stop(self.path.parent)
        if self.also is not None:
            self.also.set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True


class JobReporter:
    """The worker side of a job: writes its progress to the run store. Thread-safe.

    It has the reporting calls of a thread `Job` (`append`, `set_progress`, `set_message`), so
    `lib.jobs.job_callbacks(reporter)` feeds it; a daemon thread renews the heartbeat.

    Args:
        spec: the job (its `run_dir` must exist).
        worker: where it runs, e.g. `{"backend": "dask", "address": ..., "host": ..., "pid": ...}`;
            recorded in `job.json` and in the run's `config.json`.
        write_every: seconds between writes of `job.json`. Defaults to `JOB_WRITE_S`.
    """

    def __init__(self, spec: JobSpec, worker: dict, write_every: float = JOB_WRITE_S) -> None:
        self.spec, self.worker = spec, dict(worker)
        self.run_dir = Path(spec.run_dir)
        self._write_every = write_every
        self._lock = threading.Lock()
        self._state = runs.read_json(self.run_dir / JOB_FILE) or write_job(spec)
        self._started = time.time()
        self._events = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._config_noted = False

    def start(self) -> bool:
        """Marks the job running on this worker, once.

        Returns:
            False when the job was started before (a scheduler retrying it after its worker
            died): it must not run twice into the same folder.
        """
        try:
            fd = os.open(self.run_dir / STARTED_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.worker))
        with self._lock:
            self._events = open(self.run_dir / EVENTS_FILE, "a", encoding="utf-8")  # noqa: SIM115
            self._state.update(status=RUNNING, started=self._started, worker=self.worker,
                               message="Starting…", done=0, total=0, eta=None)
            self._write_locked()
        self._thread = threading.Thread(target=self._beat, name=f"job-store-{self.spec.id}",
                                        daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self._write_every):
            with self._lock:
                if not self._stop.is_set():
                    self._write_locked()

    def _write_locked(self) -> None:
        self._state["heartbeat"] = time.time()
        runs.write_json(self.run_dir / JOB_FILE, self._state)

    def note_worker_in_config(self) -> None:
        """Adds `worker` to the run's `config.json` once the run wrote one (training claims and
        fills an empty folder, so it cannot be written before)."""
        config = runs.read_config(self.run_dir)
        if config and config.get("worker") != self.worker:
            runs.write_config(self.run_dir, {**config, "worker": self.worker})
        self._config_noted = bool(config)

    # ----- reporting (the calls of lib.jobs.Job) -------------------------------------------------

    def append(self, kind: str, row: dict) -> None:
        """Appends one progress row to `events.jsonl` and keeps the latest facts for `job.json`."""
        row = dict(row)
        row.setdefault("time", time.time() - self._started)
        line = json.dumps({**row, "kind": kind}, default=_plain)
        if not self._config_noted:
            self.note_worker_in_config()
        with self._lock:
            if self._events is not None:
                self._events.write(line + "\n")
                self._events.flush()
            if kind in ("batch", "epoch"):
                self._state.update({k: row[k] for k in ("phase", "epoch", "batch", "batches")
                                    if k in row})
            if kind == "epoch":
                self._state["metrics"] = {k: _plain(row[k]) for k in METRIC_KEYS
                                          if row.get(k) is not None}

    def set_progress(self, done: int | float, total: int | float, message: str | None = None,
                     eta: float | None = None) -> None:
        """The progress bar: `done` of `total`, what happens now, seconds left (estimated when None)."""
        with self._lock:
            if eta is None and total and done:
                eta = (time.time() - self._started) * (total - done) / done
            self._state.update(done=done, total=total, eta=eta)
            if message is not None:
                self._state["message"] = message

    def set_message(self, message: str) -> None:
        with self._lock:
            self._state["message"] = message

    def finish(self, status: str, error: str | None = None, traceback: str | None = None,
               result: str | None = None) -> None:
        """Writes the final state and stops the heartbeat.

        Args:
            status: DONE, STOPPED, FAILED or INTERRUPTED.
            error: the message of a failed job, for a person. Defaults to None.
            traceback: the traceback of an unexpected error. Defaults to None.
            result: where the result is (the run folder). Defaults to None.
        """
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.note_worker_in_config()
        with self._lock:
            message = error if status in (FAILED, INTERRUPTED) and error else FINAL_TEXT[status]
            self._state.update(status=status, error=error, traceback=traceback, message=message,
                               finished=time.time(), result=result)
            if status == DONE:
                self._state.update(done=self._state.get("total") or 0, eta=0.0)
            self._write_locked()
            if self._events is not None:
                self._events.close()
                self._events = None


def mark_interrupted(run_dir: Path | str) -> None:
    """Records that a job's worker died mid-job (called by the retry the scheduler starts)."""
    run_dir = Path(run_dir)
    state = runs.read_json(run_dir / JOB_FILE) or {}
    text = interrupted_text(state)
    state.update(status=INTERRUPTED, message=text, error=text, finished=time.time())
    runs.write_json(run_dir / JOB_FILE, state)
    if (runs.read_json(run_dir / runs.STATUS_FILE) or {}).get("status") == RUNNING:
        runs.write_status(run_dir, INTERRUPTED, reason="its worker stopped mid-run")


def list_jobs(root: Path | None = None, *, owner: str | None = None,
              active: bool = False) -> list[dict]:
    """The jobs in the run store, newest first, as `read_job` states.

    Args:
        root: where runs live. Defaults to None: `lib.storage.runs_dir()`.
        owner: only this owner's. Defaults to None (everyone's).
        active: only queued and running ones. Defaults to False.
    """
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    states = []
    for child in root.iterdir():
        if child.name.startswith(".") or not (child / JOB_FILE).is_file():
            continue
        state = read_job(child)
        if state is None or (owner is not None and state.get("owner") != owner):
            continue
        if active and state["status"] not in (QUEUED, RUNNING):
            continue
        states.append(state)
    return sorted(states, key=lambda s: float(s.get("submitted") or 0), reverse=True)


def finish_unstarted(run_dir: Path | str, status: str, error: str | None = None) -> bool:
    """Ends a job that no worker has started (stopped while queued, or never submitted).

    Takes the job's start claim, so a worker that picks it up later leaves it alone.

    Returns:
        False when a worker had started it already (nothing is written then).
    """
    run_dir = Path(run_dir)
    try:
        fd = os.open(run_dir / STARTED_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    state = runs.read_json(run_dir / JOB_FILE) or {}
    state.update(status=status, error=error, message=error or FINAL_TEXT[status],
                 finished=time.time())
    runs.write_json(run_dir / JOB_FILE, state)
    return True
