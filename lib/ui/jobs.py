"""Background jobs on a page: start one, show it live, and say how it ended.

Every page that runs a job (Train, Fine-tune, the Look inside pages, the zoo's measuring) uses the
same three pieces, so progress, ETA, Stop and the finished note look and behave the same everywhere:

* `start_job_ui(key, kind, target)` starts `target(job)` on a thread under the session key `key`;
* `job_panel(key, title, live=...)`, one `st.fragment(run_every=LIVE_REFRESH_S)`, redraws the
  progress bar (with ETA), the Stop button and the page's own live view, and reruns the page
  when the job ends;
* `finished_note(key, ...)` shows an error, a stop note or a done note once the job has ended.

Every job is recorded in the server's `JobRegistry` with its visitor: one visitor (all tabs of one
browser) runs at most `TRANSFERLAB_JOBS_PER_VISITOR` jobs, a job nobody polls any more is stopped
(see `lib.job_slots`), and `server_jobs_section()` lists every running job for a team to stop.

The job's thread never calls Streamlit; the panel reads `job.snapshot()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from lib.job_slots import jobs_per_visitor
from lib.jobs import Job, JobRegistry, format_seconds, start_job
from lib.status import DONE, FAILED, RUNNING, STOPPED
from lib.ui import resources, state
from lib.ui.text import plain

# Each redraw costs the server and the browser CPU that the job also needs; 1.5 s still looks live.
LIVE_REFRESH_S = 1.5


def start_job_ui(key: str, kind: str, target: Callable[[Job], Any]) -> Job | None:
    """Starts `target(job)` as a job under session key `key`, in one of the server's job slots,
    then reruns the page to show it. Says so, and starts nothing, while one runs there already.

    Args:
        key: the page's session key for this job (e.g. `state.TRAIN_JOB`).
        kind: what the job does, e.g. `"train"` (the sidebar names jobs by it).
        target: `target(job) -> result`; runs on the job's thread and makes no `st.*` calls.

    Returns:
        None when a job is already running under `key`, or the visitor already runs as many jobs
        as one visitor may (the function reruns otherwise).
    """
    if state.job_running(key):
        st.warning("That is still running; stop it first.")
        return None
    registry, visitor = resources.job_registry(), state.visitor_id()
    refusal = visitor_limit_message(registry, visitor, jobs_per_visitor())
    if refusal:
        st.warning(refusal)
        return None
    job = start_job(kind, target, slots=resources.job_slots(), registry=registry, owner=visitor)
    state.set_job(key, job)
    st.rerun()
    return job  # not reached: st.rerun() ends this run


def visitor_limit_message(registry: JobRegistry, visitor: str, limit: int) -> str | None:
    """Why `visitor` may not start another job, or None when they may.

    Args:
        registry: the server's jobs.
        visitor: who asks (`state.visitor_id()`).
        limit: running jobs one visitor may have; 0 means no limit.
    """
    mine = registry.running(visitor)
    if not limit or len(mine) < limit:
        return None
    kinds = ", ".join(job.kind for job in mine)
    return (f"You already run {len(mine)} job(s) on this server ({kinds}), in this tab or another; "
            f"each visitor runs at most {limit} at a time so others get a turn. Stop it or wait "
            "for it to end.")


def server_jobs_section(*, can_stop: bool) -> None:
    """Every running job of the server, with its owner, and (when `can_stop`) a Stop button each:
    on a team server anyone may stop a job left running; a hosted demo lists only.

    Args:
        can_stop: show Stop buttons for other visitors' jobs.
    """
    jobs = resources.job_registry().running()
    if not jobs:
        st.caption("No jobs are running on this server.")
        return
    me = state.visitor_id()
    for job in jobs:
        left, right = st.columns([5, 1], vertical_alignment="center")
        who = "you" if job.owner == me else job.owner or "someone"
        left.markdown(f"`{job.kind}` by {who}, unseen for {format_seconds(job.unseen_for())}")
        if (can_stop or job.owner == me) and right.button(
                "Stop", key=f"server_job_stop_{job.id}", disabled=job.stop_event.is_set()):
            job.stop()
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
    if snap["status"] == FAILED:
        st.error(plain(snap["error"]))  # may quote class or file names
    elif snap["status"] == STOPPED:
        st.warning(f"Stopped after {format_seconds(snap['elapsed'])}; {stopped}")
    elif snap["status"] == DONE and done:
        st.success(done.replace("{elapsed}", format_seconds(snap["elapsed"])))
    return snap
