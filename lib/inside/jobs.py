"""The Look inside jobs as `JobSpec`s, so they run wherever the job backend runs jobs.

A spec names the model (`model_ref`: a backbone by registry name, or a run by its folder), the
input pixels (stored once, named by their content, in the uploads area every worker reads:
`store_pixels`) and the settings, all plain JSON. Its task, run on a thread here or on a Dask
worker, loads the model by name (or takes the page's probe from `local`), reports steps through
`callbacks.on_progress`, honours Stop between steps, and leaves its result in the job's folder
(`lib.inside.results`), which `load_result` reads back for the page.

    attack        `attack_spec`   -> `attack_task`   -> `AttackResult`
    eps sweep     `sweep_spec`    -> `sweep_task`    -> `SweepResult`
    grad-cam      `gradcam_spec`  -> `gradcam_task`  -> `GradCamResult`
    ideal image   `ideal_spec`    -> `ideal_task`    -> `{"result": IdealResult, "label"}`
    TV comparison `compare_spec`  -> `compare_task`  -> `compare_tv`'s dict

Their folders hold a `job.json` and the result, never a run's `config.json`, so the Runs page does
not list them as runs; `prune_inside_jobs` removes the ones that ended long ago.
"""

from __future__ import annotations

import functools
import io
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import TransferLabError
from lib.inside import results
from lib.inside.results import load_result  # noqa: F401  (what `lib.jobs.tasks.load_job_result` calls)
from lib.jobs.spec import JobSpec
from lib.status import QUEUED, RUNNING

ATTACK, SWEEP, GRADCAM, IDEAL, COMPARE = "attack", "eps sweep", "grad-cam", "ideal image", "TV comparison"
TASK_MODULE = "lib.inside.jobs"
TASKS = {ATTACK: f"{TASK_MODULE}:attack_task", SWEEP: f"{TASK_MODULE}:sweep_task",
         GRADCAM: f"{TASK_MODULE}:gradcam_task", IDEAL: f"{TASK_MODULE}:ideal_task",
         COMPARE: f"{TASK_MODULE}:compare_task"}
ATTACK_KEYS = ("method", "norm", "eps", "steps", "target", "random_init", "margin")
SWEEP_KEYS = ("method", "norm", "steps", "random_init", "margin")
PIXELS_FILE = "pixels.npy"
FRAMES_DIR = "frames"
# A worker keeps this many probes (a model with its traced steps) between jobs.
PROBE_CACHE_ENTRIES = 2
# Folders of Look inside jobs that ended this long ago are removed (the page keeps what it read).
INSIDE_JOB_KEEP_S = 24 * 3600.0


# ----- what a spec names: the model and the input pixels -----------------------------------------

def model_ref(*, backbone: str | None = None, run_dir: str | Path | None = None) -> dict:
    """The model a Look inside job probes, as JSON: `{"backbone": name}` or `{"run": folder}`.

    Raises:
        TransferLabError: neither or both given.
    """
    if (backbone is None) == (run_dir is None):
        raise TransferLabError(f"Received `backbone={backbone!r}` and `run_dir={run_dir!r}`; give "
                               "exactly one of them.")
    return {"backbone": str(backbone)} if backbone is not None else {"run": str(run_dir)}


def uploads_root() -> Path:
    from lib.storage import cache_dir
    from lib.uploads import UPLOADS_DIR

    return cache_dir() / UPLOADS_DIR


def store_pixels(images: np.ndarray) -> str:
    """Keeps pixels (one `(S, S, 3)` image or a `(N, S, S, 3)` batch) where every worker reads them,
    named by their content (`<cache>/uploads/<digest>/pixels.npy`); whole-pixel images as uint8.

    Returns:
        The stored file's path.

    Raises:
        TransferLabError: not an image or a batch of images, or values outside [0, 255].
    """
    from lib.data.housekeeping import prune, touch
    from lib.uploads import save_upload

    array = np.asarray(images, np.float32)
    if array.ndim not in (3, 4) or array.shape[-1] != 3 or not np.isfinite(array).all() or (
            array.size and (array.min() < 0 or array.max() > 255)):
        raise TransferLabError(f"Received pixels of shape {array.shape}; expected (S, S, 3) or "
                               "(N, S, S, 3) values in [0, 255].")
    if np.array_equal(array, np.round(array)):
        array = array.astype(np.uint8)  # a quarter of the bytes, the same values
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path = Path(save_upload(PIXELS_FILE, buffer.getvalue()))
    touch(path.parent)  # in use: the uploads housekeeping keeps it while the job waits
    prune(uploads_root())
    return str(path)


def load_pixels(path: str | Path) -> np.ndarray:
    """Pixels stored by `store_pixels`, as float32.

    Raises:
        TransferLabError: a path outside this machine's uploads area, or a file that is gone or
            not plain numbers.
    """
    path, root = Path(path), uploads_root()
    try:
        inside = path.name == PIXELS_FILE and path.resolve().parent.parent == root.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise TransferLabError(f"The job's input {path} is not in this machine's uploads folder "
                               f"{root}: give the workers the web server's TRANSFERLAB_CACHE (a "
                               "shared folder).")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise TransferLabError(f"The job's input image is gone or unreadable ({path}): {e}") from e
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "uif":
        raise TransferLabError(f"The job's input {path} does not hold pixels.")
    return array.astype(np.float32)


def make_backbone_probe(backbone):
    """A `ModelProbe` on a loaded backbone's own classifier (ImageNet labels for 1000 classes).

    Raises:
        TransferLabError: a feature-vector backbone, which has no classifier.
    """
    from lib.backbones.imagenet import imagenet_labels
    from lib.inside.probe import ModelProbe

    classes = backbone.spec.num_classes
    if classes <= 0:
        raise TransferLabError(f"{backbone.spec.name} has no classifier (it outputs features); "
                               "train a head on it first.")
    labels = imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    return ModelProbe(backbone.model, labels)


@functools.lru_cache(maxsize=PROBE_CACHE_ENTRIES)
def _cached_probe(backbone: str, run_dir: str, stamp: float):
    del stamp  # only part of the cache key: a run saved again is loaded again
    if backbone:
        from lib.backbones import load_backbone

        return make_backbone_probe(load_backbone(backbone, allow_random=True))
    from lib.inside.probe import ModelProbe
    from lib.predict import load_classifier

    loaded = load_classifier(run=run_dir)
    return ModelProbe(loaded.model, list(loaded.class_names))


def load_probe(model: dict):
    """The probe a `model_ref` names, loaded in this process (kept for the next job).

    Raises:
        TransferLabError: a malformed reference, an unknown backbone or a run that cannot be loaded.
    """
    if set(model) == {"backbone"}:
        return _cached_probe(str(model["backbone"]), "", 0.0)
    if set(model) == {"run"}:
        run_dir = Path(model["run"])
        stamps = [p.stat().st_mtime for p in (run_dir, *run_dir.glob("*")) if p.exists()]
        return _cached_probe("", str(run_dir), max(stamps, default=0.0))
    raise TransferLabError(f"Received `model={model!r}`; name a backbone or a run folder.")


def job_probe(params: dict, local: dict):
    """The page's probe when the job runs in its process, else the one the spec names."""
    return local.get("probe") or load_probe(params["model"])


# ----- specs -------------------------------------------------------------------------------------

def _spec(kind: str, params: dict, owner: str) -> JobSpec:
    if not isinstance(params.get("model"), dict):
        raise TransferLabError(f"Received `model={params.get('model')!r}`; use `model_ref(...)`.")
    return JobSpec(kind=kind, task=TASKS[kind], params=params, owner=owner).validate()


def attack_spec(model: dict, image: str, settings: dict, owner: str = "") -> JobSpec:
    """One adversarial example.

    Args:
        model: a `model_ref`.
        image: the `(S, S, 3)` pixels' path from `store_pixels`.
        settings: `method, norm, eps, steps, target, random_init, margin` (`lib.inside.attacks.attack`).
        owner: the visitor who starts it. Defaults to "".
    """
    return _spec(ATTACK, {"model": model, "image": str(image),
                          "settings": {k: settings[k] for k in ATTACK_KEYS if k in settings}}, owner)


def sweep_spec(model: dict, images: str, eps: list[float], labels: list[int] | None,
               settings: dict, owner: str = "") -> JobSpec:
    """An ε sweep: the method and norm of `settings` at every ε of `eps`, untargeted.

    Args:
        model: a `model_ref`.
        images: the `(N, S, S, 3)` pixels' path from `store_pixels`.
        eps: the budgets, in pixel units.
        labels: the images' true classes, or None to attack the clean predictions.
        settings: `method, norm, steps, random_init, margin`.
        owner: the visitor who starts it. Defaults to "".
    """
    return _spec(SWEEP, {"model": model, "images": str(images), "eps": [float(e) for e in eps],
                         "labels": None if labels is None else [int(v) for v in labels],
                         "settings": {k: settings[k] for k in SWEEP_KEYS if k in settings}}, owner)


def gradcam_spec(model: dict, image: str, class_index: int | None, layer: str | None,
                 owner: str = "") -> JobSpec:
    """A Grad-CAM heatmap for `class_index` (None: the predicted class) at `layer` (None: the last
    feature map)."""
    return _spec(GRADCAM, {"model": model, "image": str(image),
                           "class_index": None if class_index is None else int(class_index),
                           "layer": layer}, owner)


def ideal_spec(model: dict, objective: dict, settings, owner: str = "") -> JobSpec:
    """An ideal image.

    Args:
        model: a `model_ref`.
        objective: `{"class_index", "layer", "channel", "label"}` (class_index None for a channel).
        settings: an `IdealSettings`.
        owner: the visitor who starts it. Defaults to "".
    """
    objective = {k: objective.get(k) for k in ("class_index", "layer", "channel", "label")}
    return _spec(IDEAL, {"model": model, "objective": objective, "settings": asdict(settings)}, owner)


def compare_spec(model: dict, class_index: int, settings, others: list[str],
                 owner: str = "") -> JobSpec:
    """Plain ascent, TV 0 and `settings` for one class, seen also by the backbones `others` (those
    without weights on the worker are left out)."""
    return _spec(COMPARE, {"model": model, "class_index": int(class_index),
                           "settings": asdict(settings), "others": [str(o) for o in others]}, owner)


# ----- tasks: `task(params, *, run_dir, callbacks, stop_event, local)` --------------------------

def _progress(callbacks, done: int, total: int, message: str) -> None:
    on_progress = getattr(callbacks, "on_progress", None)
    if on_progress is not None:
        on_progress(done, total, message)


def _step_progress(callbacks):
    return lambda info: _progress(callbacks, info["step"], info["steps"],
                                  f"step {info['step']}/{info['steps']}")


def attack_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.inside.attacks import attack

    probe = job_probe(params, local)
    result = attack(probe, load_pixels(params["image"]), stop_event=stop_event,
                    on_step=_step_progress(callbacks), **params["settings"])
    results.save_result(run_dir, results.ATTACK, result)
    return result


def sweep_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.inside.attacks import eps_sweep

    probe = job_probe(params, local)
    settings = params["settings"]
    result = eps_sweep(probe, load_pixels(params["images"]), params["eps"], labels=params["labels"],
                       on_progress=lambda d, t, m: _progress(callbacks, d, t, m),
                       stop_event=stop_event, **settings)
    results.save_result(run_dir, results.SWEEP, result)
    return result


def gradcam_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.inside.gradcam import gradcam

    probe = job_probe(params, local)
    _progress(callbacks, 0, 1, "computing gradients")
    result = gradcam(probe, load_pixels(params["image"]), params["class_index"],
                     layer=params["layer"])
    results.save_result(run_dir, results.GRADCAM, result)
    return result


def ideal_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    """Records every step (a "batch" row: one step over a batch of random views) and writes a
    frame now and then as a PNG in the job's folder, for the page's live view."""
    from lib.images import save_image
    from lib.inside.ideal import IdealSettings, ideal_image
    from lib.storage import atomic_write_path

    probe, objective = job_probe(params, local), params["objective"]
    progress = _step_progress(callbacks)

    def on_step(info: dict) -> None:
        if callbacks.on_batch_end is not None:
            callbacks.on_batch_end({"step": info["step"], "prob": info["prob"],
                                    "objective": info["objective"]})
        progress(info)

    def on_frame(info: dict) -> None:
        path = Path(run_dir) / FRAMES_DIR / f"step-{info['step']:05d}.png"
        atomic_write_path(path, lambda tmp: save_image(info["image"], tmp), ".png")
        if callbacks.on_batch_end is not None:
            callbacks.on_batch_end({"step": info["step"], "frame": str(path)})

    result = ideal_image(probe, objective["class_index"], IdealSettings(**params["settings"]),
                         layer=objective["layer"], channel=objective["channel"], on_step=on_step,
                         on_frame=on_frame, stop_event=stop_event)
    out = {"result": result, "label": objective["label"]}
    results.save_result(run_dir, results.IDEAL, out)
    return out


def transfer_probes(names: list[str]) -> dict:
    """Probes of the backbones `names` that have their weights here (the others are left out)."""
    from lib.backbones import load_backbone

    probes = {}
    for name in names:
        backbone = load_backbone(name, allow_random=True)
        if backbone.pretrained:
            probes[name] = make_backbone_probe(backbone)
    return probes


def compare_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.inside.ideal import IdealSettings, compare_tv

    probe = job_probe(params, local)
    others = local["others"] if "others" in local else transfer_probes(params["others"])
    out = compare_tv(probe, params["class_index"], IdealSettings(**params["settings"]),
                     others=others, on_progress=lambda d, t, m: _progress(callbacks, d, t, m),
                     stop_event=stop_event)
    results.save_result(run_dir, results.COMPARE, out)
    return out


# ----- housekeeping ------------------------------------------------------------------------------

def is_inside_job(state: dict) -> bool:
    """True for the `job.json` state of a Look inside job."""
    return str((state.get("spec") or {}).get("task", "")).startswith(f"{TASK_MODULE}:")


def prune_inside_jobs(root: Path | None = None, *, keep_s: float = INSIDE_JOB_KEEP_S,
                      now: float | None = None) -> list[Path]:
    """Removes the folders of Look inside jobs that ended more than `keep_s` seconds ago.

    Args:
        root: where runs live. Defaults to None: `lib.storage.runs_dir()`.
        keep_s: how long an ended job's result is kept. Defaults to `INSIDE_JOB_KEEP_S`.
        now: the `time.time()` to judge by. Defaults to None (now).

    Returns:
        The folders removed.
    """
    from lib.data.housekeeping import remove_entry
    from lib.jobs.store import job_dir, list_jobs

    now = time.time() if now is None else now
    removed = []
    for state in list_jobs(root):
        if not is_inside_job(state) or state["status"] in (QUEUED, RUNNING):
            continue
        ended = float(state.get("finished") or state.get("heartbeat") or state.get("submitted") or 0)
        if now - ended > keep_s:
            folder = job_dir(str(state["id"]), root)
            remove_entry(folder)
            removed.append(folder)
    return removed
