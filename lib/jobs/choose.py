"""`get_backend()`: the job backend this process uses, chosen by `TRANSFERLAB_SCHEDULER`.

    unset or ""         `EmbeddedBackend` (threads here, the server's job slots)
    local               `DaskBackend` on a `LocalCluster` of worker processes, started once
    tcp://HOST:PORT     `DaskBackend` with a client to that scheduler
"""

from __future__ import annotations

import os
import threading

from lib.errors import TransferLabError
from lib.jobs.backend import EMBEDDED, LOCAL, JobBackend

SCHEDULER_ENV = "TRANSFERLAB_SCHEDULER"
_DASK_BACKENDS: dict[str, JobBackend] = {}  # one client (and LocalCluster) per address per process
_DASK_LOCK = threading.Lock()


def scheduler_setting(raw: str | None = None) -> str:
    """`raw`, else `TRANSFERLAB_SCHEDULER`, stripped ("" = embedded)."""
    return (os.environ.get(SCHEDULER_ENV, "") if raw is None else raw).strip()


def get_backend(scheduler: str | None = None, *, registry=None, slots=None) -> JobBackend:
    """The backend for `scheduler`, else `TRANSFERLAB_SCHEDULER`.

    Args:
        scheduler: "" (embedded), "local", or a scheduler address such as "tcp://host:8786".
            Defaults to None: read `TRANSFERLAB_SCHEDULER`.
        registry: the server's `JobRegistry` for the embedded backend. Defaults to None.
        slots: the server's job slots for the embedded backend. Defaults to None (no limit).

    Returns:
        A new `EmbeddedBackend` on `registry`/`slots`, or the process's `DaskBackend` for that
        address (made once; it connects when a job is submitted, so a scheduler that is down
        fails the submission, not this call).

    Raises:
        TransferLabError: a setting that is neither "", "local" nor a `tcp://` or `tls://` address.
    """
    setting = scheduler_setting(scheduler)
    if setting in ("", EMBEDDED):
        from lib.jobs.embedded import EmbeddedBackend

        return EmbeddedBackend(registry=registry, slots=slots)
    if setting != LOCAL and not setting.startswith(("tcp://", "tls://", "inproc://")):
        raise TransferLabError(f"Received `{SCHEDULER_ENV}={setting!r}`; use 'local' or a scheduler "
                               "address such as 'tcp://scheduler:8786' (unset: run jobs in-process).")
    with _DASK_LOCK:
        if setting not in _DASK_BACKENDS:
            from lib.jobs.dask_backend import DaskBackend

            _DASK_BACKENDS[setting] = DaskBackend(setting)
        return _DASK_BACKENDS[setting]
