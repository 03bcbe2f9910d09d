"""A job lowers its worker's priority, every thread of it, so pages on the same machine come first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lib.jobs.priority import DEFAULT_JOB_NICE, job_nice

ROOT = Path(__file__).resolve().parents[1]


def test_job_nice_reads_the_environment_and_ignores_nonsense(monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_JOB_NICE", raising=False)
    assert job_nice() == DEFAULT_JOB_NICE
    assert job_nice("0") == 0 and job_nice("19") == 19
    assert job_nice("high") == DEFAULT_JOB_NICE and job_nice("-5") == DEFAULT_JOB_NICE
    monkeypatch.setenv("TRANSFERLAB_JOB_NICE", "7")
    assert job_nice() == 7


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or os.nice(0) > 15,
                    reason="needs Linux per-thread priorities and room to lower them")
def test_every_thread_of_the_process_is_niced_including_ones_started_before():
    # In a child process: this test process must keep its own priority.
    script = textwrap.dedent("""
        import os, threading, time
        from lib.jobs.priority import lower_process_priority
        ready, done = threading.Event(), threading.Event()
        def spin():
            ready.set(); done.wait()
        worker = threading.Thread(target=spin); worker.start(); ready.wait()
        before = {t: os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')}
        target = os.getpriority(os.PRIO_PROCESS, 0) + 3  # whatever niceness the test runs at
        changed = lower_process_priority(target)
        after = {t: os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')}
        again = lower_process_priority(target)
        done.set(); worker.join()
        print(len(before), changed, again, sorted(set(after.values())) == [target])
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    threads, changed, again, values = out.stdout.split(maxsplit=3)
    assert int(threads) >= 2 and int(changed) == int(threads)
    assert int(again) == 0 and values.strip() == "True"
