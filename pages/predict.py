"""Predict: top-k classes for uploaded or camera photos, from this session's model, a saved run,
or the backbone's ImageNet classifier."""

from __future__ import annotations

import streamlit as st

from lib.errors import TransferLabError
from lib.plots.ui import make_topk_figure
from lib.predict import FilePrediction, predict_each
from lib.ui import navigation, state
from lib.ui.choosers import (
    IMAGE_TYPES,
    describe,
    load_classifier_for,
    model_chooser,
    random_weights_warning,
)
from lib.ui.text import plain

TOP_K = 5


def images_ui() -> list[tuple[str, bytes]]:
    """Uploaded files and a camera shot, as `(name, bytes)`."""
    uploads = st.file_uploader("Upload images", type=IMAGE_TYPES, accept_multiple_files=True,
                               key="predict_uploads")
    images = [(f.name, f.getvalue()) for f in uploads or []]
    if st.toggle("Use the camera", key="predict_use_camera"):
        shot = st.camera_input("Take a photo", key="predict_camera")
        if shot is not None:
            images.append(("camera", shot.getvalue()))
    return images


def results_section(images: list[tuple[str, bytes]], results: list[FilePrediction]) -> None:
    """Each image beside its top-k chart; a file that could not be read says which and why."""
    for (name, data), result in zip(images, results, strict=True):
        if result.top is None:
            st.error(f"**{plain(name)}** could not be read: {plain(result.error)}")
            continue
        top = result.top
        left, right = st.columns([1, 2])
        left.image(data, width="stretch")
        left.caption(plain(name))
        right.plotly_chart(make_topk_figure(top, title=f"{top[0]['label']} ({top[0]['prob']:.0%})"),
                           width="stretch", config={"displayModeBar": False},
                           key=f"predict_chart_{name}_{len(data)}")


st.title("Predict")
st.write("Give the model photos and see its top-5 classes.")
choice = model_chooser("predict")
if state.trained_model() is None:
    navigation.page_link(navigation.TRAIN, label="Train a model on your data")
images = images_ui()
if not images:
    st.info("Upload one or more images, or turn on the camera.")
else:
    try:
        with st.spinner(f"Classifying {len(images)} image(s)…"):
            loaded = load_classifier_for(choice)
            results = predict_each(loaded.model, loaded.class_names, [data for _, data in images],
                                   [name for name, _ in images], k=TOP_K,
                                   crop_padding=loaded.crop_padding)
        random_weights_warning(loaded, "its ImageNet predictions are meaningless")
        engine = {"litert": "LiteRT", "tf": "TensorFlow"}.get(next((r.engine for r in results if r.engine), ""), "")
        st.caption(f"Predictions from {describe(loaded)}" + (f", run on {engine}." if engine else "."))
        results_section(images, results)
    except TransferLabError as e:
        st.error(str(e))
