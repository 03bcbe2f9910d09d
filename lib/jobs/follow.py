"""Following a job through the run store: `StoreJob`, the handle a page keeps for a job that runs
in another process, and `EventTail`, which reads `events.jsonl` incrementally (a page polls every
1.5 s; each poll parses only the rows appended since the last, and `job.json` only when it changed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.errors import TransferLabError
from lib.jobs.handle import JobHandle
from lib.jobs.store import (
    EVENTS_FILE,
    INTERRUPTED_TEXT,
    QUEUED,
    JobFile,
    StopRequest,
    request_stop,
)
from lib.status import DONE, FAILED, INTERRUPTED, RUNNING, STOPPED


class EventTail:
    """Reads `events.jsonl` incrementally: each `read()` parses only what was appended since.

    Args:
        run_dir: the job's run folder.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.events: dict[str, list[dict]] = {}
        self._offset = 0
        self._partial = b""

    def read(self) -> dict[str, list[dict]]:
        """Every row so far, by kind (the same lists each call, grown)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return self.events
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(row, dict):
                self.events.setdefault(str(row.pop("kind", "message")), []).append(row)
        return self.events


def store_snapshot(state: dict, events: dict[str, list[dict]], now: float | None = None) -> dict:
    """The UI's snapshot dict (as `lib.jobs.Job.snapshot()` gives) from a job's stored state.

    A queued job reads as running (the page keeps its panel, saying it waits for a worker).
    """
    now = time.time() if now is None else now
    status = state["status"]
    done, total = state.get("done") or 0, state.get("total") or 0
    started = float(state.get("started") or state.get("submitted") or now)
    finished = state.get("finished") if status not in (QUEUED, RUNNING) else None
    return {
        "id": state.get("id", ""), "kind": state.get("kind", ""), "owner": state.get("owner", ""),
        "status": RUNNING if status == QUEUED else status,
        "queued": status == QUEUED,
        "done": done, "total": total,
        "fraction": min(1.0, done / total) if total else 0.0,
        "message": state.get("message") or "",
        "eta": state.get("eta"),
        "events": {k: list(v) for k, v in events.items()},
        "result": None,
        "error": state.get("error") if status in (FAILED, INTERRUPTED) else None,
        "traceback": state.get("traceback"),
        "started": started, "finished": finished,
        "elapsed": (float(finished) if finished else now) - started,
        "stopping": bool(state.get("stop_requested")) and status in (QUEUED, RUNNING),
        "worker": state.get("worker") or {},
        "run_dir": state.get("spec", {}).get("run_dir", ""),
        "phase": state.get("phase"), "epoch": state.get("epoch"), "metrics": state.get("metrics"),
    }


class StoreJob(JobHandle):
    """A job followed through the run store: what a page holds for a job on a Dask worker.

    Args:
        run_dir: the job's run folder.
        load_result: `load_result(run_dir) -> result`, called once the job has ended with a model.
        stop: asks the job to stop. Defaults to None: `request_stop(run_dir)`.
    """

    def __init__(self, run_dir: Path | str, load_result: Callable[[Path], Any],
                 stop: Callable[[], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.job_file = JobFile(self.run_dir)  # parsed again only when the worker rewrote it
        state = self.job_file.read() or {}
        self.id = self.run_dir.name
        self.kind = str(state.get("kind") or "")
        self.owner = str(state.get("owner") or "")
        self.stop_event = StopRequest(self.run_dir)
        self._load_result, self._stop = load_result, stop
        self._tail = EventTail(self.run_dir)
        self._lock = threading.Lock()
        self._result: Any = None
        self._result_error: str | None = None
        self._seen = time.monotonic()

    @property
    def running(self) -> bool:
        state = self.job_file.read()
        return state is not None and state["status"] in (QUEUED, RUNNING)

    def snapshot(self) -> dict:
        with self._lock:
            self._seen = time.monotonic()
            state = self.job_file.read() or {"status": INTERRUPTED, "error": INTERRUPTED_TEXT}
            snap = store_snapshot({"id": self.id, "kind": self.kind, **state}, self._tail.read())
            if snap["status"] in (DONE, STOPPED):
                snap["result"] = self._result_locked()
                if self._result_error:
                    snap["result_error"] = self._result_error
            return snap

    def _result_locked(self) -> Any:
        if self._result is None and self._result_error is None:
            try:
                self._result = self._load_result(self.run_dir)
            except TransferLabError as e:  # e.g. stopped before its first epoch: no model
                self._result_error = str(e)
        return self._result

    def result(self) -> Any:
        """The loaded result of a finished job (None while it runs or when it left no model)."""
        with self._lock:
            return self._result_locked()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
        else:
            request_stop(self.run_dir)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.25)
        return True

    def unseen_for(self, now: float | None = None) -> float:
        with self._lock:
            return (time.monotonic() if now is None else now) - self._seen

    def __repr__(self) -> str:
        return f"StoreJob(kind={self.kind!r}, id={self.id!r})"
