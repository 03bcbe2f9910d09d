"""Kept so `from lib.job_slots import ...` works: the job slots live in `lib.jobs.slots`."""

from lib.jobs.slots import (
    ABANDON_AFTER_ENV,
    DEFAULT_ABANDON_AFTER_S,
    DEFAULT_JOBS_PER_VISITOR,
    DEFAULT_MAX_JOBS,
    JOBS_PER_VISITOR_ENV,
    MAX_JOBS_ENV,
    abandon_after_s,
    jobs_per_visitor,
    make_job_slots,
    max_jobs,
)

__all__ = [
    "ABANDON_AFTER_ENV", "DEFAULT_ABANDON_AFTER_S", "DEFAULT_JOBS_PER_VISITOR", "DEFAULT_MAX_JOBS",
    "JOBS_PER_VISITOR_ENV", "MAX_JOBS_ENV", "abandon_after_s", "jobs_per_visitor",
    "make_job_slots", "max_jobs",
]
