"""TransferLab: the router. Page config, state defaults, the shared sidebar, then the current page.

Run with `streamlit run streamlit_app.py`. Pages live in `pages/` and are registered here with
`st.navigation` (by section, from `lib.ui.navigation.SECTIONS`), so Streamlit's legacy `pages/`
auto-discovery is never used.
"""

from __future__ import annotations

import streamlit as st

from lib.errors import TransferLabError
from lib.ui import navigation, prefill, resources, state, timing

# Job kind -> what the sidebar calls it; other kinds show their own name.
JOB_NAMES = {"train": "Training", "scratch": "From-scratch baseline", "finetune": "Fine-tuning",
             "zoo_measure": "Measuring the zoo"}
# The sidebar's job list redraws this often while a job runs (it is small, and on every page).
SIDEBAR_REFRESH_S = 3
ENGINE_POLL_S = 1


def backbone_sidebar() -> None:
    """The session's backbone, with a warning when its weights would be random."""
    name = state.current_backbone_name()
    from lib.backbones import DOWNLOAD_NEEDED, RANDOM, get_spec

    try:
        spec = get_spec(name)
        status = spec.weights_status()
    except TransferLabError as e:
        st.error(str(e))
        return
    st.markdown(f"**Backbone:** {spec.family} `{name}`")
    if status == RANDOM:
        st.warning("Random weights: this backbone has no pretrained weights.", icon="⚠️")
    elif status == DOWNLOAD_NEEDED:
        st.warning("Pretrained weights need a download; offline, random weights are used.",
                   icon="⚠️")


@st.fragment(run_every=ENGINE_POLL_S)
def backbone_sidebar_when_ready() -> None:
    """On a cold server TensorFlow is still importing in the background: show the name at once,
    and rerun the app as soon as the import is done, so the full backbone line appears."""
    if resources.engine_ready():
        st.rerun()  # a full rerun draws the whole sidebar and ends this polling
    st.markdown(f"**Backbone:** `{state.current_backbone_name()}`")
    st.caption("Starting TensorFlow…")


def data_sidebar() -> None:
    """The session's dataset by the name a person knows it by (an upload's file name)."""
    from lib.uploads import display_name

    spec = state.current_data_spec()
    st.markdown(f"**Data:** `{display_name(spec)}`" if spec else "**Data:** none chosen")


def model_sidebar() -> None:
    trained = state.trained_model()
    if trained is None:
        st.markdown("**Trained model:** none yet")
        return
    _, labels = trained
    st.markdown(f"**Trained model:** {state.trained_model_kind()} head, {len(labels)} classes")


@st.fragment(run_every=SIDEBAR_REFRESH_S)
def jobs_sidebar() -> None:
    """Running jobs of this session (any page's), redrawn while any is running."""
    for job in state.running_jobs():
        snap = job.snapshot()
        name = JOB_NAMES.get(job.kind, job.kind.replace("_", " ").capitalize())
        st.progress(snap["fraction"], text=f"{name}: {snap['message']}")


def sidebar() -> None:
    with st.sidebar:
        if resources.engine_ready():
            backbone_sidebar()
        else:
            backbone_sidebar_when_ready()
        data_sidebar()
        model_sidebar()
        if state.running_jobs():
            jobs_sidebar()


def main() -> None:
    st.set_page_config(page_title="TransferLab", page_icon=":material/school:", layout="wide")
    with timing.timed_run() as run:  # a no-op unless TRANSFERLAB_RENDER_LOG is set (the bench)
        state.init_state()
        resources.warm_engine()
        prefill.warm_caches()  # after the engine: page modules, then the shared caches (a server)
        state.sync_jobs()
        page = st.navigation(navigation.build_navigation())
        run["page"] = page.title
        sidebar()
        if page.title != navigation.HOME.title and not resources.engine_ready():
            # Every other page imports TensorFlow; say so instead of showing a blank page meanwhile.
            with st.spinner("Starting TensorFlow (only the first visit to a fresh server waits)…"):
                resources.warm_engine().join()
        page.run()


# Streamlit runs this file as __main__. A Dask LocalCluster (TRANSFERLAB_SCHEDULER=local) spawns its
# worker processes with multiprocessing, which imports the parent's main file as __mp_main__: the
# guard keeps them from running the app.
if __name__ == "__main__":
    main()
