"""`EmbeddedBackend`: jobs as threads of this process (the default; no service needed).

Each job of a spec runs `lib.jobs.tasks.execute` on a thread `Job`, in one of the server's job
slots, recorded in its `JobRegistry` (per-visitor limits, abandoned jobs); its progress also goes
to the run store, so the Runs page and other front-ends see it like a Dask job.
"""

from __future__ import annotations

from lib.jobs.backend import EMBEDDED, JobBackend
from lib.jobs.follow import StoreJob
from lib.jobs.handle import JobHandle
from lib.jobs.spec import JobSpec
from lib.jobs.store import allocate_run_dir, job_dir, write_job
from lib.jobs.thread import Job, JobRegistry


class EmbeddedBackend(JobBackend):
    """Runs jobs on threads here.

    Args:
        registry: the server's `JobRegistry`. Defaults to None: a private one.
        slots: the server's job slots. Defaults to None (no limit).
    """

    name = EMBEDDED

    def __init__(self, registry: JobRegistry | None = None, slots=None) -> None:
        self.registry = registry if registry is not None else JobRegistry()
        self.slots = slots

    def submit(self, spec: JobSpec, *, local: dict | None = None) -> str:
        from lib.jobs.tasks import embedded_target, spec_names

        spec = spec.validate()
        if not spec.run_dir:
            spec = spec.with_run_dir(allocate_run_dir(*spec_names(spec)))
        write_job(spec, backend=EMBEDDED)
        job = Job(spec.kind, embedded_target(spec, local), self.slots)
        job.id = spec.id
        self.registry.register(job, spec.owner)
        job.start()
        return job.id

    def handle(self, job_id: str) -> JobHandle:
        """The thread `Job` while this process knows it, else the job read from the store."""
        job = self.registry.find(job_id)
        if job is not None:
            return job
        from lib.jobs.tasks import load_job_result

        return StoreJob(job_dir(job_id), load_job_result)

    def list(self, owner: str | None = None) -> list[dict]:
        snaps = []
        for job in self.registry.running(owner):
            snap = job.peek()
            snap.pop("events", None)
            snap["unseen"] = job.unseen_for()
            snaps.append(snap)
        return snaps
