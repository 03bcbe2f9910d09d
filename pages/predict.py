"""Predict: top-k classes for uploaded or camera photos, from this session's model or ImageNet."""

from __future__ import annotations

import streamlit as st

from lib import ui_state
from lib.backbones.imagenet import imagenet_labels
from lib.errors import TransferLabError
from lib.plots.ui import make_topk_figure
from lib.predict import predict_files

TOP_K = 5
TRAINED = "This session's trained model"
IMAGENET = "ImageNet classifier of the backbone"


def model_choice_ui() -> str:
    """Which model predicts; the trained one when there is one."""
    options = [TRAINED, IMAGENET] if ui_state.trained_model() is not None else [IMAGENET]
    choice = st.radio("Model", options, horizontal=True, key="predict_model")
    if choice == IMAGENET and ui_state.trained_model() is None:
        st.caption("No trained model in this session yet; using the backbone's ImageNet classes.")
        ui_state.page_link("pages/train.py", label="Train a model on your data", icon=":material/model_training:")
    return choice


def load_model(choice: str):
    """Returns `(model, labels, description)` for the choice.

    Raises:
        TransferLabError: the backbone has no ImageNet classifier.
    """
    if choice == TRAINED:
        model, labels = ui_state.trained_model()
        return model, labels, f"your model ({len(labels)} classes)"
    name = ui_state.current_backbone_name()
    backbone = ui_state.get_backbone(name)
    if backbone.spec.num_classes != 1000:
        raise TransferLabError(f"{name} has no ImageNet classifier; train a head on it first.")
    if not backbone.pretrained:
        st.warning(f"{name} has random weights here: its ImageNet predictions are meaningless.")
    return backbone.model, list(imagenet_labels()), f"{name} on ImageNet's 1000 classes"


def images_ui() -> list[tuple[str, bytes]]:
    """Uploaded files and a camera shot, as `(name, bytes)`."""
    uploads = st.file_uploader("Upload images", type=["jpg", "jpeg", "png", "bmp", "gif", "webp",
                               "tif", "tiff"], accept_multiple_files=True, key="predict_uploads")
    images = [(f.name, f.getvalue()) for f in uploads or []]
    if st.toggle("Use the camera", key="predict_use_camera"):
        shot = st.camera_input("Take a photo", key="predict_camera")
        if shot is not None:
            images.append(("camera", shot.getvalue()))
    return images


def results_section(images: list[tuple[str, bytes]], tops: list[list[dict]]) -> None:
    for (name, data), top in zip(images, tops, strict=True):
        left, right = st.columns([1, 2])
        left.image(data, caption=name, width="stretch")
        right.plotly_chart(make_topk_figure(top, title=f"{top[0]['label']} ({top[0]['prob']:.0%})"),
                           width="stretch", config={"displayModeBar": False},
                           key=f"predict_chart_{name}_{len(data)}")


st.title("Predict")
st.write("Give the model photos and see its top-5 classes.")
choice = model_choice_ui()
images = images_ui()
if not images:
    st.info("Upload one or more images, or turn on the camera.")
else:
    try:
        with st.spinner(f"Classifying {len(images)} image(s)…"):
            model, labels, description = load_model(choice)
            tops = predict_files(model, labels, [data for _, data in images], k=TOP_K)
        st.caption(f"Predictions from {description}.")
        results_section(images, tops)
    except TransferLabError as e:
        st.error(str(e))
