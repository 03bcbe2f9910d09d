"""lib.jobs: background jobs with lock-protected state and a stop Event."""

from __future__ import annotations

import threading
import time

from lib.errors import TransferLabError
from lib.jobs import DONE, FAILED, RUNNING, STOPPED, Job, format_seconds, job_callbacks, start_job


def test_job_runs_target_and_keeps_result():
    def target(job: Job) -> int:
        for i in range(3):
            job.append("batch", {"batch": i, "loss": 1.0 / (i + 1)})
            job.set_progress(i + 1, 3, f"step {i + 1}")
        return 42

    job = start_job("demo", target)
    assert job.wait(10)
    snap = job.snapshot()
    assert snap["status"] == DONE
    assert snap["result"] == 42
    assert snap["fraction"] == 1.0
    assert [r["batch"] for r in snap["events"]["batch"]] == [0, 1, 2]
    assert snap["finished"] >= snap["started"]
    assert snap["error"] is None


def test_snapshot_is_a_copy():
    job = Job("demo", lambda j: None)
    job.append("epoch", {"loss": 1.0})
    snap = job.snapshot()
    snap["events"]["epoch"].append({"loss": 0.0})
    snap["events"]["epoch"][0]["loss"] = 5.0  # rows are copied on append, not on snapshot
    assert len(job.snapshot()["events"]["epoch"]) == 1


def test_append_copies_the_row():
    job = Job("demo", lambda j: None)
    row = {"loss": 1.0}
    job.append("batch", row)
    row["loss"] = 2.0
    assert job.snapshot()["events"]["batch"][0]["loss"] == 1.0


def test_user_error_becomes_message_without_traceback_text():
    def target(job: Job) -> None:
        raise TransferLabError("The folder /nope does not exist.")

    job = start_job("demo", target)
    assert job.wait(10)
    snap = job.snapshot()
    assert snap["status"] == FAILED
    assert snap["error"] == "The folder /nope does not exist."
    assert "Traceback" not in snap["error"]
    assert "TransferLabError" in snap["traceback"]


def test_unexpected_error_is_labelled_and_keeps_traceback():
    def target(job: Job) -> None:
        raise ZeroDivisionError("division by zero")

    job = start_job("demo", target)
    assert job.wait(10)
    snap = job.snapshot()
    assert snap["status"] == FAILED
    assert snap["error"].startswith("Unexpected error: ZeroDivisionError")
    assert "Traceback" in snap["traceback"]


def test_stop_sets_event_and_ends_as_stopped():
    started = threading.Event()

    def target(job: Job) -> str:
        started.set()
        while not job.stop_event.is_set():
            time.sleep(0.01)
        return "partial"

    job = start_job("demo", target)
    assert started.wait(5)
    assert job.snapshot()["status"] == RUNNING
    job.stop()
    assert job.snapshot()["stopping"] or job.snapshot()["status"] == STOPPED
    assert job.wait(5)
    snap = job.snapshot()
    assert snap["status"] == STOPPED
    assert snap["result"] == "partial"


def test_eta_is_estimated_from_progress():
    job = Job("demo", lambda j: None)
    job._started = time.time() - 10  # 10 s for half the work -> about 10 s left
    job.set_progress(5, 10, "half")
    assert 9 < job.snapshot()["eta"] < 11
    job.set_progress(5, 10, eta=3.0)
    assert job.snapshot()["eta"] == 3.0


def test_job_callbacks_record_rows_and_progress():
    job = Job("train", lambda j: None)
    cb = job_callbacks(job, epochs=2)
    cb["on_extract"](4, 8)
    assert job.snapshot()["fraction"] == 0.5
    cb["on_batch_end"]({"phase": "frozen", "epoch": 1, "batch": 1, "batches": 4,
                        "loss": 0.7, "accuracy": 0.5, "eta_seconds": 2.0})
    cb["on_epoch_end"]({"phase": "frozen", "epoch": 1, "epochs": 2, "loss": 0.6})
    cb["on_message"]("hello")
    snap = job.snapshot()
    assert snap["done"] == 1 and snap["total"] == 8
    assert snap["eta"] == 2.0
    assert snap["events"]["epoch"][0]["loss"] == 0.6
    assert snap["message"] == "hello"


def test_cannot_start_twice():
    job = start_job("demo", lambda j: None)
    job.wait(5)
    try:
        job.start()
    except RuntimeError:
        pass
    else:
        raise AssertionError("second start must fail")


def test_job_callbacks_count_fine_tune_epochs_from_the_offset():
    job = Job("finetune", lambda j: None)
    cb = job_callbacks(job, epochs=2, epoch_offset=5)
    cb["on_batch_end"]({"phase": "fine_tune", "epoch": 7, "batch": 3, "batches": 4})
    snap = job.snapshot()
    assert (snap["done"], snap["total"]) == (7, 8)
    assert "epoch 2/2" in snap["message"]


def test_format_seconds():
    assert format_seconds(None) == "–"
    assert format_seconds(4.6) == "5 s"
    assert format_seconds(200) == "3 min 20 s"
    assert format_seconds(3900) == "1 h 05 min"


def test_jobs_queue_for_the_servers_slots_and_can_stop_while_queued():
    import threading

    from lib.jobs import QUEUED_MESSAGE, start_job

    slots = threading.BoundedSemaphore(1)
    release_first = threading.Event()
    ran = []

    def first(job):
        release_first.wait(5)
        ran.append("first")

    def second(job):
        ran.append("second")

    a = start_job("train", first, slots=slots)
    b = start_job("train", second, slots=slots)
    c = start_job("train", second, slots=slots)
    time.sleep(0.4)
    assert b.snapshot()["message"] == QUEUED_MESSAGE and ran == []
    c.stop()
    release_first.set()
    assert a.wait(5) and b.wait(5) and c.wait(5)
    assert ran == ["first", "second"]  # the stopped job never ran
    assert c.snapshot()["status"] == "stopped" and b.snapshot()["status"] == "done"
    assert slots.acquire(blocking=False)  # every slot was given back
