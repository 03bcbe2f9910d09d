"""The job interface without a cluster: specs, job state in the run store (events, stop requests,
snapshots, interrupted detection) and the embedded backend running a training spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from lib.errors import TransferLabError
from lib.jobs import JobSpec, get_backend
from lib.jobs.follow import EventTail, StoreJob
from lib.jobs.store import (
    EVENTS_FILE,
    JOB_FILE,
    JOB_STALE_S,
    JobReporter,
    StopRequest,
    finish_unstarted,
    list_jobs,
    read_job,
    request_stop,
    write_job,
)
from lib.jobs.tasks import run_job, train_spec
from lib.status import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED
from tests.conftest import make_image_folder


def make_spec(tmp_path, name="20260101-000000-tiny-data", **params) -> JobSpec:
    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    return JobSpec(kind="train", task="lib.jobs.tasks:train_task", params=params,
                   run_dir=str(run_dir), owner="visitor-a", progress={"epochs": 2})


def dead_pid() -> int:
    """The pid of a process that has ended (never reused this quickly in practice)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_spec_round_trip_and_validation(tmp_path):
    spec = make_spec(tmp_path, config={"epochs": 2})
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.id == "20260101-000000-tiny-data"
    with pytest.raises(TransferLabError, match="os:system"):
        JobSpec(kind="x", task="os:system").validate()
    with pytest.raises(TransferLabError, match="plain JSON"):
        JobSpec(kind="x", task="lib.jobs.tasks:train_task", params={"f": object()}).validate()


def test_reporter_events_and_snapshot_round_trip(tmp_path):
    spec = make_spec(tmp_path)
    write_job(spec)
    handle = StoreJob(spec.run_dir, load_result=lambda run_dir: "loaded")
    assert handle.running and handle.snapshot()["status"] == RUNNING  # queued reads as running
    assert handle.snapshot()["queued"]
    reporter = JobReporter(spec, {"backend": "test", "host": "h", "pid": os.getpid()})
    assert reporter.start()
    reporter.append("batch", {"phase": "frozen", "epoch": 1, "batch": 1, "batches": 2, "loss": 0.9})
    reporter.append("epoch", {"phase": "frozen", "epoch": 1, "loss": 0.8, "val_accuracy": 0.5})
    reporter.set_progress(2, 4, "Frozen: epoch 1/2")
    reporter._write_locked()
    snap = handle.snapshot()
    assert snap["status"] == RUNNING and not snap["queued"]
    assert snap["fraction"] == 0.5 and snap["message"] == "Frozen: epoch 1/2"
    assert snap["events"]["epoch"][0]["val_accuracy"] == 0.5
    assert snap["epoch"] == 1 and snap["metrics"]["loss"] == 0.8
    reporter.append("epoch", {"phase": "frozen", "epoch": 2, "loss": 0.7})
    reporter.finish(DONE, result=spec.run_dir)
    snap = handle.snapshot()
    assert snap["status"] == DONE and not handle.running
    assert [r["epoch"] for r in snap["events"]["epoch"]] == [1, 2]
    assert snap["result"] == "loaded" and snap["fraction"] == 1.0
    assert [s["id"] for s in list_jobs(tmp_path / "runs", owner="visitor-a")] == [spec.id]
    assert list_jobs(tmp_path / "runs", owner="visitor-b") == []


def test_event_tail_reads_only_what_was_appended(tmp_path):
    path = tmp_path / EVENTS_FILE
    path.write_text('{"kind": "epoch", "epoch": 1}\n{"kind": "epo')
    tail = EventTail(tmp_path)
    assert [r["epoch"] for r in tail.read()["epoch"]] == [1]  # the half line waits
    with open(path, "a") as f:
        f.write('ch", "epoch": 2}\nnot json\n')
    assert [r["epoch"] for r in tail.read()["epoch"]] == [1, 2]
    assert tail._offset == path.stat().st_size
    assert [r["epoch"] for r in tail.read()["epoch"]] == [1, 2]  # nothing new, nothing doubled


def test_stop_request_has_the_event_api(tmp_path):
    also = threading.Event()
    stop = StopRequest(tmp_path, also=also)
    assert not stop.is_set() and not stop.wait(0.01)
    request_stop(tmp_path)  # from another process: a file in the run folder
    assert stop.is_set() and stop.wait(0)
    other = StopRequest(tmp_path / "x", also=also)
    (tmp_path / "x").mkdir()
    also.set()
    assert other.is_set()


def test_a_dead_or_silent_worker_reads_interrupted(tmp_path):
    spec = make_spec(tmp_path)
    write_job(spec)
    path = spec.run_dir + "/" + JOB_FILE
    state = json.loads(open(path).read())
    state.update(status=RUNNING, heartbeat=1000.0, worker={"host": "elsewhere", "pid": 1})
    open(path, "w").write(json.dumps(state))
    assert read_job(spec.run_dir, now=1000.0 + JOB_STALE_S - 1)["status"] == RUNNING
    silent = read_job(spec.run_dir, now=1000.0 + JOB_STALE_S + 1)
    assert silent["status"] == INTERRUPTED and "Runs page" in silent["error"]
    import socket

    state.update(heartbeat=1e12, worker={"host": socket.gethostname(), "pid": dead_pid()})
    open(path, "w").write(json.dumps(state))
    assert read_job(spec.run_dir)["status"] == INTERRUPTED  # same machine, process gone


def test_an_interrupted_look_inside_job_does_not_point_at_a_checkpoint(tmp_path):
    from lib.inside.jobs import attack_spec, model_ref

    spec = attack_spec(model_ref(backbone="tiny_random"), str(tmp_path / "pixels.npy"), {})
    spec = spec.with_run_dir(tmp_path / "20260101-000000-tiny_random-attack")
    write_job(spec)
    path = spec.run_dir + "/" + JOB_FILE
    state = json.loads(open(path).read())
    state.update(status=RUNNING, heartbeat=1000.0, worker={"host": "elsewhere", "pid": 1})
    open(path, "w").write(json.dumps(state))
    silent = read_job(spec.run_dir, now=1000.0 + JOB_STALE_S + 1)
    assert silent["status"] == INTERRUPTED
    assert "checkpoint" not in silent["error"] and "start it again from its page" in silent["error"]


def test_a_retried_job_does_not_run_twice(tmp_path):
    """What a worker does when the scheduler retries a job whose first worker died."""
    import socket

    spec = make_spec(tmp_path, config={})
    write_job(spec)
    first = JobReporter(spec, {"backend": "dask", "host": socket.gethostname(), "pid": dead_pid()})
    assert first.start()
    first._stop.set()  # its heartbeat died with it
    assert not JobReporter(spec, {}).start()
    assert run_job(spec.to_dict()) == spec.run_dir  # returns at once, trains nothing
    assert read_job(spec.run_dir)["status"] == INTERRUPTED


def test_a_queued_job_stopped_before_a_worker_took_it(tmp_path):
    spec = make_spec(tmp_path)
    write_job(spec)
    assert read_job(spec.run_dir)["status"] == QUEUED
    assert finish_unstarted(spec.run_dir, STOPPED)
    assert not JobReporter(spec, {}).start()  # a worker picking it up later leaves it alone
    assert read_job(spec.run_dir)["status"] == STOPPED


def test_a_failing_task_leaves_its_message_and_returns(tmp_path):
    from lib.training import TrainConfig

    config = TrainConfig(backbone="tiny_random", data=str(tmp_path / "no-such-folder"))
    spec = train_spec(config).with_run_dir(tmp_path / "runs" / "failing")
    (tmp_path / "runs" / "failing").mkdir(parents=True)
    write_job(spec)
    assert run_job(spec.to_dict()) == spec.run_dir  # no exception reaches the worker
    state = read_job(spec.run_dir)
    assert state["status"] == FAILED and "no-such-folder" in state["error"]


def test_embedded_backend_runs_a_train_spec(tmp_path, tiny_backbone):
    from lib.runs import list_runs, load_trained_model, read_config
    from lib.training import TrainConfig

    folder = make_image_folder(tmp_path / "data", {"red": 10, "green": 10}, size=36)
    config = TrainConfig(backbone="tiny_random", data=str(folder), epochs=2,
                         early_stopping_patience=None, batch_size=8).validate()
    backend = get_backend("")
    assert backend.name == "embedded"
    job_id = backend.submit(train_spec(config, owner="visitor-a"), local={"backbone": tiny_backbone})
    handle = backend.handle(job_id)
    assert handle.wait(120)
    snap = backend.snapshot(job_id)
    assert snap["status"] == DONE, snap["error"]
    assert snap["result"].run_dir.name == job_id  # the TrainResult in memory
    run_dir = snap["result"].run_dir
    assert read_config(run_dir)["worker"]["backend"] == "embedded"
    stored = StoreJob(run_dir, load_result=lambda d: None).snapshot()
    assert stored["status"] == DONE and len(stored["events"]["epoch"]) == 2
    assert any(r["name"] == job_id and r["status"] == DONE for r in list_runs())
    load_trained_model(run_dir)


def test_a_bad_scheduler_setting_is_refused():
    with pytest.raises(TransferLabError, match="TRANSFERLAB_SCHEDULER"):
        get_backend("http://nowhere")


def test_rerun_spec_from_the_job_or_the_config(tmp_path):
    from lib.jobs.tasks import rerun_spec, scratch_spec
    from lib.runs import write_config
    from lib.training import TrainConfig

    config = TrainConfig(backbone="tiny_random", data="builtin:faces", epochs=3).validate()
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    write_job(scratch_spec(config, owner="someone").with_run_dir(run))
    again = rerun_spec(run, owner="me")
    assert (again.kind, again.owner, again.run_dir) == ("scratch", "me", "")  # a new folder
    assert again.params["config"]["epochs"] == 3
    plain = tmp_path / "runs" / "b"  # a run the plain CLI trained: no job.json
    plain.mkdir()
    write_config(plain, {**config.to_dict(), "kind": "transfer"})
    assert rerun_spec(plain).kind == "train"
    with pytest.raises(TransferLabError, match="not a TransferLab run"):
        rerun_spec(tmp_path / "runs" / "missing")


def test_a_stop_file_from_another_front_end_stops_an_embedded_job(tmp_path, tiny_backbone):
    from lib.training import TrainConfig

    folder = make_image_folder(tmp_path / "data", {"red": 10, "green": 10}, size=36)
    # Many epochs on pixels: still running when the stop is asked for, however fast the machine.
    config = TrainConfig(backbone="tiny_random", data=str(folder), epochs=60, batch_size=1,
                         early_stopping_patience=None, use_feature_cache=False).validate()
    backend = get_backend("")
    job = backend.handle(backend.submit(train_spec(config), local={"backbone": tiny_backbone}))
    for _ in range(600):  # bounded: at most 600 polls
        if job.snapshot()["events"].get("epoch") or not job.running:
            break
        job.wait(0.2)
    assert job.running
    request_stop(_run_dir(job))  # what another front-end (or the CLI's Ctrl-C) writes
    assert job.wait(120)
    assert job.snapshot()["status"] == STOPPED
    assert read_job(_run_dir(job))["status"] == STOPPED


def _run_dir(job):
    from lib.storage import runs_dir

    return runs_dir() / job.id


def test_run_job_trains_a_scratch_spec_that_loads_back(tmp_path):
    """What a worker runs, in this process: the run folder is the result, loaded back from disk."""
    from lib.jobs.store import allocate_run_dir
    from lib.jobs.tasks import load_job_result, scratch_spec
    from lib.training import TrainConfig, TrainResult

    folder = make_image_folder(tmp_path / "data", {"red": 8, "green": 8}, size=36)
    config = TrainConfig(backbone="tiny_random", data=str(folder), epochs=1, batch_size=8,
                         early_stopping_patience=None).validate()
    spec = scratch_spec(config).with_run_dir(allocate_run_dir("tiny_random", "data"))
    write_job(spec)
    assert run_job(spec.to_dict()) == spec.run_dir
    snap = StoreJob(spec.run_dir, load_job_result).snapshot()
    assert snap["status"] == DONE, snap["error"]
    assert snap["worker"]["backend"] == "dask" and snap["worker"]["pid"] == os.getpid()
    result = snap["result"]
    assert isinstance(result, TrainResult) and set(result.history["phase"]) == {"scratch"}
    assert result.metrics and not result.pretrained


def test_polling_parses_job_json_only_when_it_changed(tmp_path):
    spec = make_spec(tmp_path)
    write_job(spec)
    handle = StoreJob(spec.run_dir, load_result=lambda run_dir: None)
    for _ in range(5):  # a page's redraws: `running` and `snapshot`, several times per poll
        assert handle.running and handle.snapshot()["queued"]
    assert handle.job_file.parses == 1
    reporter = JobReporter(spec, {"backend": "test", "host": "h", "pid": os.getpid()})
    assert reporter.start()  # the worker rewrites job.json: the next poll parses it once
    reporter.set_progress(1, 4, "Frozen: epoch 1/2")
    reporter._write_locked()
    snaps = [handle.snapshot() for _ in range(3)]
    assert [s["message"] for s in snaps] == ["Frozen: epoch 1/2"] * 3 and not snaps[0]["queued"]
    assert handle.job_file.parses == 2
    # The judgement is made on every read, not cached with the parse: a silent worker and a stop
    # request show at once.
    later = handle.job_file.read(now=time.time() + JOB_STALE_S + 60)
    assert later["status"] == INTERRUPTED and handle.job_file.read()["status"] == RUNNING
    request_stop(spec.run_dir)
    assert handle.snapshot()["stopping"] and handle.job_file.parses == 2
    reporter.finish(DONE)
    assert not handle.running and handle.job_file.parses == 3
