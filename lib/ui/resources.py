"""Cached resources: built once per server process, shared by every session, never mutated.

Each function here only calls `lib`; Streamlit's caches make it run once per argument set. A model
returned here is shared by all visitors, so nothing may train or change it: training builds heads on
top, fine-tuning works on a copy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from lib.backbones import Backbone
    from lib.inside.probe import ModelProbe
    from lib.predict import LoadedClassifier

# How many backbones one server keeps in memory (Lite2 is ~40 MB; keras.applications up to ~550 MB).
BACKBONE_CACHE_ENTRIES = 4
DATASET_CACHE_ENTRIES = 8
# Saved runs opened in Predict or Look inside (each a full classifier).
RUN_CACHE_ENTRIES = 4
# The zoo table is re-read from disk at most this often, so a finished re-measure shows up.
ZOO_TABLE_TTL_S = 5
# Photos per class in the Data page's sample grid (the server warm-up draws the default data's).
SAMPLE_GRID_PER_CLASS = 6


@st.cache_resource(show_spinner=False)
def warm_engine() -> threading.Thread:
    """Starts importing TensorFlow and the registry on a background thread, once per server."""
    from lib.warmup import start_warmup

    return start_warmup()


def engine_ready() -> bool:
    """True once TensorFlow and the backbone registry are imported."""
    return not warm_engine().is_alive()


@st.cache_resource(show_spinner=False)
def job_slots() -> threading.BoundedSemaphore | None:
    """The server's job slots, shared by every session (`TRANSFERLAB_MAX_JOBS`, default 2)."""
    from lib.job_slots import make_job_slots

    return make_job_slots()


@st.cache_resource(show_spinner=False)
def job_registry():
    """The server's `lib.jobs.JobRegistry`: every session's jobs with their owners, so one visitor
    holds at most `TRANSFERLAB_JOBS_PER_VISITOR` of them and abandoned ones are stopped."""
    from lib.job_slots import abandon_after_s
    from lib.jobs import JobRegistry

    return JobRegistry(abandon_after=abandon_after_s())


@st.cache_resource(show_spinner=False)
def job_backend(scheduler: str):
    """The server's `lib.jobs.JobBackend` for the `TRANSFERLAB_SCHEDULER` value `scheduler`: the
    embedded one on this server's registry and slots, or the process's Dask client (it connects
    on the first submission, so a scheduler that is down never fails a page).

    Raises:
        TransferLabError: a setting that names no backend (not cached: the next call retries).
    """
    from lib.jobs import get_backend

    return get_backend(scheduler, registry=job_registry(), slots=job_slots())


@st.cache_resource(max_entries=BACKBONE_CACHE_ENTRIES, show_spinner="Loading the backbone…")
def get_backbone(name: str) -> Backbone:
    """The shared, frozen backbone `name` (random weights, flagged, when none can be had offline).

    Raises:
        TransferLabError: unknown name.
    """
    from lib.backbones import load_backbone

    return load_backbone(name, allow_random=True)


def backbone_classifier(name: str) -> LoadedClassifier:
    """Backbone `name`'s ImageNet classifier, sharing the cached backbone's model.

    Raises:
        TransferLabError: unknown name, or a feature-vector backbone with no classifier.
    """
    from lib.predict import classifier_from_backbone

    return classifier_from_backbone(get_backbone(name))


def _run_stamp(run_dir: str) -> float:
    """The newest modification time among a run's files: a re-saved model is loaded again."""
    root = Path(run_dir)
    times = [p.stat().st_mtime for p in (root, *root.glob("*"), *root.glob("checkpoints/*"))
             if p.exists()]
    return max(times, default=0.0)


@st.cache_resource(max_entries=RUN_CACHE_ENTRIES, show_spinner="Loading the saved run…")
def _load_run_classifier(run_dir: str, stamp: float) -> LoadedClassifier:
    from lib.predict import load_classifier

    del stamp  # only part of the cache key
    return load_classifier(run=run_dir)


def run_classifier(run_dir: str | os.PathLike) -> LoadedClassifier:
    """A saved run's classifier through `lib.predict.load_classifier(run=...)`, shared and cached.

    Raises:
        TransferLabError: the folder is not a loadable run.
    """
    run_dir = str(run_dir)
    return _load_run_classifier(run_dir, _run_stamp(run_dir))


@st.cache_resource(max_entries=BACKBONE_CACHE_ENTRIES, show_spinner="Preparing the backbone…")
def get_backbone_probe(name: str) -> ModelProbe:
    """A look-inside probe on backbone `name`'s own classifier.

    Shared by every session, like the backbone itself, so the attack and ideal-image steps are
    traced once per server (6–12 s on 2 cores) instead of once per visitor.

    Raises:
        TransferLabError: unknown name, or a feature-vector backbone with no classifier.
    """
    from lib.backbones.imagenet import imagenet_labels
    from lib.inside.probe import ModelProbe

    backbone = get_backbone(name)
    classes = backbone.spec.num_classes
    labels = imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    return ModelProbe(backbone.model, labels)


@st.cache_resource(max_entries=RUN_CACHE_ENTRIES, show_spinner="Preparing the saved run…")
def _run_probe(run_dir: str, stamp: float) -> ModelProbe:
    from lib.inside.probe import ModelProbe

    loaded = _load_run_classifier(run_dir, stamp)
    return ModelProbe(loaded.model, list(loaded.class_names))


def get_run_probe(run_dir: str | os.PathLike) -> ModelProbe:
    """A look-inside probe on a saved run's classifier, shared by every session.

    Raises:
        TransferLabError: the folder is not a loadable run.
    """
    run_dir = str(run_dir)
    return _run_probe(run_dir, _run_stamp(run_dir))


@st.cache_resource(max_entries=DATASET_CACHE_ENTRIES, show_spinner="Reading the dataset…")
def get_dataset(spec: str, scan: str = ""):
    """The shared `DatasetIndex` for a dataset spec (file list, labels, data report).

    Args:
        spec: the dataset spec.
        scan: which scan: "" for the one every session shares, or the token of a session's own
            Rescan (`lib.ui.state.rescan_data`), so one visitor's Rescan reads the files again for
            that visitor only and leaves everyone else's dataset (and its splits) as it was.

    Raises:
        TransferLabError: missing folder, bad zip, too few images, TFDS offline, ...
    """
    from lib.data.sources import load_dataset

    del scan  # only part of the cache key
    return load_dataset(spec)


@st.cache_data(max_entries=64, show_spinner="Counting parameters…")
def param_counts(backbone_name: str, cut: str | None, hidden_units: int, dropout: float,
                 num_classes: int) -> dict[str, int]:
    """Trainable (head) and frozen (body) parameters for these settings, built but never trained."""
    from lib.evaluate import count_classifier_params
    from lib.models import HeadConfig

    head = HeadConfig(hidden_units=int(hidden_units), dropout=float(dropout))
    return count_classifier_params(get_backbone(backbone_name), cut, head, num_classes)


@st.cache_data(ttl=ZOO_TABLE_TTL_S, show_spinner=False)
def zoo_table(fingerprint_key: str = "") -> dict:
    """The registry joined with the cached zoo measurements (cheap, briefly cached).

    Args:
        fingerprint_key: the stored table of that machine (a worker that measured); "" or a key
            with no table: this machine's. Defaults to "".
    """
    from lib import zoo

    if fingerprint_key:
        for other in zoo.list_zoo_caches():
            if other["fingerprint"].get("key") == fingerprint_key:
                return zoo.zoo_table(fingerprint=other["fingerprint"])
    return zoo.zoo_table()


@st.cache_data(ttl=ZOO_TABLE_TTL_S, show_spinner=False)
def zoo_other_tables() -> list[dict]:
    """Zoo tables measured on other machines/devices (e.g. a GPU), for extra columns."""
    from lib import zoo

    return zoo.list_zoo_caches()


def refresh_zoo_tables() -> None:
    """Drops the cached zoo tables after a re-measure, so the page shows the new rows."""
    zoo_table.clear()
    zoo_other_tables.clear()


@st.cache_data(max_entries=DATASET_CACHE_ENTRIES, show_spinner="Drawing samples…")
def sample_grid_figure(spec: str, per_class: int, scan: str = "") -> dict:
    """The Data page's sample grid for a dataset (and scan, see `get_dataset`), drawn once (as a
    plain dict) and reused."""
    from lib.plots.data import make_sample_grid_figure

    return make_sample_grid_figure(get_dataset(spec, scan), per_class=per_class).to_dict()
