"""What the three Look inside pages share: the model chooser, its probe, class pickers, and
submitting their jobs (`lib.inside.jobs` specs) to the server's job backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from lib.errors import TransferLabError
from lib.jobs import JobSpec
from lib.jobs.backend import EMBEDDED
from lib.ui import navigation, resources, state
from lib.ui.choosers import IMAGENET, SAVED_RUN, TRAINED, model_chooser
from lib.ui.jobs import job_backend, submit_job_ui

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
        ref: the same model as a job names it (`lib.inside.jobs.model_ref`), so a worker loads
            it; {} for a trained model with no run folder (only this process has it).
    """

    probe: object
    description: str
    backbone: str | None
    ref: dict = field(default_factory=dict)


def trained_run_dir() -> str | None:
    """The run folder of the session's trained model (as `state.trained_model` picks it), or None."""
    for key in (state.FINETUNE_RESULT, state.TRAIN_RESULT):
        result = state.get_result(key)
        if result is not None and getattr(result, "model", None) is not None \
                and not result.history.empty:
            return str(result.run_dir) if getattr(result, "run_dir", None) else None
    return None


def load_probe(kind: str, run_dir: str | None, backbone: str) -> InsideModel:
    """The probe for a `lib.ui.choosers.ModelChoice`'s fields.

    Raises:
        TransferLabError: a run that cannot be loaded, or a backbone with no classifier.
    """
    from lib.inside.jobs import model_ref

    trained = state.trained_model()
    if kind == TRAINED and trained is not None:
        model, labels = trained
        probe = state.session_probe(model, labels, ("trained", id(model)), MAX_PROBES)
        folder = trained_run_dir()
        return InsideModel(probe, f"your model ({len(labels)} classes)", None,
                           model_ref(run_dir=folder) if folder else {})
    if kind == SAVED_RUN and run_dir:
        probe = resources.get_run_probe(run_dir)
        return InsideModel(probe, f"run {Path(run_dir).name} ({probe.num_classes} classes)", None,
                           model_ref(run_dir=run_dir))
    loaded = resources.get_backbone(backbone)
    classes = loaded.spec.num_classes
    if classes <= 0:
        raise TransferLabError(f"{backbone} has no classifier (it outputs features); train a head "
                               "on it first.")
    if not loaded.pretrained:
        st.warning(f"{backbone} has random weights here: what you see inside it is meaningless.")
    what = "ImageNet's 1000 classes" if classes == 1000 else f"its {classes} classes"
    return InsideModel(resources.get_backbone_probe(backbone), f"{backbone} on {what}", backbone,
                       model_ref(backbone=backbone))


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


def submit_inside_job(key: str, spec: JobSpec, local: Callable[[], dict]) -> None:
    """Submits a Look inside job under session key `key` (see `lib.ui.jobs.submit_job_ui`), after
    removing the folders of Look inside jobs that ended long ago.

    Args:
        key: the page's session key for the job (e.g. `state.INSIDE_ATTACK_JOB`).
        spec: the job (`lib.inside.jobs.attack_spec`, ...).
        local: builds the objects this process holds (`probe`, `others`); called only when the
            backend runs the job in this process, so a Dask front-end loads nothing for it.

    Raises:
        TransferLabError: what `local()` raises.
    """
    from lib.inside.jobs import prune_inside_jobs

    try:
        prune_inside_jobs()
    except (OSError, TransferLabError):
        pass  # housekeeping never keeps a job from starting
    try:
        here = job_backend().name == EMBEDDED
    except TransferLabError:
        here = False  # `submit_job_ui` says what is wrong with the backend
    submit_job_ui(key, spec, local=local() if here else None)


def stored_pixels(images) -> str | None:
    """`lib.inside.jobs.store_pixels(images)`, or None after showing why it failed."""
    from lib.inside.jobs import store_pixels

    try:
        return store_pixels(images)
    except (TransferLabError, OSError) as e:
        st.error(str(e))
        return None
