"""Data: choose a dataset, look at it, split it, and set up augmentation."""

from __future__ import annotations

import streamlit as st

from lib.data.gather import is_gathered
from lib.data.roots import check_server_folder, data_roots
from lib.data.sources import BUILTIN_DATASETS
from lib.errors import TransferLabError
from lib.ui import navigation, resources, state
from lib.ui.gather import gather_ui
from lib.ui.text import plain
from lib.uploads import save_upload

SOURCES = ("Built-in", "Folder on the server", "Upload a zip", "TFDS name", "Gather classes")
PREVIEW_COUNT = 8
PREVIEW_SIZE = 160


def source_index(spec: str) -> int:
    """Which source option a spec came from, so the radio starts there."""
    if is_gathered(spec):
        return 4
    if spec.startswith("tfds:"):
        return 3
    if spec.lower().endswith(".zip"):
        return 2
    return 1 if spec and not spec.startswith("builtin:") else 0


def server_folder_ui(current: str) -> str | None:
    """A folder under the server's shared data roots; anything else is refused without a listing."""
    roots = data_roots()
    if not roots:
        st.info("This server does not open its own folders to visitors: upload a zip of class folders.")
        return None
    st.caption("Folders this server shares: " + ", ".join(f"`{r}`" for r in roots))
    folder = st.text_input("Folder of class sub-folders (e.g. /data/pets with cats/ and dogs/)",
                           value=current if current.startswith("/") and not current.endswith(".zip") else "",
                           key="data_folder")
    if not (st.button("Use this folder", key="data_use_folder") and folder.strip()):
        return None
    try:
        return check_server_folder(folder)
    except TransferLabError as e:
        st.error(str(e))
        return None


def source_ui() -> str | None:
    """The source widgets; returns a new dataset spec when the person asks for one."""
    current = state.current_data_spec() or ""
    kind = st.radio("Source", SOURCES, horizontal=True, key="data_source_kind",
                    index=source_index(current))
    if kind == "Built-in":
        names = list(BUILTIN_DATASETS)
        chosen = st.selectbox("Built-in dataset", names, format_func=lambda n: f"{n}: {BUILTIN_DATASETS[n]}",
                              key="data_builtin")
        return f"builtin:{chosen}" if f"builtin:{chosen}" != current else None
    if kind == "Folder on the server":
        return server_folder_ui(current)
    if kind == "Gather classes":
        return gather_ui(current)
    if kind == "Upload a zip":
        upload = st.file_uploader("Zip of class folders", type=["zip"], key="data_zip")
        if upload is not None and st.button("Use this zip", key="data_use_zip"):
            return save_upload(upload.name, upload.getvalue())
        return None
    name = st.text_input("TFDS name (e.g. tf_flowers, cats_vs_dogs; needs the network once)",
                         key="data_tfds")
    return f"tfds:{name.strip()}" if st.button("Load", key="data_use_tfds") and name.strip() else None


def choose_dataset(spec: str) -> None:
    """Loads `spec` first and only then makes it the session's data, so a bad path changes nothing."""
    try:
        resources.get_dataset(spec, state.data_scan(spec))
    except TransferLabError as e:
        st.error(str(e))
        return
    state.set_data_spec(spec)
    st.rerun()


def overview_section(index) -> None:
    """Counts per class, a sample grid, and the data report."""
    from lib.plots.data import make_class_count_figure

    spec = state.current_data_spec()
    report = index.report
    message, rescan = st.columns([6, 1], vertical_alignment="center")
    # Folder, zip and class names are the visitor's: shown as typed, never as markdown.
    message.success(f"**{plain(index.name)}**: {plain(report.summary())}")
    if rescan.button("Rescan", icon=":material/refresh:", key="data_rescan",
                     help="Read the files again, e.g. after adding images to the folder."):
        state.rescan_data(spec)  # this session only: others keep their scan
        st.rerun()
    for warning in report.warnings:
        st.warning(plain(warning))
    left, right = st.columns([2, 3])
    left.plotly_chart(make_class_count_figure(report.counts), key="data_counts_chart")
    right.plotly_chart(resources.sample_grid_figure(spec, resources.SAMPLE_GRID_PER_CLASS,
                                                 state.data_scan(spec)),
                       key="data_samples_chart")
    with st.expander(f"Data report: {len(report.skipped)} skipped, {len(report.converted)} "
                     f"converted, {len(report.duplicates)} duplicate groups"):
        if report.skipped:
            st.markdown("**Skipped files**")
            st.dataframe([{"file": p, "reason": r} for p, r in report.skipped], hide_index=True)
        if report.converted:
            st.markdown("**Converted to RGB**")
            st.dataframe([{"file": p, "was": m} for p, m in report.converted], hide_index=True)
        if report.duplicates:
            st.markdown("**Exact duplicates** (kept in one split together)")
            st.dataframe([{"copies": ", ".join(g)} for g in report.duplicates], hide_index=True)
        if not (report.skipped or report.converted or report.duplicates):
            st.write("Every file was a usable RGB image, and there are no duplicates.")


def split_section(index) -> None:
    """Validation/test fraction sliders and the resulting counts per class."""
    from lib.data.split import split_dataset
    from lib.plots.data import make_split_count_figure

    split = state.data_split()
    c1, c2, c3 = st.columns(3)
    val = c1.slider("Validation share", 0.05, 0.5, split["val"], 0.05, key="data_val")
    test = c2.slider("Test share", 0.0, 0.4, split["test"], 0.05, key="data_test")
    seed = c3.number_input("Seed", 0, 10_000, split["seed"], key="data_seed")
    try:
        parts = split_dataset(index, val, test, int(seed))
    except TransferLabError as e:
        st.error(str(e))
        return
    state.set_data_split(val, test, int(seed))
    table = parts.counts(index.class_names)
    st.plotly_chart(make_split_count_figure(table), key="data_split_chart")


def augment_ui():
    """Augmentation settings; returns an `AugmentConfig`, or None when augmentation is off."""
    from lib.data.augment import AugmentConfig

    current = state.augment_config()
    on = st.toggle("Augment training images", value=current is not None, key="data_augment_on",
                   help="Random flips, turns, zooms, shifts and contrast on each training batch. "
                        "It helps small datasets, but turns off the feature cache.")
    if not on:
        return None
    base = current or AugmentConfig()
    c1, c2, c3, c4, c5 = st.columns(5)
    return AugmentConfig(
        flip=c1.checkbox("Horizontal flip", base.flip, key="data_aug_flip"),
        rotation=c2.slider("Rotation (turns)", 0.0, 0.5, float(base.rotation), 0.01, key="data_aug_rot"),
        zoom=c3.slider("Zoom", 0.0, 0.5, float(base.zoom), 0.05, key="data_aug_zoom"),
        translation=c4.slider("Shift", 0.0, 0.5, float(base.translation), 0.05, key="data_aug_shift"),
        contrast=c5.slider("Contrast", 0.0, 0.9, float(base.contrast), 0.05, key="data_aug_contrast"),
    )


def augment_preview_section(index, config) -> None:
    """One image augmented `PREVIEW_COUNT` ways, so the settings can be judged by eye."""
    from lib.data.augment import augment_preview
    from lib.images import load_image

    sources = [r.path for r in index.records]
    pick = st.slider("Preview image", 0, len(sources) - 1, 0, key="data_aug_pick")
    try:
        with st.spinner("Augmenting…"):
            image = load_image(sources[pick], PREVIEW_SIZE)
            images = augment_preview(image, config, n=PREVIEW_COUNT, seed=pick)
    except TransferLabError as e:
        st.error(str(e))
        return
    cols = st.columns(PREVIEW_COUNT)
    for col, image in zip(cols, images, strict=False):
        col.image(image.astype("uint8"), width="stretch")


st.title("Data")
new_spec = source_ui()
if new_spec:
    choose_dataset(new_spec)
spec = state.current_data_spec()
if not spec:
    st.info("Choose a dataset above.")
    st.stop()
try:
    dataset = state.current_dataset()
except TransferLabError as e:
    st.error(str(e))
    st.stop()
st.header("Overview")
overview_section(dataset)
st.header("Split")
split_section(dataset)
st.header("Augmentation")
augment = augment_ui()
state.set_augment_config(augment)
if augment is not None:
    augment_preview_section(dataset, augment)
navigation.page_link(navigation.TRAIN, label="Next: train a head on this data")
