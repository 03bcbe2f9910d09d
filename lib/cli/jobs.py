"""`train --scheduler` and `fine-tune --scheduler`: submit to the job backend and follow the job.

With `TRANSFERLAB_SCHEDULER` (or `--scheduler`) set, the CLI submits the same `JobSpec` the pages
submit, prints progress as the worker writes it to the run store, and ends like the job: a failed
job's message becomes the CLI's error (exit 2). Ctrl-C asks the job to stop and waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lib.errors import TransferLabError

FOLLOW_POLL_S = 0.5


def submit_and_follow(spec, scheduler: str, out: str | None, bar) -> dict:
    """Submits `spec` to the backend `scheduler` and prints its progress until it ends.

    Args:
        spec: the job (`lib.jobs.tasks.train_spec`, ...).
        scheduler: "local" or a scheduler address.
        out: the run folder to use (new or empty), or None for a new one under the runs dir.
        bar: a `lib.cli.train.ProgressBar`.

    Returns:
        The final `job.json` state, with `run_dir` and `seconds`.

    Raises:
        TransferLabError: the job cannot be submitted, or it failed or was interrupted (its message).
    """
    from lib import runs
    from lib.jobs import get_backend

    if out is not None:
        run_dir = Path(out).expanduser().resolve()
        if (run_dir / runs.CONFIG_FILE).exists():
            raise TransferLabError(f"{run_dir} already holds a run; choose a new folder so that run "
                                   "is not overwritten.")
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = spec.with_run_dir(run_dir)
    start = time.perf_counter()
    backend = get_backend(scheduler)
    job_id = backend.submit(spec)
    run_dir = Path(spec.run_dir) if spec.run_dir else runs.runs_dir() / job_id
    bar.on_message(f"Submitted job {job_id} {backend.describe()}.")
    queued_note = getattr(backend, "queued_note", None)  # a Dask backend says why a job waits
    state = follow(run_dir, bar, note=(lambda: queued_note(job_id)) if queued_note else None)
    if state["status"] in ("failed", "interrupted"):
        raise TransferLabError(state.get("error") or f"The job in {run_dir} {state['status']}.")
    return {**state, "run_dir": str(run_dir), "seconds": time.perf_counter() - start}


def follow(run_dir: Path, bar, poll_s: float = FOLLOW_POLL_S,
           note: Callable[[], str | None] | None = None) -> dict:
    """Prints a job's new progress rows until it ends; the first Ctrl-C asks it to stop.

    Args:
        run_dir: the job's run folder.
        bar: a `lib.cli.train.ProgressBar`.
        poll_s: seconds between reads of the run folder. Defaults to FOLLOW_POLL_S.
        note: `note()` says why a queued job waits (e.g. "no worker offers GPU=1"), or None.
            Defaults to None. Each new text is printed once.

    Returns:
        The final state (`lib.jobs.store.read_job`).
    """
    from lib.jobs.follow import EventTail
    from lib.jobs.store import read_job, request_stop

    tail, seen, told, waiting = EventTail(run_dir), {}, None, None
    while True:
        try:
            state = read_job(run_dir) or {"status": "queued"}
            events = tail.read()
            for kind, show in (("message", lambda r: bar.on_message(r.get("text", ""))),
                               ("extract", lambda r: bar.on_extract(int(r["done"]), int(r["total"]))),
                               ("epoch", bar.on_epoch_end)):
                rows = events.get(kind, [])
                for row in rows[seen.get(kind, 0):]:
                    show(row)
                seen[kind] = len(rows)
            batches = events.get("batch", [])
            if len(batches) > seen.get("batch", 0):
                bar.on_batch_end(batches[-1])
                seen["batch"] = len(batches)
            on_status = getattr(bar, "on_status", None)  # jobs counted in steps (the zoo)
            if state["status"] == "running" and on_status is not None and state.get("message"):
                if state["message"] != seen.get("status"):
                    on_status(state)
                    seen["status"] = state["message"]
            if state["status"] == "queued":
                text = (note() if note is not None else None) or state.get("message") or "Queued."
                if text != waiting:
                    bar.on_message(text)
                    waiting = text
            if state["status"] not in ("queued", "running"):
                return state
            time.sleep(poll_s)
        except KeyboardInterrupt:
            if told == "stop":
                raise
            request_stop(run_dir)
            bar.on_message("Stopping after the current batch (Ctrl-C again to leave it running)…")
            told = "stop"
