"""Runs: every run on disk (shared by all sessions), curves overlaid, files to download."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lib.errors import TransferLabError
from lib.jobs.store import read_job
from lib.jobs.tasks import FINETUNE, SCRATCH, TRAIN, rerun_spec
from lib.runs import (
    CONFIG_FILE,
    HISTORY_FILE,
    LABELS_FILE,
    MODEL_FILE,
    list_runs,
    load_run,
    set_shared,
)
from lib.status import INTERRUPTED, RUNNING
from lib.ui import navigation, state
from lib.ui.jobs import server_jobs_section, submit_job_ui
from lib.uploads import display_name

TABLE_COLUMNS = ["name", "status", "kind", "backbone", "data", "val_accuracy", "test_accuracy",
                 "epochs", "started", "shared"]
OVERLAY_METRICS = {"val_accuracy": "Validation accuracy", "val_loss": "Validation loss",
                   "accuracy": "Training accuracy", "loss": "Training loss"}
# File name -> MIME type, in the order the buttons are drawn.
DOWNLOADS = {MODEL_FILE: "application/octet-stream", LABELS_FILE: "text/plain",
             HISTORY_FILE: "text/csv", CONFIG_FILE: "application/json"}
# A run started again lands under the job key of its kind, so its result reaches that page.
RERUN_KEYS = {TRAIN: state.TRAIN_JOB, SCRATCH: state.SCRATCH_JOB, FINETUNE: state.FINETUNE_JOB}


def with_job_status(rows: list[dict]) -> list[dict]:
    """A running run whose job's worker died on another machine reads "interrupted" at once (its
    job heartbeat is short), not after the run heartbeat's long grace."""
    for row in rows:
        if row.get("status") == RUNNING:
            job = read_job(row["path"])
            if job is not None and job["status"] == INTERRUPTED:
                row["status"] = INTERRUPTED
    return rows


def rerun_ui(row: dict) -> None:
    """For an interrupted run: what was kept, and a button that runs it again with its config."""
    if row.get("status") != INTERRUPTED:
        return
    kept = ("its last checkpoint is kept and loads (Predict, Look inside)" if row.get("has_model")
            else "it had not finished an epoch, so it left no model")
    st.warning(f"`{row['name']}` was interrupted: its process or worker stopped mid-run; {kept}.")
    if st.button("Run again with the same config", icon=":material/replay:",
                 key=f"runs_rerun_{row['name']}",
                 help="Starts a new run with the same settings and data (training starts over; "
                      "this run stays as it is)."):
        try:
            spec = rerun_spec(row["path"])
        except TransferLabError as e:
            st.error(str(e))
            return
        submit_job_ui(RERUN_KEYS.get(spec.kind, state.TRAIN_JOB), spec)


def runs_table_ui(rows: list[dict]) -> list[dict]:
    """The runs table with row selection; returns the selected rows."""
    table = [{c: display_name(row.get(c)) if c == "data" else row.get(c) for c in TABLE_COLUMNS}
             for row in rows]
    event = st.dataframe(
        table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs_table",
        column_config={
            "val_accuracy": st.column_config.NumberColumn("val accuracy", format="percent"),
            "test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
        },
    )
    return [rows[i] for i in event.selection.rows]


def overlay_section(selected: list[dict]) -> None:
    """Curves of the selected runs on one chart."""
    from lib.plots.training import make_runs_overlay_figure

    metric = st.selectbox("Curve", list(OVERLAY_METRICS), format_func=OVERLAY_METRICS.get,
                          key="runs_metric")
    histories = {}
    for row in selected:
        try:
            histories[row["name"]] = load_run(row["path"])["history"]
        except TransferLabError as e:
            st.warning(str(e))
    if histories:
        st.plotly_chart(make_runs_overlay_figure(histories, metric=metric), key="runs_overlay")


def sharing_ui(row: dict) -> None:
    """On a hosted server, the owner of a run can share it with every session (or stop sharing)."""
    if state.runs_viewer() is None or row.get("owner") != state.session_owner():
        return
    shared = st.toggle("Shared with everyone on this server", bool(row.get("shared")),
                       key=f"runs_share_{row['name']}")
    if shared != bool(row.get("shared")):
        set_shared(row["path"], shared)
        st.rerun()


def export_section(row: dict) -> None:
    """Exports the run's model for another runtime (with labels and a model card), then offers it."""
    from lib.export import FORMATS, RUNTIMES, export_archive

    if not row.get("has_model"):
        return
    left, middle, right = st.columns([2, 1, 2], vertical_alignment="bottom")
    fmt = left.selectbox("Export for", FORMATS, key=f"runs_export_fmt_{row['name']}",
                         format_func=lambda f: f"{f}: {RUNTIMES[f].split(' (')[0]}")
    key = f"runs_export_{row['name']}_{fmt}"
    if middle.button("Prepare", key=f"runs_export_go_{row['name']}", icon=":material/package_2:"):
        with st.spinner(f"Exporting {row['name']} as {fmt} (converting can take a little while)…"):
            try:
                state.put(key, export_archive(row["path"], fmt))
            except TransferLabError as e:
                st.error(str(e))
    prepared = state.get(key)
    if prepared is not None:
        file_name, data = prepared
        right.download_button(f"Download {file_name}", data=data, file_name=file_name,
                              mime="application/zip", on_click="ignore", icon=":material/download:",
                              key=f"runs_export_dl_{row['name']}_{fmt}")


def downloads_section(row: dict) -> None:
    """One download button per file the run has."""
    st.markdown(f"**Files of `{row['name']}`**")
    cols = st.columns(len(DOWNLOADS))
    for col, (name, mime) in zip(cols, DOWNLOADS.items(), strict=True):
        path = Path(row["path"]) / name
        with col:
            if path.is_file():
                # A callable defers reading model.keras until the button is pressed.
                st.download_button(name, data=lambda p=path: p.read_bytes(), file_name=name,
                                   mime=mime, on_click="ignore", key=f"runs_dl_{row['name']}_{name}",
                                   icon=":material/download:")
            else:
                st.button(name, disabled=True, key=f"runs_missing_{row['name']}_{name}",
                          help="This run has no such file (not finished, or interrupted).")


st.title("Runs")
viewer = state.runs_viewer()
st.caption("Every training run on this server, from every session. Select rows to compare them."
           if viewer is None else
           "Your runs on this server, and the runs others shared. Select rows to compare them.")
if st.button("Refresh", icon=":material/refresh:", key="runs_refresh"):
    st.rerun()
with st.expander("Jobs running on this server"):
    # A team server lets anyone stop a job left running; a hosted demo, only its owner.
    server_jobs_section(can_stop=viewer is None)
runs = with_job_status(list_runs(viewer=viewer))
if not runs:
    st.info("No runs yet.")
    navigation.page_link(navigation.TRAIN, label="Train your first model")
    st.stop()
chosen = runs_table_ui(runs)
if not chosen:
    st.info("Select one or more rows to overlay their curves and download their files.")
    st.stop()
overlay_section(chosen)
for run in chosen:
    rerun_ui(run)
    sharing_ui(run)
    downloads_section(run)
    export_section(run)
