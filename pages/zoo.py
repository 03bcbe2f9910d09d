"""Model zoo: every backbone with published accuracy and latency measured on this machine."""

from __future__ import annotations

import streamlit as st

from lib import zoo
from lib.backbones import get_spec
from lib.backbones.hub_compat import hub_spec
from lib.errors import TransferLabError
from lib.jobs.zoo_tasks import store_result, zoo_measure_spec
from lib.plots.zoo import make_zoo_scatter_figure
from lib.ui import navigation, resources, state
from lib.ui.jobs import finished_note, job_panel, submit_job_ui

MEASURE_JOB = state.ZOO_MEASURE_JOB
SCOPES = ("The selected backbone", "The backbones shown", "Every backbone")
# The fingerprint key of the table this session shows (the machine its last measuring job ran on),
# and the id of the last job whose rows were filed in this server's cache.
TABLE_KEY = "zoo_table_key"
FILED_KEY = "zoo_measure_filed"


def header_section(table: dict) -> None:
    st.title("Model zoo")
    hosts = sorted({r["host"] for r in table["rows"] if r.get("host")})
    by = f" (host {', '.join(hosts)})" if hosts else ""
    st.caption(f"Measured on **{table['device']}**{by} · TensorFlow "
               f"{table['fingerprint']['tensorflow']}")
    st.info(
        "Top-1/top-5 are the **published** ImageNet figures (source per backbone below), not "
        "measured here. Latency, throughput and memory are measured on the machine that runs the "
        "measuring job (a Dask worker, GPU included, when this server sends jobs to a cluster); "
        "a backbone whose weights are unavailable offline is timed with random weights (same cost).",
        icon=":material/info:",
    )
    groups = zoo.weights_summary(table["rows"])
    ready = groups.get("offline", []) + groups.get("cached", [])
    st.markdown(f"**Pretrained weights available offline:** {', '.join(ready) or 'none'}.")
    missing = groups.get("download needed", [])
    if missing:
        st.caption(f"{len(missing)} backbones need a download for their ImageNet weights (random "
                   "weights otherwise, flagged wherever they are used).")


def filters_ui(table: dict) -> dict:
    """Family, weights and text filters; returns the chosen values."""
    families = sorted({r["family"] for r in table["rows"]})
    statuses = sorted({r["weights"] for r in table["rows"]})
    c1, c2, c3 = st.columns([2, 2, 1])
    return {
        "families": c1.multiselect("Family", families, key="zoo_filter_family"),
        "weights": c2.multiselect("Weights", statuses, key="zoo_filter_weights"),
        "measured_only": c3.toggle("Measured only", key="zoo_filter_measured"),
        "text": st.text_input("Search", key="zoo_filter_text", placeholder="e.g. mobilenet"),
    }


def filter_rows(rows: list[dict], chosen: dict) -> list[dict]:
    text = (chosen["text"] or "").strip().lower()
    return [r for r in rows
            if (not chosen["families"] or r["family"] in chosen["families"])
            and (not chosen["weights"] or r["weights"] in chosen["weights"])
            and (not chosen["measured_only"] or r.get("latency_ms_b1") is not None)
            and (not text or text in r["name"].lower() or text in r["family"].lower())]


def table_section(table: dict, rows: list[dict]) -> str | None:
    """The sortable table; returns the name of the row the person selected, if any."""
    frame = zoo.display_table({**table, "rows": rows}, resources.zoo_other_tables())
    event = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="zoo_table", width="stretch")
    picked = event.selection.rows if event and event.selection else []
    return frame.iloc[picked[0]]["Backbone"] if picked else None


def measure_ui(selected: str, shown: list[str]) -> None:
    """Re-measure one row, the rows shown, or all, as a background job with a progress bar."""
    if state.job_running(MEASURE_JOB):
        job_panel(MEASURE_JOB, "Measuring", stop_label="Stop after this backbone",
                  on_end=resources.refresh_zoo_tables)
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    scope = c1.radio("Re-measure", SCOPES, horizontal=True, key="zoo_measure_scope")
    batches = c2.multiselect("Batch sizes", [1, 8, 32, 64], default=[1, 32], key="zoo_measure_batches")
    st.caption("Each backbone is measured in its own process. On a few CPU cores the large models "
               "take minutes each at batch 32; a running measurement can stop after any backbone.")
    if c3.button("Re-measure", type="primary", key="zoo_measure_start", disabled=not batches):
        names = {SCOPES[0]: [selected], SCOPES[1]: shown, SCOPES[2]: None}[scope]
        submit_job_ui(MEASURE_JOB, zoo_measure_spec(names, batches))
    finished_note(MEASURE_JOB, stopped="the backbones measured so far are saved.",
                  done="Measurement done in {elapsed}.")


def file_measurement() -> None:
    """Once this session's measuring job has ended: files its rows in this server's zoo cache
    (the worker's cache folder may be another machine's) and shows the table of the machine it
    measured. Runs on every page run, so a job that ended while the person was elsewhere counts."""
    job = state.get_job(MEASURE_JOB)
    if job is None or job.running or st.session_state.get(FILED_KEY) == job.id:
        return
    st.session_state[FILED_KEY] = job.id
    fingerprint = store_result(job.snapshot()["result"])
    if fingerprint is not None:
        st.session_state[TABLE_KEY] = fingerprint.get("key") or zoo.fingerprint_key(fingerprint)
    resources.refresh_zoo_tables()


def scatter_section(rows: list[dict], selected: str) -> None:
    x = st.radio("Latency", ["latency_ms_b1", "latency_ms_b32"], horizontal=True, key="zoo_scatter_x",
                 format_func=lambda c: "batch 1" if c.endswith("b1") else "batch 32")
    st.plotly_chart(make_zoo_scatter_figure(rows, x=x, selected=selected), width="stretch")


def selected_section(name: str) -> None:
    """The session's backbone: what the registry says, and its stages and cut points."""
    spec = get_spec(name)
    st.subheader(f"Selected: {name}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Input", f"{spec.input_size} px")
    c2.metric("Feature dim", spec.feature_dim)
    c3.metric("Top-1 (published)", "–" if spec.top1 is None else f"{spec.top1:.1f}%")
    c4.metric("Weights", spec.weights_status())
    st.caption(f"Preprocessing inside the model: {spec.preprocessing}. Weights: {spec.weights_source}. "
               f"Accuracy source: {spec.accuracy_source or '–'}.")
    if st.toggle("Show output shapes (loads the backbone)", key="zoo_show_shapes"):
        with st.spinner(f"Loading {name}…"):
            backbone = resources.get_backbone(name)
        if not backbone.pretrained:
            st.warning(f"{name} has random weights here: fine for size and speed, not for features.")
        st.dataframe(zoo.describe_cut_points(backbone), hide_index=True, width="stretch")
    else:
        st.markdown("**Cut points** (bottom to top; the last is the feature layer): "
                    + " → ".join(f"`{c}`" for c in spec.cut_points))


def hub_ui() -> None:
    """Adds a TF Hub image feature-vector model (URL or trusted local folder) to this session only."""
    with st.expander("Add a TF Hub feature-vector model"):
        st.caption("A URL, or a SavedModel folder under the folders this server trusts "
                   "(TRANSFERLAB_HUB_ROOTS). Uploaded files are never loaded as models, and every "
                   "model is checked for ops that could touch files or run code before it loads.")
        c1, c2 = st.columns([4, 1])
        handle = c1.text_input("Handle (URL or local folder)", key="zoo_hub_handle",
                               placeholder="https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5")
        size = c2.number_input("Input px", 32, 1024, 224, step=8, key="zoo_hub_size")
        if st.button("Add and select", key="zoo_hub_add", disabled=not handle):
            with st.spinner("Checking and loading the hub model…"):
                try:
                    spec = hub_spec(handle.strip(), input_size=int(size))
                except TransferLabError as e:
                    st.error(str(e))
                    return
            state.add_hub_handle(spec.name)
            state.set_backbone(spec.name)
            st.success(f"Added {spec.name} ({spec.feature_dim} features) for this session and selected it.")


def with_session_handles(table: dict) -> dict:
    """The shared zoo table plus rows for the TF Hub handles this session added (others never see them)."""
    names = {r["name"] for r in table["rows"]}
    extra = [zoo.flatten_row(zoo.registry_row(get_spec(h))) for h in state.hub_handles() if h not in names]
    return {**table, "rows": table["rows"] + extra} if extra else table


def main() -> None:
    file_measurement()
    table = with_session_handles(resources.zoo_table(st.session_state.get(TABLE_KEY, "")))
    header_section(table)
    chosen = filters_ui(table)
    rows = filter_rows(table["rows"], chosen)
    picked = table_section(table, rows)
    if picked and picked != state.current_backbone_name():
        state.set_backbone(picked)
        st.rerun()  # the sidebar shows the new backbone at once
    selected = state.current_backbone_name()
    measure_ui(selected, [r["name"] for r in rows])
    scatter_section(rows, selected)
    selected_section(selected)
    hub_ui()
    navigation.page_link(navigation.DATA, label="Next: choose your data")


try:
    main()
except TransferLabError as e:
    st.error(str(e))
