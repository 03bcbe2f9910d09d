"""The model zoo's measuring as a job, runnable on any worker.

`zoo_measure_spec` describes it by names and numbers; `zoo_measure_task` runs it where the job
backend puts it (a thread here, or a Dask worker: then the measurements describe that worker's
machine, its GPU included, and each row records the worker); `load_result` reads what it measured
back from the job's run folder, and `store_result` files those rows in this server's zoo cache.

The task stores its rows as `lib.zoo.measure_zoo` always does, in the measuring machine's zoo
cache (keyed by its fingerprint), and also in `zoo.json` of its run folder, which lies in the
shared run store: a front-end whose cache folder is not the worker's still gets the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lib import runs
from lib.errors import TransferLabError
from lib.jobs.spec import JobSpec
from lib.jobs.tasks import worker_facts

ZOO_MEASURE = "zoo_measure"
ZOO_MEASURE_TASK = "lib.jobs.zoo_tasks:zoo_measure_task"
RESULT_FILE = "zoo.json"


def zoo_measure_spec(names: Sequence[str] | None, batches: Sequence[int], *,
                     min_runs: int | None = None, budget_s: float | None = None,
                     isolate: bool = True, owner: str = "") -> JobSpec:
    """A measuring job for the zoo.

    Args:
        names: registry names or hub handles; None or empty measures every listed backbone.
        batches: batch sizes to time.
        min_runs: timed calls per batch size, at least. Defaults to None (`lib.zoo.MIN_RUNS`).
        budget_s: timed seconds per batch size. Defaults to None (`lib.zoo.TIME_BUDGET_S`).
        isolate: measure each backbone in a fresh process on the worker (see
            `lib.zoo.measure_zoo`). Defaults to True.
        owner: the visitor who starts it. Defaults to "".

    Raises:
        TransferLabError: batch sizes out of range, or a name that is not text (echoed).
    """
    from lib.zoo.measure import MIN_RUNS, TIME_BUDGET_S, check_batches

    names = list(names or [])
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise TransferLabError(f"Received `names={names!r}`; name backbones by their registry "
                               "names or hub handles.")
    params = {"names": names or None, "batches": list(check_batches(batches)),
              "min_runs": int(MIN_RUNS if min_runs is None else min_runs),
              "budget_s": float(TIME_BUDGET_S if budget_s is None else budget_s),
              "isolate": bool(isolate)}
    return JobSpec(kind=ZOO_MEASURE, task=ZOO_MEASURE_TASK, params=params, owner=owner).validate()


def measuring_worker(job_id: str) -> dict:
    """Where a measuring job runs: backend ("dask" on a Dask worker, else "embedded"), worker
    address, host, pid, and the job's id (which tells this job's rows from older ones)."""
    facts = worker_facts("dask")
    if not facts.get("address"):
        facts["backend"] = "embedded"
    return {**facts, "job": job_id}


def progress_fn(callbacks: Any) -> Callable[[int, int, str], None] | None:
    """The `on_progress(done, total, message)` among a job's callbacks (an object or a dict);
    falls back to `on_message(message)` when there is none."""
    get = callbacks.get if isinstance(callbacks, dict) else lambda k: getattr(callbacks, k, None)
    on_progress, on_message = get("on_progress"), get("on_message")
    if on_progress is not None:
        return on_progress
    if on_message is not None:
        return lambda done, total, message: on_message(message)
    return None


def zoo_measure_task(params: dict, *, run_dir: Path, callbacks, stop_event, local: dict) -> dict:
    """Measures the backbones of `params` here; stops after the current backbone on a stop request.

    Returns:
        `{"fingerprint", "rows", "worker"}`: this machine's fingerprint, `{name: row}` of the
        backbones this job measured (a failed one has `"error"`), and where it ran. Also written
        to `<run_dir>/zoo.json`.
    """
    from lib import zoo

    worker = measuring_worker(Path(run_dir).name)
    data = zoo.measure_zoo(params.get("names"), params["batches"], min_runs=int(params["min_runs"]),
                           budget_s=float(params["budget_s"]), on_progress=progress_fn(callbacks),
                           stop_event=stop_event, isolate=bool(params.get("isolate", True)),
                           worker=worker)
    result = {"fingerprint": data["fingerprint"], "worker": worker,
              "rows": {name: row for name, row in data["rows"].items() if row.get("worker") == worker}}
    runs.write_json(Path(run_dir) / RESULT_FILE, result)
    return result


def load_result(run_dir: Path | str) -> dict:
    """What a finished measuring job measured (`zoo_measure_task`'s result), from its run folder.

    Raises:
        TransferLabError: the job left no `zoo.json` (it ended before it measured anything).
    """
    result = runs.read_json(Path(run_dir) / RESULT_FILE)
    if not isinstance(result, dict) or "fingerprint" not in result:
        raise TransferLabError("The measuring job ended before it measured any backbone.")
    return result


def store_result(result: dict | None) -> dict | None:
    """Files a measuring job's rows in this server's zoo cache, under the measuring machine's
    fingerprint. Returns that fingerprint, or None when there was nothing to file."""
    if not result or not result.get("rows"):
        return None
    from lib import zoo

    zoo.merge_zoo_rows(result["fingerprint"], result["rows"])
    return result["fingerprint"]
