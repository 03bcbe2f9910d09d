"""Run directories: everything needed to reproduce, inspect and reuse one training run.

    <runs_dir()>/<run>/
        config.json     the TrainConfig (+ backbone/data facts), enough to reproduce the run
        status.json     running | done | stopped | failed, with pid, host and a heartbeat
        labels.txt      class names, one per line, in label order
        history.csv     one row per epoch: phase, epoch, loss, accuracy, val_loss, val_accuracy, ...
        metrics.json    evaluation of the final model, parameter counts, per-phase summaries
        model.keras     the trained classifier (loads with safe_mode=True, no custom objects)
        checkpoints/    head.weights.h5 (best epoch of the frozen phase), model.keras (fine-tuning)
        tb/             TensorBoard logs, one folder per phase

Every file is written atomically, and only by this package: training code hands a
`lib.runs.recorder.RunRecorder` what to keep (its context manager starts, finishes or fails the run
and keeps a heartbeat; its Keras callback keeps the history and the best checkpoint on disk while a
phase trains). A run whose process
died (a server restart mid-run) still says "running" on disk; `read_status` sees the dead pid or the
stale heartbeat and reports it as "interrupted", and `load_trained_model` falls back to its last
checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import keras
import pandas as pd

from lib.errors import TransferLabError
from lib.status import DONE, FAILED, INTERRUPTED, RUNNING, STOPPED
from lib.storage import atomic_save_model, atomic_save_weights, atomic_write_text, runs_dir

STATUSES = (RUNNING, DONE, STOPPED, FAILED, INTERRUPTED)

CONFIG_FILE = "config.json"
CLAIM_FILE = ".claim"  # created exclusively by the process that owns the run
WEIGHTS_SUFFIX = ".weights.h5"
STATUS_FILE = "status.json"
LABELS_FILE = "labels.txt"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"
HEAD_CHECKPOINT = "head.weights.h5"
MODEL_CHECKPOINT = "model.keras"
TB_DIR = "tb"
HISTORY_COLUMNS = ("phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
# A running run whose heartbeat is older than this is treated as dead even if its pid exists
# (pids are reused). A recorder's timer thread beats every HEARTBEAT_SECONDS, whatever training does.
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 300.0
# History and best-checkpoint writes at most this often, so a fast feature-cache epoch
# (milliseconds) is not dominated by fsyncs; the last state is always flushed at phase end.
WRITE_INTERVAL_S = 2.0


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "data"


def write_json(path: Path, value) -> None:
    """Writes JSON atomically (readers see the old file or the new one)."""
    atomic_write_text(path, json.dumps(value, indent=2, default=str))


def read_json(path: Path) -> dict | None:
    """Reads a JSON object, or None if the file is missing or half-written by a crash."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def new_run_dir(config, root: Path | None = None, *, claim: bool = True) -> Path:
    """Creates a fresh, uniquely named run folder.

    Args:
        config: the run's `TrainConfig` (its backbone and data name the folder).
        root: where runs live. Defaults to None: `lib.storage.runs_dir()`.
        claim: claim it for this process. Defaults to True; a job submitted to a worker leaves
            the claim to the training that runs there.

    Returns:
        The new, empty folder: `<root>/<UTC time>-<backbone>-<data>[-N]`.
    """
    root = Path(root) if root is not None else runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{_slug(config.backbone)}-{_slug(Path(str(config.data)).name)}"
    for i in range(1000):
        path = root / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        if claim:
            claim_run_dir(path)
        return path
    raise TransferLabError(f"Could not create a new run folder under {root}.")


def make_run_dir(run_dir: Path | str | None, config) -> Path:
    """`prepare_run_dir(run_dir)`, or `new_run_dir(config)` when `run_dir` is None."""
    return prepare_run_dir(run_dir) if run_dir is not None else new_run_dir(config)


def prepare_run_dir(run_dir: Path | str) -> Path:
    """Checks that a user-chosen run folder is new or empty, and creates it.

    Raises:
        TransferLabError: it already holds a run, or is a file.
    """
    run_dir = Path(run_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise TransferLabError(f"Received `--out {run_dir}`, which is a file; give a folder.")
    if (run_dir / CONFIG_FILE).exists() or (run_dir / MODEL_FILE).exists():
        raise TransferLabError(
            f"{run_dir} already holds a run; choose a new folder so that run is not overwritten."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    claim_run_dir(run_dir)
    return run_dir


def claim_run_dir(run_dir: Path) -> None:
    """Claims a run folder for this process, atomically: of two processes that start a run in the
    same folder at the same instant, exactly one gets it (`O_CREAT | O_EXCL` on a claim file).

    Raises:
        TransferLabError: another run claimed the folder first.
    """
    try:
        fd = os.open(Path(run_dir) / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError as e:
        raise TransferLabError(
            f"{run_dir} is already taken by another run; choose a new folder so the two do not mix."
        ) from e
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}@{socket.gethostname()}\n")


# ----- status ------------------------------------------------------------------------------------


def write_status(run_dir: Path, status: str, **extra) -> dict:
    """Writes `status.json` with this process's pid, host and a fresh heartbeat.

    Args:
        run_dir: the run.
        status: one of `STATUSES`.
        **extra: more fields (e.g. `phase`, `error`, `epoch`), merged over the previous ones.

    Returns:
        The status written.
    """
    previous = read_json(Path(run_dir) / STATUS_FILE) or {}
    value = {**previous, **extra, "status": status, "pid": os.getpid(),
             "host": socket.gethostname(), "heartbeat": time.time(), "updated": utc_now()}
    value.setdefault("started", utc_now())
    write_json(Path(run_dir) / STATUS_FILE, value)
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, OverflowError, TypeError):
        return False
    return True


def read_status(run_dir: Path) -> dict:
    """Reads `status.json`, turning a dead "running" run into "interrupted".

    A run is interrupted when its status says running but the process that wrote it is gone (same
    host, dead pid) or its heartbeat is older than `STALE_AFTER_SECONDS`.

    Returns:
        The status dict; `status` is always one of `STATUSES`. A missing or unreadable file gives
        `interrupted` (the run was killed before it wrote one).
    """
    value = read_json(Path(run_dir) / STATUS_FILE)
    if value is None:
        return {"status": INTERRUPTED, "reason": "no readable status.json"}
    if value.get("status") not in STATUSES:
        value["status"] = FAILED
    if value["status"] == RUNNING:
        same_host = value.get("host") == socket.gethostname()
        dead = same_host and not _pid_alive(int(value.get("pid") or -1))
        stale = time.time() - float(value.get("heartbeat") or 0) > STALE_AFTER_SECONDS
        if dead or stale:
            value["status"] = INTERRUPTED
            value["reason"] = "its process ended mid-run" if dead else "no heartbeat for a long time"
    return value


# ----- writing the pieces ------------------------------------------------------------------------


def write_config(run_dir: Path, config: dict) -> None:
    """Writes `config.json`, keeping the `worker` a job backend recorded there (where it ran)."""
    previous = read_json(Path(run_dir) / CONFIG_FILE) or {}
    if "worker" in previous and "worker" not in config:
        config = {**config, "worker": previous["worker"]}
    write_json(Path(run_dir) / CONFIG_FILE, config)


def write_labels(run_dir: Path, class_names) -> None:
    atomic_write_text(Path(run_dir) / LABELS_FILE, "".join(f"{c}\n" for c in class_names))


def write_history(run_dir: Path, history: pd.DataFrame) -> None:
    atomic_write_text(Path(run_dir) / HISTORY_FILE, history.to_csv(index=False))


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_json(Path(run_dir) / METRICS_FILE, metrics)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Saves a `.keras` file so readers never see half of it (Keras writes in place otherwise).

    A model on a TF Hub body also gets `<name>.weights.h5` beside it: Keras' safe mode refuses the
    SavedModel layer inside the `.keras` file, so such runs reload by rebuilding the model from the
    config (which re-checks the SavedModel) and loading these weights.
    """
    atomic_save_model(model, path)
    if holds_saved_model(model):
        atomic_save_weights(model, weights_file(path))


def weights_file(model_path: Path) -> Path:
    """`model.keras` -> `model.weights.h5` beside it."""
    return Path(model_path).with_name(f"{Path(model_path).stem}{WEIGHTS_SUFFIX}")


def holds_saved_model(model: keras.Model) -> bool:
    """True when a layer of the model, nested models included, wraps a SavedModel (TF Hub)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.TFSMLayer):
            return True
        if isinstance(layer, keras.Model) and holds_saved_model(layer):
            return True
    return False


# ----- reading -----------------------------------------------------------------------------------


def read_config(run_dir: Path) -> dict:
    """The run's `config.json`, or {} when it has none (yet)."""
    return read_json(Path(run_dir) / CONFIG_FILE) or {}


def read_labels(run_dir: Path) -> list[str]:
    path = Path(run_dir) / LABELS_FILE
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    except OSError:
        return []


def read_history(run_dir: Path) -> pd.DataFrame:
    """Reads `history.csv`; an empty frame with the standard columns when there is none yet."""
    try:
        return pd.read_csv(Path(run_dir) / HISTORY_FILE)
    except (OSError, ValueError):
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))


def _best(history: pd.DataFrame, column: str) -> float | None:
    if column not in history or history[column].dropna().empty:
        return None
    return float(history[column].max())


def summarize_run(run_dir: Path) -> dict | None:
    """One row for the runs table, or None for a folder that is not a run."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG_FILE)
    if config is None and not (run_dir / STATUS_FILE).exists():
        return None
    config = config or {}
    status = read_status(run_dir)
    metrics = read_json(run_dir / METRICS_FILE) or {}
    history = read_history(run_dir)
    evaluation = metrics.get("evaluation") or {}
    return {
        "name": run_dir.name,
        "path": str(run_dir),
        "status": status["status"],
        "backbone": config.get("backbone"),
        "data": config.get("data"),
        "kind": config.get("kind", "transfer"),
        "epochs": int(len(history)),
        "val_accuracy": metrics.get("val_accuracy", _best(history, "val_accuracy")),
        "test_accuracy": evaluation.get("accuracy") if evaluation.get("split") == "test" else None,
        "started": status.get("started"),
        "updated": status.get("updated"),
        "has_model": (run_dir / MODEL_FILE).is_file() or _has_checkpoint(run_dir),
        "owner": str(config.get("owner") or ""),
        "shared": bool(config.get("shared", False)),
    }


def list_runs(root: Path | None = None, *, viewer: str | None = None) -> list[dict]:
    """Lists the runs on disk, newest first. Never fails on a half-written or foreign folder.

    Args:
        root: where runs live. Defaults to None: `lib.storage.runs_dir()`.
        viewer: on a hosted server, the session asking: it sees its own runs and the runs marked
            shared. None (a local or team server, the CLI) lists every run. Defaults to None.

    Returns:
        Dicts with `name, path, status, backbone, data, kind, epochs, val_accuracy, test_accuracy,
        started, updated, has_model, owner, shared`.
    """
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    rows = []
    for child in root.iterdir():
        if not child.is_dir() or child.name.startswith("."):
            continue
        try:
            row = summarize_run(child)
        except Exception:  # noqa: BLE001 - one odd folder must not hide the others
            row = {"name": child.name, "path": str(child), "status": FAILED}
        if row is not None and (viewer is None or visible_to(row, viewer)):
            rows.append(row)
    return sorted(rows, key=lambda r: (r.get("started") or "", r["name"]), reverse=True)


def visible_to(row: dict, viewer: str) -> bool:
    """True when a hosted session may see a run: it started it, or the run is shared."""
    return bool(row.get("shared")) or (bool(viewer) and row.get("owner") == viewer)


def set_shared(run_dir: Path | str, shared: bool) -> None:
    """Marks a run as shared with every session of a hosted server (or not), in its config."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG_FILE)
    if config is None:
        raise TransferLabError(f"{run_dir} is not a TransferLab run (no readable {CONFIG_FILE}).")
    write_json(run_dir / CONFIG_FILE, {**config, "shared": bool(shared)})


def load_run(run_dir: Path | str) -> dict:
    """Reads a run for display.

    Returns:
        `{"path", "name", "config": dict, "history": DataFrame, "metrics": dict, "status": dict,
        "labels": list[str]}`.

    Raises:
        TransferLabError: the folder is not a run.
    """
    run_dir = Path(run_dir).expanduser()
    config = read_json(run_dir / CONFIG_FILE)
    if config is None:
        raise TransferLabError(f"{run_dir} is not a TransferLab run (no readable {CONFIG_FILE}).")
    return {
        "path": str(run_dir),
        "name": run_dir.name,
        "config": config,
        "history": read_history(run_dir),
        "metrics": read_json(run_dir / METRICS_FILE) or {},
        "status": read_status(run_dir),
        "labels": read_labels(run_dir),
    }


def _has_checkpoint(run_dir: Path) -> bool:
    folder = Path(run_dir) / CHECKPOINT_DIR
    return (folder / MODEL_CHECKPOINT).is_file() or (folder / HEAD_CHECKPOINT).is_file()


def _load_keras(path: Path) -> keras.Model:
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same problem for a person
        raise TransferLabError(f"Could not load the model in {path}: {e}") from e


def _rebuild_from_head_checkpoint(run_dir: Path, config: dict, labels: list[str]) -> keras.Model:
    """Rebuilds backbone body + head from the config and loads the checkpointed head weights."""
    from lib.backbones import load_backbone
    from lib.models import HeadConfig, build_body, build_classifier, build_head

    backbone = load_backbone(config["backbone"], allow_random=not config.get("pretrained", True))
    body = build_body(backbone, config.get("cut"))
    head = build_head(tuple(body.outputs[0].shape[1:]), len(labels),
                      HeadConfig(**(config.get("head") or {})), seed=int(config.get("seed", 0)))
    head.load_weights(Path(run_dir) / CHECKPOINT_DIR / HEAD_CHECKPOINT)
    return build_classifier(body, head, backbone.spec.input_size)


def _on_hub_backbone(config: dict) -> bool:
    from lib.backbones.hub_compat import looks_like_handle

    return looks_like_handle(str(config.get("backbone", "")))


def _rebuild_with_weights(config: dict, labels: list[str], weights: Path) -> keras.Model:
    """Rebuilds a hub-bodied classifier from its config and loads its saved weights.

    The body is a private copy (loading fine-tuned weights must not change the shared backbone), and
    the SavedModel is checked again by `load_backbone` before anything of it runs.
    """
    from lib.backbones import load_backbone
    from lib.models import HeadConfig, build_body, build_classifier, build_head, copy_body

    backbone = load_backbone(config["backbone"])
    body = copy_body(build_body(backbone, config.get("cut")))
    head = build_head(tuple(body.outputs[0].shape[1:]), len(labels),
                      HeadConfig(**(config.get("head") or {})), seed=int(config.get("seed", 0)))
    model = build_classifier(body, head, backbone.spec.input_size)
    try:
        model.load_weights(weights)
    except (OSError, ValueError) as e:
        raise TransferLabError(f"Could not load the weights in {weights}: {e}") from e
    return model


def load_trained_model(run_dir: Path | str) -> tuple[keras.Model, list[str]]:
    """Loads a run's classifier and its class names.

    Uses `model.keras`; a run that was interrupted before writing it (or while fine-tuning after it)
    falls back to its newest checkpoint.

    Args:
        run_dir: a run folder.

    Returns:
        `(model, class_names)`; the model takes pixels in [0, 255].

    Raises:
        TransferLabError: the folder is missing, is not a run, or has no model or checkpoint yet.
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise TransferLabError(f"Run folder {run_dir} does not exist.")
    labels = read_labels(run_dir)
    if not labels:
        raise TransferLabError(f"{run_dir} is not a finished run: it has no {LABELS_FILE}.")
    final = run_dir / MODEL_FILE
    checkpoint = run_dir / CHECKPOINT_DIR / MODEL_CHECKPOINT
    config = read_json(run_dir / CONFIG_FILE)
    if config is not None and _on_hub_backbone(config):
        saved = [weights_file(p) for p in (final, checkpoint) if weights_file(p).is_file()]
        if saved:
            newest = max(saved, key=lambda p: p.stat().st_mtime)
            return _rebuild_with_weights(config, labels, newest), labels
    candidates = [p for p in (final, checkpoint) if p.is_file()]
    if candidates:
        newest = max(candidates, key=lambda p: p.stat().st_mtime)
        return _load_keras(newest), labels
    if config is not None and (run_dir / CHECKPOINT_DIR / HEAD_CHECKPOINT).is_file():
        return _rebuild_from_head_checkpoint(run_dir, config, labels), labels
    raise TransferLabError(
        f"{run_dir} has no model yet (no {MODEL_FILE} and no checkpoint): it did not finish an epoch."
    )
