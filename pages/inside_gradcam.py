"""Look inside · Grad-CAM: which parts of the image the evidence for a class comes from.

Widgets in, `lib.inside.gradcam` in a background job (a `lib.inside.jobs` spec, run wherever the
server runs jobs), images and a top-5 chart out.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from lib.errors import TransferLabError
from lib.inside.gradcam import colorize
from lib.inside.jobs import gradcam_spec
from lib.inside.probe import layer_names_with_maps
from lib.plots.ui import make_topk_figure
from lib.ui import state
from lib.ui.choosers import image_chooser
from lib.ui.inside import (
    InsideModel,
    class_index,
    class_options,
    header,
    stored_pixels,
    submit_inside_job,
)
from lib.ui.jobs import finished_note, job_panel

PREDICTED = "(the predicted class)"
# Each heatmap cell is drawn as a block of this many pixels a side.
HEATMAP_BLOCK = 16
INTRO = ("Which parts of the image the evidence for a class comes from (Grad-CAM on the last "
         "feature map, or a layer you choose).")


def settings_ui(probe) -> tuple[str, str] | None:
    """The class to explain and the feature-map layer; None (with an error) when there is none."""
    option = st.selectbox("Class to explain (type to search)", [PREDICTED] + class_options(probe),
                          key="inside_cam_class")
    try:
        layers = layer_names_with_maps(probe.model)
    except TransferLabError as e:
        st.error(str(e))
        return None
    layer = st.selectbox("Feature-map layer", layers[::-1], key="inside_cam_layer")
    return option, layer


def result_ui(result) -> None:
    """The overlay, the heatmap at its own resolution, and the top 5."""
    big = np.kron(result.heatmap, np.ones((HEATMAP_BLOCK, HEATMAP_BLOCK), np.float32))
    c1, c2, c3 = st.columns(3)
    c1.image(result.overlay, caption=f"Grad-CAM for {result.label} (p = {result.prob:.2f})",
             width="stretch")
    c2.image((colorize(big) * 255).astype(np.uint8), width="stretch",
             caption=f"Heatmap at {result.layer}: {result.heatmap.shape[0]}×"
                     f"{result.heatmap.shape[1]} cells")
    c3.plotly_chart(make_topk_figure(result.top, title="Top 5"), key="inside_cam_top")


def gradcam_section(chosen: InsideModel) -> None:
    probe = chosen.probe
    image, _ = image_chooser("inside_cam", probe.input_size)
    settings = settings_ui(probe)
    if settings is None:
        return
    option, layer = settings
    if st.button("Explain", type="primary", icon=":material/visibility:", key="inside_cam_run",
                 disabled=image is None or state.job_running(state.INSIDE_CAM_JOB)):
        index = None if option == PREDICTED else class_index(option)
        if (path := stored_pixels(image)) is not None:
            submit_inside_job(state.INSIDE_CAM_JOB, gradcam_spec(chosen.ref, path, index, layer),
                              lambda: {"probe": probe})
    if state.job_running(state.INSIDE_CAM_JOB):
        job_panel(state.INSIDE_CAM_JOB, "Grad-CAM")
    elif (snap := finished_note(state.INSIDE_CAM_JOB)) is not None and snap["result"] is not None:
        result_ui(snap["result"])


gradcam_section(header("Grad-CAM", INTRO))
