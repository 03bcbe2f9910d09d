"""The UI sections every page shares for picking what to work on: a model and an image.

One model chooser, with one option order everywhere: this session's trained model, a saved run
(any run folder on the server, `lib.runs.list_runs`), or the backbone's ImageNet classifier. It
returns a plain `ModelChoice`; pages load the model from it (`load_classifier_for`, or
`lib.ui.inside.load_probe`), so a chooser draws widgets only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from lib.errors import TransferLabError
from lib.ui import resources, state
from lib.uploads import display_name

TRAINED = "This session's trained model"
SAVED_RUN = "A saved run"
IMAGENET = "The backbone's ImageNet classifier"
MODEL_OPTIONS = (TRAINED, SAVED_RUN, IMAGENET)
IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"]
SAMPLE, UPLOAD, FROM_DATASET = "Built-in sample", "Upload", "From the dataset"


@dataclass(frozen=True)
class ModelChoice:
    """What the person picked.

    Attributes:
        kind: one of `MODEL_OPTIONS`.
        run_dir: the run folder when `kind` is `SAVED_RUN`, else None.
        backbone: the session's backbone name (used when `kind` is `IMAGENET`).
    """

    kind: str
    run_dir: str | None
    backbone: str


def saved_runs() -> list[dict]:
    """Runs on disk that have a model to load (newest first), as `lib.runs.list_runs` rows."""
    from lib.runs import list_runs

    return [row for row in list_runs(viewer=state.runs_viewer()) if row.get("has_model")]


def run_label(row: dict) -> str:
    """How the run chooser names a run: folder, backbone, data and validation accuracy."""
    acc = row.get("val_accuracy")
    acc_text = f", val {acc:.0%}" if isinstance(acc, int | float) else ""
    return (f"{row['name']} ({row.get('backbone') or '?'} on "
            f"{display_name(row.get('data')) or '?'}{acc_text})")


def model_chooser(prefix: str) -> ModelChoice:
    """Which model to use; the session's trained one when there is one, else the ImageNet one.

    The choice is kept in session state beside the widget, so pages sharing a `prefix` (the three
    Look inside pages) show the same model and a page switch does not reset it.

    Args:
        prefix: the page's session-key prefix, e.g. "predict" or "inside".

    Returns:
        A `ModelChoice`.
    """
    has_trained = state.trained_model() is not None
    runs = saved_runs()
    options = [o for o in MODEL_OPTIONS
               if (o != TRAINED or has_trained) and (o != SAVED_RUN or runs)]
    remembered = state.get(f"{prefix}{state.MODEL_CHOICE_SUFFIX}")
    default = remembered if remembered in options else (TRAINED if has_trained else IMAGENET)
    kind = st.radio("Model", options, index=options.index(default), horizontal=True,
                    key=f"{prefix}_model")
    state.put(f"{prefix}{state.MODEL_CHOICE_SUFFIX}", kind)
    run_dir = None
    if kind == SAVED_RUN:
        paths = [row["path"] for row in runs]
        labels = {row["path"]: run_label(row) for row in runs}
        remembered_run = state.get(f"{prefix}{state.MODEL_RUN_SUFFIX}")
        run_dir = st.selectbox("Saved run", paths, format_func=labels.get,
                               index=paths.index(remembered_run) if remembered_run in paths else 0,
                               key=f"{prefix}_run")
        state.put(f"{prefix}{state.MODEL_RUN_SUFFIX}", run_dir)
    if not has_trained and kind == IMAGENET:
        st.caption("No trained model in this session yet, so the backbone's ImageNet classes are "
                   "used" + (" (or pick a saved run)." if runs else "."))
    return ModelChoice(kind, run_dir, state.current_backbone_name())


def load_classifier_for(choice: ModelChoice):
    """The `lib.predict.LoadedClassifier` a choice names (shared, cached models for runs and
    backbones; the session's own model for `TRAINED`).

    Raises:
        TransferLabError: a run that cannot be loaded, or a backbone with no ImageNet classifier.
    """
    from lib.predict import SOURCE_SESSION, LoadedClassifier

    if choice.kind == TRAINED and state.trained_model() is not None:
        model, labels = state.trained_model()
        return LoadedClassifier(model, tuple(labels), SOURCE_SESSION, "this session's model",
                                choice.backbone)
    if choice.kind == SAVED_RUN and choice.run_dir:
        return resources.run_classifier(choice.run_dir)
    return resources.backbone_classifier(choice.backbone)


def describe(loaded) -> str:
    """"your model (3 classes)", "run NAME (3 classes)" or "NAME on ImageNet's 1000 classes"."""
    from lib.predict import SOURCE_RUN, SOURCE_SESSION

    if loaded.source == SOURCE_SESSION:
        return f"your model ({len(loaded.class_names)} classes)"
    if loaded.source == SOURCE_RUN:
        return f"run {Path(loaded.name).name} ({len(loaded.class_names)} classes)"
    return f"{loaded.name} on ImageNet's {len(loaded.class_names)} classes"


def random_weights_warning(loaded, what: str = "its predictions are meaningless") -> None:
    """A warning when the model's backbone had random weights."""
    if not loaded.pretrained:
        st.warning(f"{loaded.backbone or loaded.name} has random weights here: {what}.")


def image_chooser(prefix: str, size: int) -> tuple[np.ndarray | None, str]:
    """Upload, a built-in sample, or an image of the session's dataset, at the model's size.

    Args:
        prefix: the session-key prefix of the widgets, e.g. "inside_attack".
        size: the side, in pixels, the image is resized and centre-cropped to.

    Returns:
        `(pixels (size, size, 3) float32 in [0, 255] or None, caption)`.
    """
    from lib.images import load_image
    from lib.inside.display import SAMPLES, sample_image

    dataset = session_dataset()
    sources = [SAMPLE, UPLOAD] + ([FROM_DATASET] if dataset else [])
    source = st.radio("Image", sources, horizontal=True, key=f"{prefix}_source")
    try:
        if source == UPLOAD:
            upload = st.file_uploader("Upload an image", key=f"{prefix}_upload", type=IMAGE_TYPES)
            if upload is None:
                return None, ""
            return load_image(upload.getvalue(), size), upload.name
        if source == FROM_DATASET:
            names = list(dataset.class_names)
            cls = st.selectbox("Class", names, key=f"{prefix}_data_class")
            records = [r for r in dataset.records if r.label == names.index(cls)]
            n = st.number_input(f"Image (1-{len(records)})", 1, len(records), 1,
                                key=f"{prefix}_data_index")
            return load_image(records[int(n) - 1].path, size), f"{cls} #{int(n)}"
        name = st.selectbox("Sample", list(SAMPLES), key=f"{prefix}_sample")
        return sample_image(name, size), name
    except TransferLabError as e:
        st.error(str(e))
        return None, ""


def session_dataset():
    """The session's dataset when it can be read and has images, else None (never raises)."""
    try:
        dataset = state.current_dataset()
    except TransferLabError:
        return None
    if dataset is None or not dataset.records:
        return None
    return dataset
