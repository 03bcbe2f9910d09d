"""The training jobs as specs, and the functions a worker runs for them.

`train_spec`, `scratch_spec` and `finetune_spec` describe a job by names and numbers (a
`JobSpec`); `train_task`, `scratch_task` and `finetune_task` run one, loading the backbone and the
data by name (or taking them from `local`, the objects an in-process caller already holds).
`run_job` is what a Dask worker calls: it reports into the run store and never raises, so a job
that fails leaves its message in `job.json` and the worker lives on. `rerun_spec` turns an
interrupted run back into a spec ("Run again with the same config").

TensorFlow is imported inside the functions, so importing `lib.jobs` stays cheap.
"""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path
from typing import Any

from lib import runs
from lib.errors import TransferLabError
from lib.jobs.handle import error_message
from lib.jobs.priority import lower_process_priority
from lib.jobs.spec import JobSpec, resolve_task
from lib.jobs.store import JobReporter, StopRequest, mark_interrupted, read_job
from lib.jobs.thread import job_callbacks
from lib.status import DONE, FAILED, INTERRUPTED, RUNNING, STOPPED

TRAIN, SCRATCH, FINETUNE = "train", "scratch", "finetune"
TASKS = {TRAIN: "lib.jobs.tasks:train_task", SCRATCH: "lib.jobs.tasks:scratch_task",
         FINETUNE: "lib.jobs.tasks:finetune_task"}
CALLBACK_KEYS = ("on_batch_end", "on_epoch_end", "on_extract", "on_message", "on_progress")


# ----- specs -------------------------------------------------------------------------------------

def train_spec(config, owner: str = "") -> JobSpec:
    """A frozen-backbone training (then fine-tuning when `config.fine_tune_epochs`).

    Args:
        config: a validated `TrainConfig`.
        owner: the visitor who starts it. Defaults to "".
    """
    return JobSpec(kind=TRAIN, task=TASKS[TRAIN], params={"config": config.to_dict()}, owner=owner,
                   progress={"epochs": config.epochs + config.fine_tune_epochs}).validate()


def scratch_spec(config, owner: str = "") -> JobSpec:
    """The from-scratch baseline with the same data and budget as `config`."""
    return JobSpec(kind=SCRATCH, task=TASKS[SCRATCH], params={"config": config.to_dict()},
                   owner=owner, progress={"epochs": config.epochs + config.fine_tune_epochs}).validate()


def finetune_spec(source_run: Path | str, *, epochs: int, unfreeze_blocks: int, lr_factor: float,
                  epoch_offset: int = 0, owner: str = "") -> JobSpec:
    """Fine-tuning a saved frozen run into a new run folder (the saved run stays as it was).

    Args:
        source_run: the frozen run's folder.
        epochs: fine-tuning epochs.
        unfreeze_blocks: top blocks of the body to unfreeze.
        lr_factor: the body's peak rate = the run's learning rate x this.
        epoch_offset: epochs already in the run's history (the bar counts the new ones).
            Defaults to 0.
        owner: the visitor who starts it. Defaults to "".
    """
    from lib.training.config import check_fine_tune_settings

    check_fine_tune_settings(epochs, lr_factor)
    params = {"source_run": str(source_run), "epochs": int(epochs),
              "unfreeze_blocks": int(unfreeze_blocks), "lr_factor": float(lr_factor)}
    return JobSpec(kind=FINETUNE, task=TASKS[FINETUNE], params=params, owner=owner,
                   progress={"epochs": int(epochs), "epoch_offset": int(epoch_offset)}).validate()


def spec_names(spec: JobSpec) -> tuple[str, str]:
    """(backbone, data) a spec's run folder is named after; a job that trains nothing (Look
    inside, the zoo) is named after its model and its kind instead."""
    if spec.kind == FINETUNE:
        config = runs.read_config(Path(spec.params["source_run"]))
    elif "config" in spec.params:
        config = spec.params["config"] or {}
    else:
        model = spec.params.get("model") or {}
        name = model.get("backbone") or Path(str(model.get("run") or "")).name or "zoo"
        return str(name), spec.kind
    return str(config.get("backbone") or spec.kind), str(config.get("data") or "data")


def rerun_spec(run_dir: Path | str, owner: str = "") -> JobSpec:
    """The spec that runs an (interrupted) run again with the same config, in a new folder.

    Uses the job the run was started as; a run started without one (the plain CLI) is rebuilt
    from its `config.json`.

    Raises:
        TransferLabError: the folder is not a run, or a kind of run that cannot be run again.
    """
    from lib.training.config import TrainConfig

    run_dir = Path(run_dir)
    state = read_job(run_dir)
    if state is not None and state.get("spec"):
        spec = JobSpec.from_dict(state["spec"])
        return JobSpec(kind=spec.kind, task=spec.task, params=spec.params, owner=owner,
                       progress=spec.progress).validate()
    config = runs.read_config(run_dir)
    if not config:
        raise TransferLabError(f"{run_dir} is not a TransferLab run (no readable config.json).")
    if config.get("fine_tuned_from"):
        raise TransferLabError(f"{run_dir} was fine-tuned from another run without a job record; "
                               "fine-tune that run again on the Fine-tune page.")
    train_config = TrainConfig.from_dict(config).validate()
    return (scratch_spec if config.get("kind") == "scratch" else train_spec)(train_config, owner)


# ----- tasks: `task(params, *, run_dir, callbacks, stop_event, local)` --------------------------

def train_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.training import TrainConfig, train

    config = TrainConfig.from_dict(params["config"])
    return train(config, backbone=local.get("backbone"), dataset=local.get("dataset"),
                 run_dir=run_dir, callbacks=callbacks, stop_event=stop_event)


def scratch_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.training import TrainConfig, train_from_scratch

    config = TrainConfig.from_dict(params["config"])
    return train_from_scratch(config, dataset=local.get("dataset"), run_dir=run_dir,
                              callbacks=callbacks, stop_event=stop_event)


def finetune_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> Any:
    from lib.training import fine_tune, load_train_result

    result = local.get("result") or load_train_result(params["source_run"], callbacks=callbacks)
    return fine_tune(result, epochs=int(params["epochs"]),
                     unfreeze_blocks=int(params["unfreeze_blocks"]),
                     lr_factor=float(params["lr_factor"]), callbacks=callbacks,
                     stop_event=stop_event, run_dir=run_dir)


def execute(spec: JobSpec, job, stop_event, local: dict | None = None) -> Any:
    """Runs a spec's task, reporting into `job` (a thread `Job`, a `JobReporter`, or both).

    Args:
        spec: the job, with its run folder.
        job: has `append`, `set_progress`, `set_message` (see `lib.jobs.job_callbacks`).
        stop_event: has `is_set()`; honoured within one batch.
        local: objects the caller already holds (`backbone`, `dataset`, `result`). Defaults to
            None (the task loads what it needs by name).

    Returns:
        What the task returned (a `TrainResult` for the training kinds).
    """
    from lib.training import TrainCallbacks

    task = resolve_task(spec.task)
    cbs = job_callbacks(job, epochs=spec.progress.get("epochs"),
                        epoch_offset=int(spec.progress.get("epoch_offset") or 0))
    callbacks = TrainCallbacks(**{k: cbs[k] for k in CALLBACK_KEYS})
    return task(spec.params, run_dir=Path(spec.run_dir), callbacks=callbacks,
                stop_event=stop_event, local=local or {})


def worker_facts(backend: str) -> dict:
    """Where a job runs: backend, Dask worker address (on a worker), host and pid."""
    facts = {"backend": backend, "host": socket.gethostname(), "pid": os.getpid()}
    if backend == "dask":
        try:
            from distributed import get_worker

            facts["address"] = get_worker().address
        except ValueError:  # not inside a worker (a test calling run_job directly)
            facts["address"] = ""
    return facts


def run_job(spec_dict: dict) -> str:
    """What a Dask worker runs: the job, with its state in the run store. Never raises.

    A second call for the same job (the scheduler retrying it after its worker died) does not
    train again into the same folder: it records the job as interrupted (when its first worker is
    gone) and returns.

    Returns:
        The run folder.
    """
    lower_process_priority()  # pages on the same machine come first
    spec = JobSpec.from_dict(spec_dict)
    reporter = JobReporter(spec, worker_facts("dask"))
    if not reporter.start():
        state = read_job(spec.run_dir)
        if state is not None and state["status"] == INTERRUPTED or (
                state is not None and state["status"] == RUNNING and not _first_alive(state)):
            mark_interrupted(spec.run_dir)
        return spec.run_dir
    stop_event = StopRequest(spec.run_dir)
    if stop_event.is_set():  # stopped while it waited for a worker
        reporter.finish(STOPPED)
        return spec.run_dir
    try:
        result = execute(spec, reporter, stop_event)
    except Exception as e:  # noqa: BLE001 - the message goes to the store; the worker lives on
        reporter.finish(FAILED, error=error_message(e), traceback=traceback.format_exc())
    else:
        stopped = bool(getattr(result, "stopped", False)) or stop_event.is_set()
        reporter.finish(STOPPED if stopped else DONE, result=spec.run_dir)
    return spec.run_dir


def _first_alive(state: dict) -> bool:
    """Whether the first worker of a job is known to be alive (same machine, pid exists)."""
    worker = state.get("worker") or {}
    if worker.get("host") != socket.gethostname():
        return True  # the heartbeat will tell (`read_job`)
    try:
        os.kill(int(worker.get("pid") or -1), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except OSError:
        return True
    return True


def embedded_target(spec: JobSpec, local: dict | None):
    """The thread target of a spec on the embedded backend: reports into the thread `Job` and the
    run store at once, and stops on the job's Stop or on a stop file (another front-end)."""

    def target(job) -> Any:
        reporter = JobReporter(spec, worker_facts("embedded"))
        reporter.start()
        both = _Both(job, reporter)
        try:
            result = execute(spec, both, StopRequest(spec.run_dir, also=job.stop_event), local)
        except Exception as e:
            reporter.finish(FAILED, error=error_message(e), traceback=traceback.format_exc())
            raise
        stopped = bool(getattr(result, "stopped", False)) or job.stop_event.is_set()
        reporter.finish(STOPPED if stopped else DONE, result=spec.run_dir)
        return result

    return target


class _Both:
    """Reports to a thread job and a store reporter alike."""

    def __init__(self, *targets) -> None:
        self.targets = targets

    def append(self, kind: str, row: dict) -> None:
        for t in self.targets:
            t.append(kind, row)

    def set_progress(self, done, total, message=None, eta=None) -> None:
        for t in self.targets:
            t.set_progress(done, total, message, eta=eta)

    def set_message(self, message: str) -> None:
        for t in self.targets:
            t.set_message(message)


def load_job_result(run_dir: Path | str):
    """A finished job's result: a `TrainResult` loaded from its run folder (`lib.training.resume`),
    or, for a task whose module has a `load_result(run_dir)` (Look inside), what that reads."""
    import importlib

    from lib.training.resume import load_run_result

    state = read_job(run_dir) or {}
    module = str((state.get("spec") or {}).get("task", "")).partition(":")[0]
    if module and module != __name__:
        JobSpec(kind="check", task=f"{module}:load_result").validate()  # only lib modules
        loader = getattr(importlib.import_module(module), "load_result", None)
        if loader is not None:
            return loader(run_dir)
    return load_run_result(run_dir)
