"""Every session-state key, namespaced by the page that owns it, with typed getters and setters.

Pages never touch `st.session_state` directly: they call the functions here, so every key is
listed in one place. Session state holds what one visitor chose and made (selections, settings,
background `lib.jobs.Job`s and their results); what every visitor shares lives in
`lib.ui.resources`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import TYPE_CHECKING, Any

import streamlit as st

from lib.jobs import JobHandle
from lib.status import FINAL

if TYPE_CHECKING:
    from lib.backbones import Backbone

# Server-side defaults; the env vars let tests and benchmarks pick tiny ones.
DEFAULT_BACKBONE_ENV = "TRANSFERLAB_DEFAULT_BACKBONE"
DEFAULT_DATA_ENV = "TRANSFERLAB_DEFAULT_DATA"
FALLBACK_BACKBONE = "efficientnet_lite0"
FALLBACK_DATA = "builtin:faces"

# ----- keys, namespaced by the page that owns them ------------------------------------------------
ZOO_SELECTION = "zoo_selection"  # str: the session's backbone name
ZOO_MEASURE_JOB = "zoo_measure_job"  # Job running lib.zoo.measure_zoo
ZOO_HUB_HANDLES = "zoo_hub_handles"  # list[str]: TF Hub handles this session added (never global)
DATA_SPEC = "data_spec"  # str: "builtin:NAME", a folder path, a zip path or "tfds:NAME"
DATA_SPLIT = "data_split"  # dict: {"val": float, "test": float, "seed": int}
DATA_SCAN = "data_scan"  # {spec: token}: this session's own Rescan of a dataset ("" = the shared scan)
DATA_AUGMENT = "data_augment"  # lib.data.augment.AugmentConfig or None
DATA_GATHER = "data_gather"  # {"classes": {name: [lib.data.gather.Photo]}, "target": class name,
#   "widgets": int (bumped to clear the camera and file widgets), "problems": [str]}
TRAIN_CONFIG = "train_config"  # dict of the Train page's last settings
TRAIN_JOB = "train_job"  # Job running lib.training.train
TRAIN_RESULT = "train_result"  # TrainResult of the last finished training
TRAIN_EVAL_PREDICTIONS = "train_eval_predictions"  # {(run, model id): predicted labels}
SCRATCH_JOB = "scratch_job"  # Job running lib.training.train_from_scratch
SCRATCH_RESULT = "scratch_result"
FINETUNE_JOB = "finetune_job"  # Job running lib.training.fine_tune
FINETUNE_RESULT = "finetune_result"
FINETUNE_PREVIEW_BODY = "finetune_preview_body"  # ((run, model id), private body copy)
RUNS_SELECTION = "runs_selection"  # list[str]: run dirs selected for the overlay
RUNS_OWNER = "runs_owner"  # str: this session's id, recorded as the owner of the runs it starts
INSIDE_ATTACK_JOB = "inside_attack_job"  # Job running lib.inside.attacks.attack
INSIDE_SWEEP_JOB = "inside_sweep_job"  # Job running lib.inside.attacks.eps_sweep
INSIDE_SWEEP_WHAT = "inside_sweep_what"  # dict: the sweep's images ("what"), "reference", "norm"
INSIDE_IDEAL_JOB = "inside_ideal_job"  # Job running lib.inside.ideal.ideal_image
INSIDE_COMPARE_JOB = "inside_compare_job"  # Job running lib.inside.ideal.compare_tv
INSIDE_CAM_JOB = "inside_cam_job"  # Job running lib.inside.gradcam.gradcam
INSIDE_PROBES = "inside_probes"  # {model key: ModelProbe} for this session's trained models
INSIDE_GALLERY = "inside_gallery"  # list of {"result", "label"}: finished ideal images
LESSONS_RESULTS = "lessons_results"  # {(lesson, params): result of `lesson.run`}
LESSONS_ANSWERS = "lessons_answer_shown"  # {lesson name: the answer was revealed}
# Which model a page's chooser last showed, kept beside the widget so it survives a page switch.
XSRF_COOKIE = "_streamlit_xsrf"
MODEL_CHOICE_SUFFIX = "_model_choice"
MODEL_RUN_SUFFIX = "_model_run"
PAGE_PREFIXES = ("home_", "zoo_", "data_", "train_", "scratch_", "finetune_", "predict_", "inside_",
                 "runs_", "lessons_")

# Job key -> the key its finished result is copied to (so a result survives the next job).
JOB_RESULTS = {TRAIN_JOB: TRAIN_RESULT, SCRATCH_JOB: SCRATCH_RESULT, FINETUNE_JOB: FINETUNE_RESULT}
_COLLECTED = "_collected_job_ids"


def default_backbone() -> str:
    """The server's default backbone (`TRANSFERLAB_DEFAULT_BACKBONE`, else EfficientNet-Lite0)."""
    return os.environ.get(DEFAULT_BACKBONE_ENV) or FALLBACK_BACKBONE


def default_data() -> str:
    """The server's default dataset spec (`TRANSFERLAB_DEFAULT_DATA`, else the built-in one)."""
    if os.environ.get(DEFAULT_DATA_ENV):
        return os.environ[DEFAULT_DATA_ENV]
    try:
        from lib.data.sources import DEFAULT_DATASET

        return str(DEFAULT_DATASET)
    except ImportError:
        return FALLBACK_DATA


def init_state() -> None:
    """Sets this session's defaults once: the default backbone and dataset.

    The split default is read lazily (`data_split`) from `TrainConfig`, because importing the
    training code imports TensorFlow, which a cold server's Home page must not wait for.
    Also makes sure Streamlit no longer clears the Keras session after each run (`lib.ui.runner`).
    """
    from lib.ui.runner import keep_keras_state

    keep_keras_state()
    ss = st.session_state
    ss.setdefault(ZOO_SELECTION, default_backbone())
    ss.setdefault(DATA_SPEC, default_data())
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
    """The session's backbone, from the shared cache.

    Raises:
        TransferLabError: unknown name.
    """
    from lib.ui.resources import get_backbone

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
    from lib.ui.resources import get_dataset

    spec = current_data_spec()
    return get_dataset(spec, data_scan(spec)) if spec else None


def data_scan(spec: str) -> str:
    """This session's scan token for `spec`: "" (the scan every session shares) until it rescans."""
    return (st.session_state.get(DATA_SCAN) or {}).get(spec, "")


def rescan_data(spec: str) -> str:
    """Gives this session a fresh scan of `spec` (a new cache entry; other sessions keep theirs).

    Returns:
        The new scan token.
    """
    token = uuid.uuid4().hex[:12]
    st.session_state[DATA_SCAN] = {**(st.session_state.get(DATA_SCAN) or {}), spec: token}
    return token


def default_split() -> dict:
    """`{"val", "test", "seed"}` from `lib.training.TrainConfig()`: one source of the defaults."""
    from lib.training import TrainConfig

    config = TrainConfig()
    return {"val": float(config.val_split), "test": float(config.test_split), "seed": int(config.seed)}


def data_split() -> dict:
    """The session's split: `{"val": float, "test": float, "seed": int}`."""
    return dict(st.session_state.get(DATA_SPLIT) or default_split())


def set_data_split(val: float, test: float, seed: int) -> None:
    st.session_state[DATA_SPLIT] = {"val": float(val), "test": float(test), "seed": int(seed)}


def augment_config():
    """The session's `lib.data.augment.AugmentConfig`, or None when augmentation is off."""
    return st.session_state.get(DATA_AUGMENT)


def set_augment_config(config) -> None:
    st.session_state[DATA_AUGMENT] = config


def gathering() -> dict:
    """This session's gathered classes and their widgets' state (see `DATA_GATHER`), created once.

    The dict is changed in place by the Data page; it is this session's alone.
    """
    return st.session_state.setdefault(DATA_GATHER, {"classes": {}, "target": None, "widgets": 0,
                                                     "problems": []})


def train_config() -> dict:
    """The Train page's last settings (widget values by name); empty before the first visit."""
    return dict(st.session_state.get(TRAIN_CONFIG) or {})


def set_train_config(config: dict) -> None:
    st.session_state[TRAIN_CONFIG] = dict(config)


# ----- jobs and their results ----------------------------------------------------------------------

def session_owner() -> str:
    """This session's id, recorded in the config of every run it starts (a random token, made once)."""
    if not st.session_state.get(RUNS_OWNER):
        st.session_state[RUNS_OWNER] = f"session-{uuid.uuid4().hex[:12]}"
    return st.session_state[RUNS_OWNER]


def visitor_id() -> str:
    """Who holds this session's jobs: one id for every tab of one browser, so two tabs share one
    visitor's job limit. It is a hash of the browser's XSRF cookie (Streamlit sets it once per
    browser); without that cookie (XSRF protection off, tests) it is this session's owner id."""
    try:
        cookie = st.context.cookies.get(XSRF_COOKIE)
    except Exception:  # noqa: BLE001 - no browser request behind this run (AppTest, bare mode)
        cookie = None
    if not isinstance(cookie, str) or not cookie:
        return session_owner()
    # Tornado sets the cookie only when the browser has none, so its value stays the same; only
    # a hash is kept, as the cookie is a secret.
    return "visitor-" + hashlib.sha1(cookie.encode()).hexdigest()[:12]


def runs_viewer() -> str | None:
    """Who the Runs list is for: this session on a hosted server (its own and shared runs), else
    None (a local or team server lists every run)."""
    from lib.data.roots import hosted

    return session_owner() if hosted() else None


def get_job(key: str) -> JobHandle | None:
    return st.session_state.get(_check_key(key))


def set_job(key: str, job: JobHandle | None) -> None:
    st.session_state[_check_key(key)] = job


def job_running(key: str) -> bool:
    """True while the job under `key` runs."""
    job = get_job(key)
    return job is not None and job.running


def running_jobs() -> list[JobHandle]:
    """This session's jobs that are still running."""
    return [v for k, v in st.session_state.items()
            if isinstance(k, str) and k.startswith(PAGE_PREFIXES) and isinstance(v, JobHandle) and v.running]


def sync_jobs() -> None:
    """Copies each finished job's result to its result key, once per job.

    Called on every run by the router, so a job that finished while its page was closed still
    leaves its result (the background thread itself never touches session state).
    """
    collected: set = st.session_state.setdefault(_COLLECTED, set())
    for job_key, result_key in JOB_RESULTS.items():
        job = st.session_state.get(job_key)
        if not isinstance(job, JobHandle) or job.id in collected:
            continue
        snap = job.snapshot()
        if snap["status"] in FINAL:
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


def trained_model_kind() -> str | None:
    """"fine-tuned" or "frozen" for the session's trained model; None when there is none."""
    if trained_model() is None:
        return None
    return "fine-tuned" if get_result(FINETUNE_RESULT) is not None else "frozen"


# ----- per-session caches of things derived from a result ------------------------------------------

def _result_key(result) -> tuple:
    return (str(result.run_dir), id(result.model))


def confusion_cell_records(result, true_index: int, pred_index: int) -> list:
    """The evaluated images with this true and predicted class.

    Predictions over the evaluation split are computed once per result and kept in the session.
    """
    from lib.evaluate import cell_records, evaluation_records, predict_records

    records = evaluation_records(result)
    cache = st.session_state.setdefault(TRAIN_EVAL_PREDICTIONS, {})
    key = _result_key(result)
    if key not in cache:
        cache.clear()  # only the newest result's predictions are worth keeping
        cache[key] = predict_records(result.model, records, len(result.class_names)).argmax(axis=1)
    return cell_records(records, cache[key], true_index, pred_index)


def _preview_body(result):
    """A private copy of the result's body, made once per result, for the unfreeze preview."""
    from lib.evaluate import make_preview_body

    key = _result_key(result)
    cached = st.session_state.get(FINETUNE_PREVIEW_BODY)
    if cached is None or cached[0] != key:
        cached = (key, make_preview_body(result.model))
        st.session_state[FINETUNE_PREVIEW_BODY] = cached
    return cached[1]


def body_layer_count(result) -> int:
    """How many layers the body has, counted as `unfreeze_top` counts them."""
    from lib.models import layer_table

    return len(layer_table(_preview_body(result)))


def unfreeze_preview(result, n_layers: int) -> list[dict]:
    """`layer_table` rows (bottom to top) as they would be after unfreezing the top `n_layers`."""
    from lib.evaluate import preview_unfreeze

    return preview_unfreeze(_preview_body(result), n_layers)


def session_probe(model, labels, key: tuple, max_probes: int):
    """This session's `lib.inside.probe.ModelProbe` for a model it trained, kept so the probe's
    compiled steps are traced once; at most `max_probes` are kept (oldest dropped).
    """
    from lib.inside.probe import ModelProbe

    probes: dict = st.session_state.get(INSIDE_PROBES) or {}
    if key not in probes:
        probes = dict(list(probes.items())[-(max_probes - 1):]) if max_probes > 1 else {}
        probes[key] = ModelProbe(model, labels)
        st.session_state[INSIDE_PROBES] = probes
    return probes[key]


def gallery() -> list[dict]:
    """This session's finished ideal images, newest first: `[{"result", "label"}, ...]`."""
    return list(st.session_state.get(INSIDE_GALLERY) or [])


def remember_ideal(result, label: str, max_items: int) -> None:
    """Adds a finished ideal image to the gallery (newest first), once; keeps `max_items`."""
    items = gallery()
    if any(item["result"] is result for item in items):
        return
    items.insert(0, {"result": result, "label": label})
    st.session_state[INSIDE_GALLERY] = items[:max_items]


def lesson_results() -> dict:
    """This session's computed lesson results, keyed by (lesson, params); filled by the page."""
    return st.session_state.setdefault(LESSONS_RESULTS, {})


def lesson_answers_shown() -> dict:
    """Lesson name -> whether this session revealed the lesson's answer."""
    return st.session_state.setdefault(LESSONS_ANSWERS, {})
