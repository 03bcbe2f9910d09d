"""Training jobs on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1, started
here and stopped after (also on failure).

A training submitted through the CLI and through the app runs on a worker (the run's config says
which), streams its progress into the run store and finishes with a loadable model; a job that
fails brings its message back and the worker lives on; a worker killed with SIGKILL mid-job leaves
an interrupted run with a loadable checkpoint, which runs again to the end; a scheduler that does
not answer is a message, and submitting works again once it is back. Waits are bounded by generous
timeouts; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.errors import TransferLabError
from lib.status import DONE, INTERRUPTED, RUNNING, STOPPED
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 180
POLL_S = 0.3

pytestmark = pytest.mark.timeout(600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TRANSFERLAB_OFFLINE"] = "1"
    return env


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the test process dies, even if no teardown runs."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_scheduler(port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--no-dashboard"],
        cwd=ROOT, env=process_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent)


def start_worker(address: str, log: Path) -> subprocess.Popen:
    # No nanny: the process killed below is the worker itself, and nothing restarts it.
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
         "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
         "--preload", "lib.training"],
        cwd=ROOT, env=process_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # a worker closing gracefully can take long; no need
            proc.kill()
            proc.wait(15)


def wait_for(condition, timeout: float = JOB_TIMEOUT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"gave up waiting for {what} after {timeout} s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-thread workers; yields `(address, {worker address: process})`."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [start_scheduler(port, logs / "scheduler.log")]
    try:
        procs += [start_worker(address, logs / f"worker{i}.log") for i in range(2)]
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            pids = client.run(os.getpid)
        workers = {addr: next(p for p in procs[1:] if p.pid == pid) for addr, pid in pids.items()}
        yield address, workers
    finally:
        for proc in reversed(procs):
            stop_process(proc)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("dask-data") / "toy", {"red": 12, "green": 12},
                             size=36)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, env=env or process_env(),
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S)


def test_cli_trains_on_a_worker_and_streams_progress(cluster, toy_data):
    from lib.runs import load_trained_model, read_config

    address, workers = cluster
    done = run_cli("train", "--data", str(toy_data), "--backbone", "tiny_random", "--epochs", "3",
                   "--patience", "0", "--batch-size", "8", "--no-feature-cache",
                   "--scheduler", address)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == DONE and summary["epochs"] == 3
    run_dir = Path(summary["run"])
    worker = read_config(run_dir)["worker"]
    assert worker["backend"] == "dask" and worker["address"] in workers
    assert worker["pid"] != os.getpid()
    epochs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    assert done.stderr.count("frozen epoch") == 3  # streamed by the CLI as the worker wrote them
    model, labels = load_trained_model(run_dir)
    assert labels == ["green", "red"] and model.output_shape == (None, 2)


def test_a_failing_job_reaches_the_cli_and_the_worker_survives(cluster, tmp_path, capsys):
    from distributed import Client

    from lib.cli import main

    address, workers = cluster
    code = main(["train", "--data", str(tmp_path / "no-such-folder"), "--backbone", "tiny_random",
                 "--epochs", "1", "--scheduler", address])  # the CLI's entry, in this process
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: ") and "no-such-folder" in err
    with Client(address, timeout=30) as client:
        assert set(client.scheduler_info()["workers"]) == set(workers)


def test_the_train_page_submits_to_the_cluster(cluster, toy_data, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from lib.jobs.follow import StoreJob
    from lib.runs import read_config
    from lib.training import TrainResult

    address, workers = cluster
    monkeypatch.setenv("TRANSFERLAB_SCHEDULER", address)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(toy_data))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_epochs").set_value(2).run()
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = at.session_state["train_job"]
    assert isinstance(job, StoreJob)  # followed through the run store, not a thread here
    seen_running = []

    def finished() -> bool:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        snap = job.snapshot()
        seen_running.append(snap["status"] == RUNNING)
        return snap["status"] != RUNNING

    wait_for(finished, what="the page's training job")
    at.run()  # the rerun the job panel asks for once the job has ended
    assert not at.exception, [e.value for e in at.exception]
    snap = job.snapshot()
    assert snap["status"] == DONE, snap["error"]
    assert len(snap["events"]["epoch"]) == 2
    result = at.session_state["train_result"]
    assert isinstance(result, TrainResult) and result.run_dir.name == job.id
    assert read_config(result.run_dir)["worker"]["address"] in workers
    assert any(m.label.lower().startswith("validation accuracy") for m in at.metric)


def test_an_attack_from_the_look_inside_page_runs_on_a_worker(cluster, toy_data, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from lib.inside.attacks import AttackResult
    from lib.jobs.follow import StoreJob
    from lib.jobs.store import read_job
    from lib.runs import list_runs

    address, workers = cluster
    monkeypatch.setenv("TRANSFERLAB_SCHEDULER", address)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(toy_data))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/inside_adversarial.py").run()
    at.button(key="inside_attack_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = at.session_state["inside_attack_job"]
    assert isinstance(job, StoreJob)  # a spec on the cluster, not a closure on a thread here
    wait_for(lambda: not job.running, what="the page's attack job")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    state = read_job(job.run_dir)
    assert state["status"] == DONE, state.get("error")
    assert state["kind"] == "attack" and state["worker"]["address"] in workers
    assert state["worker"]["pid"] != os.getpid()
    result = job.snapshot()["result"]  # what the page draws, read back from the job's folder
    assert isinstance(result, AttackResult) and result.linf <= 4.0
    assert any("PGD" in m.value and "succeed" in m.value for m in at.markdown)
    assert job.id not in [row["name"] for row in list_runs()]  # not listed as a training run


def tiny_zoo_spec(names: list[str]):
    """A measuring job that is quick on a worker: in-process, one timed call at batch 1."""
    from lib.jobs.zoo_tasks import zoo_measure_spec

    return zoo_measure_spec(names, [1], min_runs=1, budget_s=0.0, isolate=False)


def test_the_zoo_page_measures_on_a_worker(cluster, monkeypatch):
    from functools import partial

    from streamlit.testing.v1 import AppTest

    from lib import zoo
    from lib.jobs import zoo_tasks
    from lib.jobs.follow import StoreJob

    address, workers = cluster
    monkeypatch.setenv("TRANSFERLAB_SCHEDULER", address)
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    # The page's spec as it is, measured in the worker's process with one timed call.
    monkeypatch.setattr(zoo_tasks, "zoo_measure_spec", partial(
        zoo_tasks.zoo_measure_spec, min_runs=1, budget_s=0.0, isolate=False))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/zoo.py").run()
    at.multiselect(key="zoo_measure_batches").set_value([1]).run()
    at.button(key="zoo_measure_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = at.session_state["zoo_measure_job"]
    assert isinstance(job, StoreJob)  # a task on a worker, followed through the run store

    def finished() -> bool:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return job.snapshot()["status"] != RUNNING

    wait_for(finished, what="the page's measuring job")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    snap = job.snapshot()
    assert snap["status"] == DONE, snap["error"]
    assert snap["done"] == snap["total"] == 1
    row = snap["result"]["rows"]["tiny_random"]
    assert row["worker"]["address"] in workers and row["worker"]["pid"] != os.getpid()
    assert row["worker"]["job"] == job.id and row["host"] == row["worker"]["host"]
    fingerprint = snap["result"]["fingerprint"]  # the worker's machine
    assert zoo.load_zoo_cache(fingerprint)["rows"]["tiny_random"]["worker"] == row["worker"]
    assert at.session_state["zoo_table_key"] == fingerprint["key"]
    assert any(s.value.startswith("Measurement done") for s in at.success)


def test_a_zoo_job_on_a_worker_stops_and_a_failure_reaches_its_handle(cluster):
    from lib.jobs import get_backend
    from lib.status import FAILED

    address, _ = cluster
    backend = get_backend(address)
    failing = backend.handle(backend.submit(tiny_zoo_spec(["no_such_backbone"])))
    many = backend.handle(backend.submit(tiny_zoo_spec(["tiny_random"] * 40)))
    assert failing.wait(JOB_TIMEOUT_S)
    snap = failing.snapshot()
    assert snap["status"] == FAILED and "no_such_backbone" in snap["error"]

    wait_for(lambda: many.snapshot()["done"] >= 1, what="the first backbone measured")
    backend.stop(many.id)
    assert many.wait(JOB_TIMEOUT_S)
    snap = many.snapshot()
    assert snap["status"] == STOPPED, snap["error"]
    assert 1 <= snap["done"] < 40 and "tiny_random" in snap["result"]["rows"]


class RecordingBar:
    """The CLI's progress bar, keeping messages; stops the job once it says no worker can run it."""

    def __init__(self, address: str) -> None:
        self.address, self.messages = address, []

    def on_message(self, text: str) -> None:
        from lib.jobs import get_backend

        self.messages.append(text)
        if "no worker offers" in text:
            job_id = self.messages[0].split()[2]  # "Submitted job <id> on the Dask cluster at ..."
            get_backend(self.address).stop(job_id)

    def on_extract(self, done: int, total: int) -> None:
        pass

    def on_batch_end(self, row: dict) -> None:
        pass

    def on_epoch_end(self, row: dict) -> None:
        pass


def test_a_job_no_worker_can_run_says_so_and_waits(cluster, toy_data, monkeypatch):
    from lib.cli.jobs import submit_and_follow
    from lib.jobs import dask_backend
    from lib.jobs.store import read_job
    from lib.jobs.tasks import train_spec
    from lib.training import TrainConfig

    address, _ = cluster
    monkeypatch.setenv("TRANSFERLAB_JOB_RESOURCES", "GPU=1")  # no worker of the cluster has one
    monkeypatch.setattr(dask_backend, "QUEUE_CHECK_S", 0.2)
    spec = train_spec(TrainConfig(backbone="tiny_random", data=str(toy_data), epochs=1).validate())
    backend = dask_backend.DaskBackend(address)
    try:
        handle = backend.handle(backend.submit(spec))
        note = wait_for(lambda: "no worker offers GPU=1" in handle.snapshot()["message"]
                        and handle.snapshot()["message"], timeout=60, what="the job panel's note")
        assert f"dask worker {address} --resources GPU=1" in note
        snap = handle.snapshot()
        assert snap["status"] == RUNNING and snap["queued"] and snap["error"] is None
        assert read_job(handle.run_dir)["status"] == "queued"  # it waits; it is not failed
        listed = next(s for s in backend.list() if s["id"] == handle.id)  # the server's jobs list
        assert "no worker offers GPU=1" in listed["message"]
        backend.stop(handle.id)
        assert read_job(handle.run_dir)["status"] == STOPPED
    finally:
        backend.close()

    bar = RecordingBar(address)  # the CLI (`train --scheduler`) says it too, while it waits
    state = submit_and_follow(spec, address, None, bar)
    assert state["status"] == STOPPED
    assert any("--resources GPU=1" in m for m in bar.messages), bar.messages


def test_a_killed_worker_leaves_an_interrupted_run_that_runs_again(cluster, toy_data):
    from lib.jobs import get_backend
    from lib.jobs.tasks import rerun_spec, train_spec
    from lib.runs import CHECKPOINT_DIR, HEAD_CHECKPOINT, list_runs, load_trained_model
    from lib.training import TrainConfig

    address, workers = cluster
    backend = get_backend(address)
    # 60 epochs of ~16 one-image steps on pixels: the job is still running when the test has
    # seen two epochs, however fast the machine; the test ends it (kill, then stop), not a clock.
    config = TrainConfig(backbone="tiny_random", data=str(toy_data), epochs=60, batch_size=1,
                         early_stopping_patience=None, use_feature_cache=False).validate()
    job_id = backend.submit(train_spec(config, owner="visitor-kill"))
    handle = backend.handle(job_id)
    run_dir = handle.run_dir

    def checkpointed() -> bool:
        snap = handle.snapshot()
        assert snap["status"] == RUNNING, snap["error"]
        return len(snap["events"].get("epoch", [])) >= 2 and (
            run_dir / CHECKPOINT_DIR / HEAD_CHECKPOINT).is_file()

    wait_for(checkpointed, what="two epochs and a checkpoint")
    # A front-end that did not submit it (another replica, a restarted server) lists it too.
    from lib.jobs.dask_backend import DaskBackend

    assert job_id in [snap["id"] for snap in DaskBackend(address).list(owner="visitor-kill")]
    worker = handle.snapshot()["worker"]
    victim = workers[worker["address"]]
    assert victim.pid == worker["pid"]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)

    wait_for(lambda: handle.snapshot()["status"] == INTERRUPTED, timeout=60,
             what="the job to read interrupted")
    assert "run it again" in handle.snapshot()["error"]
    row = next(r for r in list_runs() if r["name"] == job_id)
    assert row["status"] == INTERRUPTED and row["has_model"]
    model, _ = load_trained_model(run_dir)  # the last checkpoint
    assert model.output_shape == (None, 2)

    again = backend.submit(rerun_spec(run_dir, owner="visitor-kill"))
    rerun = backend.handle(again)
    wait_for(lambda: len(rerun.snapshot()["events"].get("epoch", [])) >= 1,
             what="the rerun's first epoch")
    assert rerun.snapshot()["worker"]["address"] != worker["address"]  # the surviving worker
    backend.stop(again)
    assert rerun.wait(JOB_TIMEOUT_S)
    snap = rerun.snapshot()
    assert snap["status"] == STOPPED, snap["error"]
    assert snap["result"] is not None and snap["result"].run_dir.name == again
    load_trained_model(rerun.run_dir)


def test_a_scheduler_that_does_not_answer_then_comes_back(tmp_path, toy_data, monkeypatch):
    from lib.jobs import dask_backend
    from lib.jobs.store import read_job
    from lib.jobs.tasks import train_spec
    from lib.training import TrainConfig

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 1.0)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    backend = dask_backend.DaskBackend(address)
    spec = train_spec(TrainConfig(backbone="tiny_random", data=str(toy_data), epochs=1).validate())
    with pytest.raises(TransferLabError, match="does not answer"):
        backend.submit(spec)
    scheduler = start_scheduler(port, tmp_path / "scheduler.log")
    try:
        job_id = wait_for(lambda: _try_submit(backend, spec), timeout=START_TIMEOUT_S,
                          what="the scheduler to come back")
        state = read_job(backend.handle(job_id).run_dir)
        assert state["status"] == "queued"  # no worker on this scheduler: it waits
        backend.stop(job_id)  # taken off the queue at once
        assert read_job(backend.handle(job_id).run_dir)["status"] == STOPPED
    finally:
        backend.close()
        stop_process(scheduler)


def _try_submit(backend, spec) -> str | None:
    try:
        return backend.submit(spec)
    except TransferLabError:
        return None


def test_the_train_page_says_when_jobs_cannot_be_submitted(toy_data, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from lib.jobs import dask_backend

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setenv("TRANSFERLAB_SCHEDULER", f"tcp://127.0.0.1:{free_port()}")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_BACKBONE", "tiny_random")
    monkeypatch.setenv("TRANSFERLAB_DEFAULT_DATA", str(toy_data))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/train.py").run()
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("does not answer" in e.value for e in at.error)
    assert "train_job" not in at.session_state or at.session_state["train_job"] is None
    at.switch_page("pages/runs.py").run()  # every other page keeps working
    assert not at.exception, [e.value for e in at.exception]


def _scheduler_knows(backend, job_id: str) -> bool:
    from lib.jobs.dask_backend import job_key

    client = backend.client()
    key = job_key(job_id)
    return client.sync(client.scheduler.get_task_status, keys=[key])[key] is not None


def test_a_queued_job_its_restarted_scheduler_forgot_reads_interrupted(tmp_path, toy_data,
                                                                       monkeypatch):
    from lib.jobs import dask_backend
    from lib.jobs.store import read_job
    from lib.jobs.tasks import rerun_spec, train_spec
    from lib.runs import list_runs
    from lib.training import TrainConfig

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 2.0)
    monkeypatch.setattr(dask_backend, "QUEUE_CHECK_S", 0.2)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    spec = train_spec(TrainConfig(backbone="tiny_random", data=str(toy_data), epochs=1).validate())
    scheduler = start_scheduler(port, tmp_path / "scheduler.log")  # no worker: the job waits
    backend = dask_backend.DaskBackend(address)
    try:
        job_id = wait_for(lambda: _try_submit(backend, spec), timeout=START_TIMEOUT_S,
                          what="the scheduler to start")
        handle = backend.handle(job_id)
        wait_for(lambda: _scheduler_knows(backend, job_id), what="the scheduler to know the job")
        monkeypatch.setattr(dask_backend, "LOST_GRACE_S", 0.0)  # known now: no grace needed
        assert "no worker is connected" in wait_for(lambda: handle.snapshot()["message"]
                                                    if "no worker" in handle.snapshot()["message"]
                                                    else None, what="the waiting note")
        assert read_job(handle.run_dir)["status"] == "queued"  # a known job is left waiting

        stop_process(scheduler)
        scheduler = start_scheduler(port, tmp_path / "scheduler-again.log")
        wait_for(lambda: handle.snapshot()["status"] == INTERRUPTED, timeout=START_TIMEOUT_S,
                 what="the forgotten job to read interrupted")
        snap = handle.snapshot()
        assert "restarted" in snap["error"] and "Run it again with the same config" in snap["error"]
        row = next(r for r in list_runs() if r["name"] == job_id)  # the Runs page offers a rerun
        assert row["status"] == INTERRUPTED and not row["has_model"]
        assert rerun_spec(handle.run_dir).params == spec.params
    finally:
        backend.close()
        stop_process(scheduler)


def test_the_waiting_note_names_what_no_worker_offers():
    from lib.jobs.dask_backend import waiting_note

    workers = {"tcp://a:1": {"resources": {}}, "tcp://b:2": {"resources": {"GPU": 1}}}
    assert waiting_note({"GPU": 1.0}, workers, "tcp://s:8786") is None  # b can run it
    assert waiting_note({}, workers, "tcp://s:8786") is None
    note = waiting_note({"GPU": 2.0}, workers, "tcp://s:8786")
    assert "no worker offers GPU=2" in note and "dask worker tcp://s:8786 --resources GPU=2" in note
    assert "no worker is connected" in waiting_note({}, {}, "tcp://s:8786")


def test_the_zoo_cli_measures_on_a_worker_like_the_page(cluster, monkeypatch):
    from functools import partial

    from lib import runs
    from lib.jobs import zoo_tasks
    from lib.jobs.store import read_job
    from tests.conftest import run_lib_in_process

    address, workers = cluster
    # The CLI's spec as it is, measured in the worker's process with one timed call.
    monkeypatch.setattr(zoo_tasks, "zoo_measure_spec", partial(
        zoo_tasks.zoo_measure_spec, min_runs=1, budget_s=0.0, isolate=False))
    before = {p.name for p in runs.runs_dir().iterdir()} if runs.runs_dir().is_dir() else set()
    proc = run_lib_in_process(["zoo", "--measure", "--backbones", "tiny_random", "--batch", "1",
                               "--scheduler", address, "--json"])
    assert proc.returncode == 0, proc.stderr
    assert "Submitted job" in proc.stderr
    jobs = [read_job(p) for p in runs.runs_dir().iterdir() if p.name not in before]
    job = next(j for j in jobs if j and j["kind"] == zoo_tasks.ZOO_MEASURE)
    assert job["status"] == DONE and job["worker"]["address"] in workers
    assert job["worker"]["pid"] != os.getpid()
    table = json.loads(proc.stdout)
    row = next(r for r in table["rows"] if r["name"] == "tiny_random")
    assert row["latency_ms_b1"] is not None and row["host"] == job["worker"]["host"]
    result = zoo_tasks.load_result(job["spec"]["run_dir"])
    assert table["fingerprint"]["key"] == result["fingerprint"]["key"]  # the worker's machine
