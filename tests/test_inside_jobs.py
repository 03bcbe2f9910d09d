"""Look inside jobs as specs (`lib.inside.jobs`): plain JSON in, results on disk out, on the tiny
random backbone in this process (the Dask path is in `test_dask_jobs.py`).

A spec survives JSON; its task, given no in-process objects (as on a worker), loads the model by
name, reads the stored pixels and leaves a result that `load_result` (what the page reads through
the job backend) rebuilds field for field; Stop ends an attack within a step; the folders do not
show as runs and are pruned once old.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from lib.errors import TransferLabError
from lib.inside import jobs as inside_jobs
from lib.inside.ideal import IdealSettings
from lib.jobs import JobSpec
from lib.status import DONE, FAILED, STOPPED

MODEL = inside_jobs.model_ref(backbone="tiny_random")
ATTACK_SETTINGS = {"method": "pgd", "norm": "linf", "eps": 4.0, "steps": 3, "target": None,
                   "random_init": False, "margin": 0.1}


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """Two whole-pixel 32-px images."""
    return np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)


def same(a, b) -> None:
    """Result objects equal field by field (arrays by value)."""
    assert type(a) is type(b)
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif f.name == "frames":
            assert [s for s, _ in x] == [s for s, _ in y]
            for (_, i), (_, j) in zip(x, y, strict=True):
                np.testing.assert_array_equal(i, j)
        else:
            assert x == y, f.name


def run_here(spec: JobSpec, tmp_path: Path):
    """Runs a spec's task as a worker does (no `local`), into a fresh job folder."""
    from lib.jobs import Job
    from lib.jobs.tasks import execute

    run_dir = tmp_path / spec.kind.replace(" ", "-")
    run_dir.mkdir()
    job = Job(spec.kind, lambda job: None)
    return execute(spec.with_run_dir(run_dir), job, job.stop_event), run_dir, job


def test_specs_round_trip_through_json_and_name_lib_tasks(pixels):
    from lib.jobs.spec import resolve_task

    image, batch = inside_jobs.store_pixels(pixels[0]), inside_jobs.store_pixels(pixels)
    assert image == inside_jobs.store_pixels(pixels[0].copy())  # named by content
    np.testing.assert_array_equal(inside_jobs.load_pixels(batch), pixels)
    specs = [
        inside_jobs.attack_spec(MODEL, image, ATTACK_SETTINGS, owner="v"),
        inside_jobs.sweep_spec(MODEL, batch, [0.0, 2.0], [0, 1], ATTACK_SETTINGS),
        inside_jobs.gradcam_spec(inside_jobs.model_ref(run_dir="/runs/r"), image, None, "block2_out"),
        inside_jobs.ideal_spec(MODEL, {"class_index": 3, "layer": None, "channel": None,
                                       "label": "class 3"}, IdealSettings(steps=5)),
        inside_jobs.compare_spec(MODEL, 3, IdealSettings(steps=5), ["efficientnet_lite1"]),
    ]
    for spec in specs:
        back = JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert back == spec and callable(resolve_task(back.task))
    assert [s.kind for s in specs] == ["attack", "eps sweep", "grad-cam", "ideal image",
                                       "TV comparison"]
    assert specs[1].params["settings"] == {k: ATTACK_SETTINGS[k] for k in inside_jobs.SWEEP_KEYS}


def test_pixels_outside_the_uploads_area_are_refused(tmp_path):
    outside = tmp_path / "x" / inside_jobs.PIXELS_FILE
    outside.parent.mkdir()
    np.save(outside, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TransferLabError, match="uploads folder"):
        inside_jobs.load_pixels(outside)


def test_attack_and_gradcam_tasks_leave_results_that_load_back(pixels, tmp_path):
    from lib.inside.attacks import AttackResult
    from lib.inside.gradcam import GradCamResult
    from lib.runs import list_runs

    image = inside_jobs.store_pixels(pixels[0])
    result, run_dir, job = run_here(inside_jobs.attack_spec(MODEL, image, ATTACK_SETTINGS), tmp_path)
    assert isinstance(result, AttackResult) and result.linf <= 4.0
    same(result, inside_jobs.load_result(run_dir))
    snap = job.snapshot()
    assert snap["total"] == 3 and snap["message"].startswith("step ")  # steps reached the bar
    cam, cam_dir, _ = run_here(inside_jobs.gradcam_spec(MODEL, image, 1, None), tmp_path)
    assert isinstance(cam, GradCamResult) and cam.heatmap.shape == (4, 4)
    same(cam, inside_jobs.load_result(cam_dir))
    assert list_runs(tmp_path) == []  # job folders are not training runs


def test_sweep_ideal_and_comparison_results_load_back(pixels, tmp_path):
    batch = inside_jobs.store_pixels(pixels)
    sweep, sweep_dir, _ = run_here(inside_jobs.sweep_spec(MODEL, batch, [0.0, 8.0], None,
                                                          {**ATTACK_SETTINGS, "steps": 1}), tmp_path)
    same(sweep, inside_jobs.load_result(sweep_dir))
    objective = {"class_index": 2, "layer": None, "channel": None, "label": "class 2"}
    settings = IdealSettings(steps=4, frame_every=2, size=32)
    out, ideal_dir, job = run_here(inside_jobs.ideal_spec(MODEL, objective, settings), tmp_path)
    back = inside_jobs.load_result(ideal_dir)
    assert back["label"] == "class 2"
    same(out["result"], back["result"])
    rows = job.snapshot()["events"]["batch"]
    assert [r["step"] for r in rows if "prob" in r] == [1, 2, 3, 4]
    assert all(Path(r["frame"]).is_file() for r in rows if "frame" in r)  # the live view's PNGs
    compared, compare_dir, _ = run_here(inside_jobs.compare_spec(MODEL, 2, settings, []), tmp_path)
    back = inside_jobs.load_result(compare_dir)
    assert set(back) == {"plain", "tv0", "tv"}
    for key, item in compared.items():
        same(item["result"], back[key]["result"])
        assert {k: v for k, v in item.items() if k != "result"} == \
            {k: v for k, v in back[key].items() if k != "result"}


def test_stop_ends_an_attack_within_a_step(pixels, tmp_path):
    from lib.jobs.store import StopRequest
    from lib.jobs.tasks import execute

    run_dir = tmp_path / "stopped"
    run_dir.mkdir()
    spec = inside_jobs.attack_spec(MODEL, inside_jobs.store_pixels(pixels[0]),
                                   {**ATTACK_SETTINGS, "steps": 50, "margin": 0.9})
    stop = StopRequest(run_dir)

    class StopsAtFirstStep:  # a job whose Stop is pressed as the first step is reported
        def append(self, kind, row): pass
        def set_message(self, message): pass
        def set_progress(self, done, total, message=None, eta=None):
            stop.set()

    result = execute(spec.with_run_dir(run_dir), StopsAtFirstStep(), stop)
    assert result.steps <= 2 and (run_dir / "stop").exists()
    assert inside_jobs.load_result(run_dir).steps == result.steps


def test_the_embedded_backend_runs_a_spec_and_the_store_reads_the_result(pixels):
    from lib.jobs.embedded import EmbeddedBackend
    from lib.jobs.follow import StoreJob
    from lib.jobs.store import job_dir
    from lib.jobs.tasks import load_job_result

    backend = EmbeddedBackend()
    spec = inside_jobs.gradcam_spec(MODEL, inside_jobs.store_pixels(pixels[1]), None, None)
    job_id = backend.submit(spec)
    handle = backend.handle(job_id)
    assert handle.wait(120)
    snap = handle.snapshot()
    assert snap["status"] == DONE, snap["error"]
    stored = StoreJob(job_dir(job_id), load_job_result).snapshot()  # another front-end's view
    assert stored["status"] == DONE and stored["kind"] == "grad-cam"
    same(snap["result"], stored["result"])
    missing = str(job_dir(job_id).parent / "no-such-run")
    failing = backend.submit(inside_jobs.gradcam_spec(inside_jobs.model_ref(run_dir=missing),
                                                      spec.params["image"], None, None))
    assert backend.handle(failing).wait(60)
    for view in (backend.handle(failing), StoreJob(job_dir(failing), load_job_result)):
        snap = view.snapshot()
        assert snap["status"] == FAILED and "no-such-run" in snap["error"]  # what the page shows


def test_ended_inside_jobs_are_pruned_and_other_folders_kept(tmp_path):
    from lib.jobs.store import write_job

    def job(name: str, spec: JobSpec, status: str, finished: float) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        state = write_job(spec.with_run_dir(folder))
        (folder / "job.json").write_text(json.dumps({**state, "status": status,
                                                      "finished": finished}))
        return folder

    now = time.time()
    attack = inside_jobs.attack_spec(MODEL, "/x", ATTACK_SETTINGS)
    old = job("old", attack, DONE, now - 2 * inside_jobs.INSIDE_JOB_KEEP_S)
    recent = job("recent", attack, STOPPED, now - 60)
    training = job("train", JobSpec(kind="train", task="lib.jobs.tasks:train_task"), DONE,
                   now - 2 * inside_jobs.INSIDE_JOB_KEEP_S)
    assert inside_jobs.prune_inside_jobs(tmp_path, now=now) == [old]
    assert not old.exists() and recent.is_dir() and training.is_dir()
