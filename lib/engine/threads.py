"""One CPU budget per process, so that several LiteRT passes at once never oversubscribe the cores.

A server runs several jobs at once (`TRANSFERLAB_MAX_JOBS`), and each forward pass would like every
core. XNNPACK spins its worker threads, so two interpreters that each take every core run slower
together than one after the other. Each pass therefore leases its threads from `thread_budget()`:
the first takes every free core, a later one takes what is left (at least one), and a lease gives
its cores back when the pass ends.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from functools import lru_cache

THREADS_ENV = "TRANSFERLAB_ENGINE_THREADS"


def available_cores() -> int:
    """Returns the cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class ThreadBudget:
    """Leases interpreter threads out of a fixed number of cores.

    Args:
        cores: how many threads all leases together may hold before new leases drop to one.
    """

    def __init__(self, cores: int) -> None:
        if cores < 1:
            raise ValueError(f"Received `cores={cores}`; a budget needs at least one core.")
        self.cores = cores
        self._leased = 0
        self._lock = threading.Lock()

    @property
    def leased(self) -> int:
        """Threads held by running passes now."""
        with self._lock:
            return self._leased

    @contextlib.contextmanager
    def lease(self, wanted: int | None = None) -> Iterator[int]:
        """Holds threads for one forward pass.

        Args:
            wanted: at most this many threads. Defaults to None: every free core.

        Yields:
            The number of threads to give the interpreter: the free cores (capped at `wanted`),
            and at least one, so a pass never waits for another to end.
        """
        with self._lock:
            free = self.cores - self._leased
            threads = max(1, min(free, wanted) if wanted else free)
            self._leased += threads
        try:
            yield threads
        finally:
            with self._lock:
                self._leased -= threads


@lru_cache(maxsize=1)
def thread_budget() -> ThreadBudget:
    """The process-wide budget: `TRANSFERLAB_ENGINE_THREADS` cores, default every available core."""
    raw = os.environ.get(THREADS_ENV, "")
    cores = int(raw) if raw.isdigit() and int(raw) > 0 else available_cores()
    return ThreadBudget(cores)
