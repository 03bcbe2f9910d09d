"""The one set of status words shared by background jobs and run folders."""

from __future__ import annotations

QUEUED = "queued"  # a job waiting for one of the server's job slots
RUNNING = "running"
DONE = "done"
STOPPED = "stopped"  # stopped by the person, keeping what finished
FAILED = "failed"
INTERRUPTED = "interrupted"  # a run whose process died (no heartbeat); its checkpoint is kept

FINAL = frozenset({DONE, STOPPED, FAILED, INTERRUPTED})
