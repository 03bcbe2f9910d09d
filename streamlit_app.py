"""TransferLab: the router. Page config, state defaults, the shared sidebar, then the current page.

Run with `streamlit run streamlit_app.py`. Pages live in `pages/` and are registered here with
`st.navigation`, so Streamlit's legacy `pages/` auto-discovery is never used.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lib import ui_state
from lib.errors import TransferLabError

ROOT = Path(__file__).resolve().parent
# (file, title, icon). Zoo and Look inside come from other modules of the project; a page whose
# file is not there yet is simply left out of the navigation.
PAGES = [
    ("pages/home.py", "Home", ":material/school:"),
    ("pages/zoo.py", "Model zoo", ":material/table_chart:"),
    ("pages/data.py", "Data", ":material/photo_library:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/fine_tune.py", "Fine-tune", ":material/tune:"),
    ("pages/predict.py", "Predict", ":material/image_search:"),
    ("pages/look_inside.py", "Look inside", ":material/visibility:"),
    ("pages/runs.py", "Runs", ":material/history:"),
]
# Job kind -> what the sidebar calls it; other kinds show their own name.
JOB_NAMES = {"train": "Training", "scratch": "From-scratch baseline", "finetune": "Fine-tuning",
             "zoo_measure": "Measuring the zoo"}


def build_pages() -> list:
    return [st.Page(path, title=title, icon=icon, default=(i == 0))
            for i, (path, title, icon) in enumerate(PAGES) if (ROOT / path).is_file()]


def backbone_sidebar() -> None:
    """The session's backbone, with a warning when its weights would be random."""
    name = ui_state.current_backbone_name()
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


@st.fragment(run_every=1)
def backbone_sidebar_when_ready() -> None:
    """On a cold server TensorFlow is still importing in the background: show the name at once,
    and rerun the app as soon as the import is done, so the full backbone line appears."""
    if ui_state.engine_ready():
        st.rerun()  # a full rerun draws the whole sidebar and ends this polling
    st.markdown(f"**Backbone:** `{ui_state.current_backbone_name()}`")
    st.caption("Starting TensorFlow…")


def data_sidebar() -> None:
    spec = ui_state.current_data_spec()
    st.markdown(f"**Data:** `{spec}`" if spec else "**Data:** none chosen")


def model_sidebar() -> None:
    trained = ui_state.trained_model()
    if trained is None:
        st.markdown("**Trained model:** none yet")
        return
    _, labels = trained
    kind = "fine-tuned" if ui_state.get_result(ui_state.FINETUNE_RESULT) is not None else "frozen"
    st.markdown(f"**Trained model:** {kind} head, {len(labels)} classes")


@st.fragment(run_every=3)
def jobs_sidebar() -> None:
    """Running jobs of this session (any page's), redrawn every 3 s while any is running."""
    for job in ui_state.running_jobs():
        snap = job.snapshot()
        name = JOB_NAMES.get(job.kind, job.kind.replace("_", " ").capitalize())
        st.progress(snap["fraction"], text=f"{name}: {snap['message']}")


def sidebar() -> None:
    with st.sidebar:
        if ui_state.engine_ready():
            backbone_sidebar()
        else:
            backbone_sidebar_when_ready()
        data_sidebar()
        model_sidebar()
        if ui_state.running_jobs():
            jobs_sidebar()


def main() -> None:
    st.set_page_config(page_title="TransferLab", page_icon=":material/school:", layout="wide")
    ui_state.init_state()
    ui_state.warm_engine()
    ui_state.sync_jobs()
    page = st.navigation(build_pages())
    sidebar()
    if page.title != PAGES[0][1] and not ui_state.engine_ready():
        # Every other page imports TensorFlow; say so instead of showing a blank page meanwhile.
        with st.spinner("Starting TensorFlow (only the first visit to a fresh server waits)…"):
            ui_state.warm_engine().join()
    page.run()


main()
