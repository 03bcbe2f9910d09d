"""The one Streamlit module in lib: every session-state key and every cached resource.

Pages never touch `st.session_state` or `st.cache_resource` directly; they call the small getters
and setters here, so every key is listed in one place and namespaced by the page that owns it.

Shared vs per session:
* cached resources (`get_backbone`, `get_dataset`) are built once per server process and shared by
  every session; they are never mutated after loading (training builds heads on top, fine-tuning
  works on a copy);
* session state holds what one visitor chose and made: selections, configs, background jobs
  (`lib.jobs.Job`) and their results.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from lib.jobs import FINISHED, Job

if TYPE_CHECKING:
    from lib.backbones import Backbone

# Server-side defaults; the env vars let tests and benchmarks pick tiny ones.
DEFAULT_BACKBONE_ENV = "TRANSFERLAB_DEFAULT_BACKBONE"
DEFAULT_DATA_ENV = "TRANSFERLAB_DEFAULT_DATA"
FALLBACK_BACKBONE = "efficientnet_lite0"
FALLBACK_DATA = "builtin:faces"

# How many backbones one server keeps in memory (Lite2 is ~40 MB; keras.applications up to ~550 MB).
BACKBONE_CACHE_ENTRIES = 4
DATASET_CACHE_ENTRIES = 8
# The zoo table is re-read from disk at most this often, so a finished re-measure shows up.
ZOO_TABLE_TTL_S = 5
# Heavy background jobs (training, attacks, zoo) the whole server runs at once; more queue.
MAX_JOBS_ENV = "TRANSFERLAB_MAX_JOBS"
DEFAULT_MAX_JOBS = 2

# ----- keys, namespaced by the page that owns them ------------------------------------------------
ZOO_SELECTION = "zoo_selection"  # str: the session's backbone name
ZOO_HUB_HANDLES = "zoo_hub_handles"  # list[str]: TF Hub handles this session added (never global)
DATA_SPEC = "data_spec"  # str: "builtin:NAME", a folder path, a zip path or "tfds:NAME"
DATA_SPLIT = "data_split"  # dict: {"val": float, "test": float, "seed": int}
DATA_AUGMENT = "data_augment"  # lib.data.augment.AugmentConfig or None
TRAIN_CONFIG = "train_config"  # dict of the Train page's last settings
TRAIN_JOB = "train_job"  # Job running lib.training.train
TRAIN_RESULT = "train_result"  # TrainResult of the last finished training
SCRATCH_JOB = "scratch_job"  # Job running lib.training.train_from_scratch
SCRATCH_RESULT = "scratch_result"
FINETUNE_JOB = "finetune_job"  # Job running lib.training.fine_tune
FINETUNE_RESULT = "finetune_result"
RUNS_SELECTION = "runs_selection"  # list[str]: run dirs selected for the overlay
TRAIN_EVAL_PREDICTIONS = "train_eval_predictions"  # {(run, model id): predicted labels}
FINETUNE_PREVIEW_BODY = "finetune_preview_body"  # ((run, model id), private body copy)
# Pages owned by other engineers keep their keys under their prefix (e.g. "inside_attack_job").
PAGE_PREFIXES = ("home_", "zoo_", "data_", "train_", "scratch_", "finetune_", "predict_", "inside_",
                 "runs_")

# Job key -> the key its finished result is copied to (so a result survives the next job).
JOB_RESULTS = {TRAIN_JOB: TRAIN_RESULT, SCRATCH_JOB: SCRATCH_RESULT, FINETUNE_JOB: FINETUNE_RESULT}
_COLLECTED = "_collected_job_ids"
APP_ROOT = Path(__file__).resolve().parents[1]


def default_backbone() -> str:
    return os.environ.get(DEFAULT_BACKBONE_ENV) or FALLBACK_BACKBONE


def default_data() -> str:
    if os.environ.get(DEFAULT_DATA_ENV):
        return os.environ[DEFAULT_DATA_ENV]
    try:
        from lib.data.sources import DEFAULT_DATASET

        return str(DEFAULT_DATASET)
    except ImportError:
        return FALLBACK_DATA


def init_state() -> None:
    """Sets this session's defaults once: the default backbone and the built-in dataset."""
    ss = st.session_state
    ss.setdefault(ZOO_SELECTION, default_backbone())
    ss.setdefault(DATA_SPEC, default_data())
    ss.setdefault(DATA_SPLIT, {"val": 0.2, "test": 0.1, "seed": 0})
    ss.setdefault(DATA_AUGMENT, None)
    ss.setdefault(RUNS_SELECTION, [])
    ss.setdefault(_COLLECTED, set())


def _check_key(key: str) -> str:
    if not key.startswith(PAGE_PREFIXES):
        raise KeyError(f"Received session key `{key}`; keys must start with one of {PAGE_PREFIXES}.")
    return key


def get(key: str, default: Any = None) -> Any:
    """Reads a page-namespaced session value (for keys not given their own getter below)."""
    return st.session_state.get(_check_key(key), default)


def put(key: str, value: Any) -> None:
    """Writes a page-namespaced session value."""
    st.session_state[_check_key(key)] = value


# ----- cached resources ----------------------------------------------------------------------------

def _import_engine() -> None:
    from lib.backbones import catalog  # noqa: F401  TensorFlow, Keras and every registry entry


@st.cache_resource(show_spinner=False)
def warm_engine() -> threading.Thread:
    """Imports TensorFlow and the registry on a background thread, once per server process.

    Importing TensorFlow takes seconds; Home does not need it, so a cold server can show Home at
    once and be ready by the time the visitor opens another page.
    """
    thread = threading.Thread(target=_import_engine, name="warm-engine", daemon=True)
    thread.start()
    return thread


def engine_ready() -> bool:
    """True once TensorFlow and the backbone registry are imported."""
    return not warm_engine().is_alive()


@st.cache_resource(show_spinner=False)
def job_slots() -> threading.BoundedSemaphore | None:
    """The server's job slots, shared by every session (`TRANSFERLAB_MAX_JOBS`, default 2).

    On a hosted demo a few cores serve everyone: a training started while the slots are taken
    queues (and says so) instead of slowing every running job and every page. 0 means no limit.
    """
    raw = os.environ.get(MAX_JOBS_ENV, str(DEFAULT_MAX_JOBS))
    try:
        limit = int(raw)
    except ValueError:
        limit = DEFAULT_MAX_JOBS
    return threading.BoundedSemaphore(limit) if limit > 0 else None


@st.cache_resource(max_entries=BACKBONE_CACHE_ENTRIES, show_spinner="Loading the backbone…")
def get_backbone(name: str) -> Backbone:
    """The shared, frozen backbone `name` (random weights, flagged, when none can be had offline).

    Raises:
        TransferLabError: unknown name.
    """
    from lib.backbones import load_backbone

    return load_backbone(name, allow_random=True)


@st.cache_resource(max_entries=BACKBONE_CACHE_ENTRIES, show_spinner="Preparing the backbone…")
def get_backbone_probe(name: str):
    """A look-inside probe (`lib.inside.probe.ModelProbe`) on backbone `name`'s own classifier.

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


@st.cache_resource(max_entries=DATASET_CACHE_ENTRIES, show_spinner="Reading the dataset…")
def get_dataset(spec: str):
    """The shared `DatasetIndex` for a dataset spec (file list, labels, data report).

    Raises:
        TransferLabError: missing folder, bad zip, too few images, TFDS offline, ...
    """
    from lib.data.sources import load_dataset

    return load_dataset(spec)


@st.cache_data(max_entries=64, show_spinner="Counting parameters…")
def param_counts(backbone_name: str, cut: str | None, hidden_units: int, dropout: float,
                 num_classes: int) -> dict[str, int]:
    """Trainable (head) and frozen (body) parameters for these settings, built but never trained."""
    from lib.models import HeadConfig, build_body, build_head, count_params

    body = build_body(get_backbone(backbone_name), cut)
    head = build_head(tuple(body.outputs[0].shape[1:]), max(2, num_classes),
                      HeadConfig(hidden_units=int(hidden_units), dropout=float(dropout)))
    body_counts = count_params(body)
    return {"trainable": count_params(head)["trainable"],
            "non_trainable": body_counts["trainable"] + body_counts["non_trainable"]}


def confusion_cell_records(result, true_index: int, pred_index: int) -> list:
    """The evaluated images with this true and predicted class.

    Predictions over the evaluation split are computed once per result and kept in the session.
    """
    from lib.evaluate import predict_records

    evaluation = result.metrics.get("evaluation") or {}
    records = getattr(result.split, evaluation.get("split", "val"), ()) if result.split else ()
    cache = st.session_state.setdefault(TRAIN_EVAL_PREDICTIONS, {})
    key = (str(result.run_dir), id(result.model))
    if key not in cache:
        cache.clear()  # only the newest result's predictions are worth keeping
        cache[key] = predict_records(result.model, records, len(result.class_names)).argmax(axis=1)
    predicted = cache[key]
    return [r for r, p in zip(records, predicted, strict=True)
            if r.label == true_index and int(p) == pred_index]


@st.cache_data(ttl=ZOO_TABLE_TTL_S, show_spinner=False)
def zoo_table() -> dict:
    """The registry joined with this machine's cached zoo measurements (cheap, briefly cached)."""
    from lib import zoo

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
def sample_grid_figure(spec: str, per_class: int) -> dict:
    """The Data page's sample grid for a dataset, drawn once (as a plain dict) and reused."""
    from lib.plots.data import make_sample_grid_figure

    return make_sample_grid_figure(get_dataset(spec), per_class=per_class).to_dict()


def _preview_body(result):
    """A private copy of the result's body, made once per result, for the unfreeze preview."""
    from lib.models import copy_body, get_body

    key = (str(result.run_dir), id(result.model))
    cached = st.session_state.get(FINETUNE_PREVIEW_BODY)
    if cached is None or cached[0] != key:
        cached = (key, copy_body(get_body(result.model)))
        st.session_state[FINETUNE_PREVIEW_BODY] = cached
    return cached[1]


def body_layer_count(result) -> int:
    """How many layers the body has, counted as `unfreeze_top` counts them."""
    from lib.models import layer_table

    return len(layer_table(_preview_body(result)))


def unfreeze_preview(result, n_layers: int) -> list[dict]:
    """`layer_table` rows (bottom to top) as they would be after unfreezing the top `n_layers`."""
    from lib.models import layer_table, unfreeze_top

    body = _preview_body(result)
    unfreeze_top(body, n_layers=n_layers)
    return layer_table(body)


def rescan_datasets() -> None:
    """Forgets every scanned dataset (all sessions), so changed folders are read again."""
    get_dataset.clear()
    sample_grid_figure.clear()


# ----- backbone and data ---------------------------------------------------------------------------

def current_backbone_name() -> str:
    return st.session_state.get(ZOO_SELECTION) or default_backbone()


def set_backbone(name: str) -> None:
    """Selects the session's backbone. A trained head belongs to its backbone, so it stays as is."""
    st.session_state[ZOO_SELECTION] = name


def hub_handles() -> list[str]:
    """The TF Hub handles this session added on the Zoo page (each visitor has their own)."""
    return list(st.session_state.get(ZOO_HUB_HANDLES) or [])


def add_hub_handle(handle: str) -> None:
    if handle not in hub_handles():
        st.session_state[ZOO_HUB_HANDLES] = [*hub_handles(), handle]


def current_backbone() -> Backbone:
    return get_backbone(current_backbone_name())


def current_data_spec() -> str | None:
    return st.session_state.get(DATA_SPEC)


def set_data_spec(spec: str | None) -> None:
    st.session_state[DATA_SPEC] = spec


def current_dataset():
    """The session's `DatasetIndex`, or None when no data is chosen.

    Raises:
        TransferLabError: the chosen data cannot be read.
    """
    spec = current_data_spec()
    return get_dataset(spec) if spec else None


def data_split() -> dict:
    return dict(st.session_state.get(DATA_SPLIT) or {"val": 0.2, "test": 0.1, "seed": 0})


def set_data_split(val: float, test: float, seed: int) -> None:
    st.session_state[DATA_SPLIT] = {"val": float(val), "test": float(test), "seed": int(seed)}


def augment_config():
    return st.session_state.get(DATA_AUGMENT)


def set_augment_config(config) -> None:
    st.session_state[DATA_AUGMENT] = config


def train_config() -> dict:
    return dict(st.session_state.get(TRAIN_CONFIG) or {})


def set_train_config(config: dict) -> None:
    st.session_state[TRAIN_CONFIG] = dict(config)


# ----- jobs and their results ----------------------------------------------------------------------

def get_job(key: str) -> Job | None:
    return st.session_state.get(_check_key(key))


def set_job(key: str, job: Job | None) -> None:
    st.session_state[_check_key(key)] = job


def running_jobs() -> list[Job]:
    """This session's jobs that are still running."""
    return [v for k, v in st.session_state.items()
            if isinstance(k, str) and k.startswith(PAGE_PREFIXES) and isinstance(v, Job) and v.running]


def sync_jobs() -> None:
    """Copies each finished job's result to its result key, once per job.

    Called on every run by the router, so a job that finished while its page was closed still
    leaves its result (the background thread itself never touches session state).
    """
    collected: set = st.session_state.setdefault(_COLLECTED, set())
    for job_key, result_key in JOB_RESULTS.items():
        job = st.session_state.get(job_key)
        if not isinstance(job, Job) or job.id in collected:
            continue
        snap = job.snapshot()
        if snap["status"] in FINISHED:
            collected.add(job.id)
            if snap["result"] is not None:
                st.session_state[result_key] = snap["result"]
                if job_key == TRAIN_JOB:
                    # A fine-tuned model and a baseline belong to the run they started from.
                    st.session_state.pop(FINETUNE_RESULT, None)
                    st.session_state.pop(SCRATCH_RESULT, None)


def get_result(key: str) -> Any:
    """The last finished result under `key` (TRAIN_RESULT, FINETUNE_RESULT, SCRATCH_RESULT)."""
    sync_jobs()
    return st.session_state.get(key)


def set_result(key: str, value: Any) -> None:
    st.session_state[_check_key(key)] = value


def trained_model() -> tuple[Any, list[str]] | None:
    """The session's newest trained classifier and its class names, or None.

    A fine-tuned model wins over the frozen one it was made from. A run stopped before its first
    epoch has no trained head, so it does not count.
    """
    for key in (FINETUNE_RESULT, TRAIN_RESULT):
        result = get_result(key)
        if result is not None and getattr(result, "model", None) is not None \
                and not result.history.empty:
            return result.model, list(result.class_names)
    return None


# ----- navigation ----------------------------------------------------------------------------------

def page_available(path: str) -> bool:
    """True when the page file exists (pages from other modules may not have landed yet)."""
    return (APP_ROOT / path).is_file()


def page_link(path: str, label: str, icon: str | None = None) -> None:
    """A button to another page; nothing when that page is not part of this install."""
    if page_available(path):
        st.page_link(path, label=label, icon=icon)
