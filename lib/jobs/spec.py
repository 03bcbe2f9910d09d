"""`JobSpec`: a job described by names and plain values, so any process can run it.

A spec names its task as `"module:function"` (importable on a Dask worker, which has the same
checkout) and carries JSON parameters: no closures, models or datasets travel. The job's state is
kept in its run folder (`run_dir`), whose name is the job's id.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lib.errors import TransferLabError

TASK_PREFIX = "lib."  # tasks are project functions; a spec never names arbitrary code


@dataclass(frozen=True)
class JobSpec:
    """One job: what to run, with what, for whom, and where its state goes.

    Attributes:
        kind: what the job does (`"train"`, `"scratch"`, `"finetune"`); pages and the sidebar
            name jobs by it.
        task: the function to run, as `"module:function"` under `lib.`. It is called as
            `task(params, run_dir=..., callbacks=..., stop_event=..., local=...)`.
        params: JSON-serialisable parameters of the task.
        run_dir: the job's run folder (absolute); its name is the job's id. Defaults to "" (the
            backend allocates one).
        owner: who started it (a visitor id), for per-visitor limits. Defaults to "".
        progress: how the progress bar counts: `{"epochs": N, "epoch_offset": K}`. Defaults to {}.
    """

    kind: str
    task: str
    params: dict = field(default_factory=dict)
    run_dir: str = ""
    owner: str = ""
    progress: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The job's id: its run folder's name ("" before one is allocated)."""
        return Path(self.run_dir).name if self.run_dir else ""

    def validate(self) -> JobSpec:
        """Checks the task name and that the parameters are plain JSON.

        Raises:
            TransferLabError: a task outside `lib.`, a malformed name, or parameters that do not
                survive JSON.
        """
        module, _, function = self.task.partition(":")
        if not module.startswith(TASK_PREFIX) or not function.isidentifier():
            raise TransferLabError(f"Received `task={self.task!r}`; name a lib function as "
                                   "'lib.module:function'.")
        try:
            json.dumps({"params": self.params, "progress": self.progress})
        except (TypeError, ValueError) as e:
            raise TransferLabError(f"The parameters of a {self.kind} job must be plain JSON: {e}") from e
        return self

    def with_run_dir(self, run_dir: Path | str) -> JobSpec:
        """The same job in another run folder (a rerun, or once the backend allocated one)."""
        return replace(self, run_dir=str(run_dir))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> JobSpec:
        """The spec back from `to_dict()` (unknown keys are ignored, for older job files)."""
        known = {k: value[k] for k in ("kind", "task", "params", "run_dir", "owner", "progress")
                 if k in value}
        return cls(**known)


def resolve_task(name: str) -> Callable:
    """The function a task name refers to, imported on the worker.

    Raises:
        TransferLabError: not a `lib.` function, or it does not exist in this checkout.
    """
    JobSpec(kind="check", task=name).validate()
    module, _, function = name.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise TransferLabError(f"This worker has no task {name!r} (is its checkout the same as "
                               f"the web server's?): {e}") from e
