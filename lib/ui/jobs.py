"""Background jobs on a page: start one, show it live, and say how it ended.

Every page that runs a job (Train, Fine-tune, the Look inside pages, the zoo's measuring) uses the
same three pieces, so progress, ETA, Stop and the finished note look and behave the same everywhere:

* `submit_job_ui(key, spec, local=...)` submits a `JobSpec` (training, fine-tuning, the Look
  inside jobs, the zoo's measuring) to the server's job backend (`TRANSFERLAB_SCHEDULER`: threads
  here, or Dask workers) under the session key `key`;
* `job_panel(key, title, live=...)`, one `st.fragment(run_every=LIVE_REFRESH_S)`, redraws the
  progress bar (with ETA), the Stop button and the page's own live view, and reruns the page
  when the job ends;
* `finished_note(key, ...)` shows an error, a stop note or a done note once the job has ended.

Every job is recorded in the server's `JobRegistry` with its visitor: one visitor (all tabs of one
browser) runs at most `TRANSFERLAB_JOBS_PER_VISITOR` jobs, a job nobody polls any more is stopped
(see `lib.job_slots`), and `server_jobs_section()` lists every running job for a team to stop.

The job's thread never calls Streamlit; the panel reads `job.snapshot()`, the same dict whether the
job is a thread here or a task on a worker read back from the run store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import streamlit as st

from lib.errors import TransferLabError
from lib.job_slots import jobs_per_visitor
from lib.jobs import JobBackend, JobHandle, JobRegistry, JobSpec, format_seconds
from lib.jobs.choose import scheduler_setting
from lib.status import DONE, FAILED, INTERRUPTED, RUNNING, STOPPED
from lib.ui import resources, state
from lib.ui.text import plain

# Each redraw costs the server and the browser CPU that the job also needs; 1.5 s still looks live.
LIVE_REFRESH_S = 1.5


def job_backend() -> JobBackend:
    """The server's job backend (`TRANSFERLAB_SCHEDULER`).

    Raises:
        TransferLabError: the variable names no backend.
    """
    return resources.job_backend(scheduler_setting())


def submit_job_ui(key: str, spec: JobSpec, local: dict | None = None) -> JobHandle | None:
    """Submits `spec` to the server's job backend under session key `key`, as this visitor's,
    then reruns the page to show it. Says why, and submits nothing, when a job runs there already,
    the visitor runs as many jobs as one may, or jobs cannot be submitted (scheduler down).

    Args:
        key: the page's session key for this job (e.g. `state.TRAIN_JOB`).
        spec: the job (`lib.jobs.tasks.train_spec`, ...); its owner is set to the visitor.
        local: objects this session holds (`backbone`, `dataset`, `result`), which a backend that
            runs the job in this process uses instead of loading them again. Defaults to None.

    Returns:
        None when nothing was submitted (the function reruns otherwise).
    """
    if state.job_running(key):
        st.warning("That is still running; stop it first.")
        return None
    visitor = state.visitor_id()
    try:
        backend = job_backend()
        refusal = limit_message(visitor_job_kinds(backend, visitor), jobs_per_visitor())
        if refusal:
            st.warning(refusal)
            return None
        job_id = backend.submit(replace(spec, owner=visitor), local=local)
    except TransferLabError as e:
        st.error(str(e))
        return None
    state.set_job(key, backend.handle(job_id))
    st.rerun()
    return None  # not reached: st.rerun() ends this run


def visitor_job_kinds(backend: JobBackend, visitor: str) -> list[str]:
    """The kinds of `visitor`'s running jobs: threads here, and the backend's when it is remote."""
    kinds = [job.kind for job in resources.job_registry().running(visitor)]
    if backend.name != "embedded":
        kinds += [snap["kind"] for snap in backend.list(owner=visitor)]
    return kinds


def limit_message(kinds: list[str], limit: int) -> str | None:
    """Why a visitor running jobs of `kinds` may not start another, or None when they may.

    Args:
        kinds: the kinds of the visitor's running jobs.
        limit: running jobs one visitor may have; 0 means no limit.
    """
    if not limit or len(kinds) < limit:
        return None
    return (f"You already run {len(kinds)} job(s) on this server ({', '.join(kinds)}), in this tab "
            f"or another; each visitor runs at most {limit} at a time so others get a turn. Stop "
            "it or wait for it to end.")


def visitor_limit_message(registry: JobRegistry, visitor: str, limit: int) -> str | None:
    """Why `visitor` may not start another job on this server's threads, or None when they may.

    Args:
        registry: the server's jobs.
        visitor: who asks (`state.visitor_id()`).
        limit: running jobs one visitor may have; 0 means no limit.
    """
    return limit_message([job.kind for job in registry.running(visitor)], limit)


def server_jobs_section(*, can_stop: bool) -> None:
    """Every running job of the server (threads here, and jobs on the cluster's workers from the
    run store, whoever started them), with its owner, and (when `can_stop`) a Stop button each:
    on a team server anyone may stop a job left running; a hosted demo lists only.

    Args:
        can_stop: show Stop buttons for other visitors' jobs.
    """
    rows = [(job.id, job.kind, job.owner, f"unseen for {format_seconds(job.unseen_for())}",
             job.stop_event.is_set(), job.stop) for job in resources.job_registry().running()]
    try:
        backend = job_backend()
    except TransferLabError as e:
        st.warning(str(e))
        backend = None
    if backend is not None and backend.name != "embedded":
        for snap in backend.list():
            worker = snap.get("worker") or {}
            message = snap["message"]
            if worker:
                note = f"on {worker.get('host')}: {message}"
            else:  # a queued job's message may already say so ("Queued: no worker offers ...")
                note = message if message.lower().startswith("queued") else f"queued: {message}"
            rows.append((snap["id"], snap["kind"], snap["owner"], note,
                         snap["stopping"], lambda job_id=snap["id"]: backend.stop(job_id)))
    if not rows:
        st.caption("No jobs are running on this server.")
        return
    me = state.visitor_id()
    for job_id, kind, owner, note, stopping, stop in rows:
        left, right = st.columns([5, 1], vertical_alignment="center")
        who = "you" if owner == me else owner or "someone"
        left.markdown(f"`{kind}` by {who}, {plain(note)}")
        if (can_stop or owner == me) and right.button(
                "Stop", key=f"server_job_stop_{job_id}", disabled=stopping):
            stop()
            st.rerun()


def job_snapshot(key: str) -> dict | None:
    """The job's snapshot under `key`, or None when the session has no such job."""
    job = state.get_job(key)
    return job.snapshot() if job is not None else None


def progress_text(title: str, snap: dict) -> str:
    """"Title: message — about 1 min 05 s left" (no ETA part while it is unknown)."""
    eta = f" — about {format_seconds(snap['eta'])} left" if snap["eta"] else ""
    return f"{title}: {snap['message']}{eta}" if title else f"{snap['message']}{eta}"


@st.fragment(run_every=LIVE_REFRESH_S)
def job_panel(key: str, title: str, live: Callable[[dict], None] | None = None, *,
              stop_label: str = "Stop", on_end: Callable[[], None] | None = None) -> None:
    """A running job's progress bar (with ETA), its Stop button, and the page's live view.

    Redrawn every `LIVE_REFRESH_S` while the job runs; when it has ended, `on_end()` runs and the
    whole page reruns, so the page draws the result. Stop asks the job to stop and redraws at once.

    Args:
        key: the session key of the job.
        title: what the bar calls the job, e.g. "Training".
        live: `live(snapshot)` draws the page's own live view (charts, the image so far) below the
            bar. Defaults to None.
        stop_label: the Stop button's label. Defaults to "Stop".
        on_end: called once the job has ended, before the page reruns (e.g. to drop a cached
            table). Defaults to None.
    """
    job = state.get_job(key)
    if job is None:
        return
    snap = job.snapshot()
    if snap["status"] != RUNNING:
        if on_end is not None:
            on_end()
        st.rerun()
    st.progress(snap["fraction"], text=progress_text(title, snap))
    if st.button(stop_label, icon=":material/stop:", key=f"{key}_stop", disabled=snap["stopping"]):
        job.stop()
        st.rerun(scope="fragment")
    if live is not None:
        live(snap)


def finished_note(key: str, *, stopped: str = "showing what was done.",
                  done: str | None = None) -> dict | None:
    """Says how the job under `key` ended: its error, a stop note, or (when given) a done note.

    Args:
        key: the session key of the job.
        stopped: the end of "Stopped after 1 min 05 s; ..." (what was kept). Defaults to
            "showing what was done.".
        done: a success note for a job that ran to the end; "{elapsed}" in it is replaced by the
            time it took. Defaults to None (no note: the page shows the result).

    Returns:
        The job's snapshot, or None when there is no job or it is still running.
    """
    snap = job_snapshot(key)
    if snap is None or snap["status"] == RUNNING:
        return None
    if snap["status"] in (FAILED, INTERRUPTED):
        st.error(plain(snap["error"] or "Failed."))  # may quote class or file names
    elif snap["status"] == STOPPED:
        st.warning(f"Stopped after {format_seconds(snap['elapsed'])}; {stopped}")
    elif snap["status"] == DONE and done:
        st.success(done.replace("{elapsed}", format_seconds(snap["elapsed"])))
    if snap.get("result_error"):
        st.warning(plain(snap["result_error"]))
    return snap
