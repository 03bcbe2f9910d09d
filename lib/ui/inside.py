"""What the three Look inside pages share: the model chooser, its probe, and class pickers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from lib.errors import TransferLabError
from lib.ui import navigation, resources, state
from lib.ui.choosers import IMAGENET, SAVED_RUN, TRAINED, model_chooser

PREFIX = "inside"
# Probes of this session's own trained models kept at once (each holds compiled steps).
MAX_PROBES = 3


@dataclass(frozen=True)
class InsideModel:
    """The model a Look inside page works on.

    Attributes:
        probe: a `lib.inside.probe.ModelProbe` on it (shared for backbones and saved runs).
        description: for a caption, e.g. "run 2024-… (2 classes)".
        backbone: the backbone's name when the model is its own classifier, else None (the
            ideal-image transfer figures compare EfficientNet-Lite backbones only).
    """

    probe: object
    description: str
    backbone: str | None


def load_probe(kind: str, run_dir: str | None, backbone: str) -> InsideModel:
    """The probe for a `lib.ui.choosers.ModelChoice`'s fields.

    Raises:
        TransferLabError: a run that cannot be loaded, or a backbone with no classifier.
    """
    trained = state.trained_model()
    if kind == TRAINED and trained is not None:
        model, labels = trained
        probe = state.session_probe(model, labels, ("trained", id(model)), MAX_PROBES)
        return InsideModel(probe, f"your model ({len(labels)} classes)", None)
    if kind == SAVED_RUN and run_dir:
        probe = resources.get_run_probe(run_dir)
        return InsideModel(probe, f"run {Path(run_dir).name} ({probe.num_classes} classes)", None)
    loaded = resources.get_backbone(backbone)
    classes = loaded.spec.num_classes
    if classes <= 0:
        raise TransferLabError(f"{backbone} has no classifier (it outputs features); train a head "
                               "on it first.")
    if not loaded.pretrained:
        st.warning(f"{backbone} has random weights here: what you see inside it is meaningless.")
    what = "ImageNet's 1000 classes" if classes == 1000 else f"its {classes} classes"
    return InsideModel(resources.get_backbone_probe(backbone), f"{backbone} on {what}", backbone)


def header(title: str, intro: str) -> InsideModel:
    """The page title, the model chooser and a caption; stops the page when the model fails.

    Args:
        title: the page's title.
        intro: one paragraph on what the page shows.

    Returns:
        The chosen model's `InsideModel`.
    """
    st.title(title)
    st.write(intro)
    choice = model_chooser(PREFIX)
    try:
        chosen = load_probe(choice.kind, choice.run_dir, choice.backbone)
    except TransferLabError as e:
        st.error(str(e))
        if choice.kind == IMAGENET:
            navigation.page_link(navigation.ZOO, label="Choose another backbone")
        st.stop()
    st.caption(f"Looking inside {chosen.description}, {chosen.probe.input_size} px input. "
               "All budgets are in pixel units (0-255).")
    if choice.kind == IMAGENET and state.trained_model() is None:
        st.info("You are looking inside the backbone's own ImageNet classifier. To look inside a "
                "model of your classes, train a head on your data first (or pick a saved run "
                "above).")
        navigation.page_link(navigation.TRAIN, label="Train a model on your data")
    return chosen


def class_options(probe) -> list[str]:
    """"INDEX: label" for every class of the probe's model, in output order."""
    return [f"{i}: {label}" for i, label in enumerate(probe.labels)]


def class_index(option: str) -> int:
    """The class index of a `class_options` entry."""
    return int(option.split(":", 1)[0])
