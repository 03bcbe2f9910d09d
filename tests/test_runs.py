"""Run folders: atomic pieces, status liveness, interrupted runs, listing and loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import make_image_folder

from lib import runs
from lib.errors import TransferLabError
from lib.runs import recorder as recorder_module
from lib.runs.recorder import RunRecorder
from lib.training import TrainCallbacks, TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "toy", {"cat": 10, "dog": 10})


def _config(data: Path, **overrides) -> TrainConfig:
    return TrainConfig(backbone="tiny_random", data=str(data), epochs=2, batch_size=4,
                       test_split=0.0, early_stopping_patience=None, **overrides)


def test_finished_run_has_every_piece_and_its_model_loads_in_safe_mode(tiny_backbone, toy_folder,
                                                                       tmp_path):
    result = train(_config(toy_folder), backbone=tiny_backbone, run_dir=tmp_path / "run")
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "history.csv", "metrics.json", "model.keras", "labels.txt",
            "status.json", "tb", "checkpoints"} <= names
    assert list((result.run_dir / "tb" / "frozen").rglob("events.out.tfevents*"))
    model = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)
    loaded, labels = runs.load_trained_model(result.run_dir)
    assert labels == ["cat", "dog"]
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = np.asarray(result.model(x, training=False))
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, atol=1e-5)
    run = runs.load_run(result.run_dir)
    assert run["status"]["status"] == "done"
    assert isinstance(run["history"], pd.DataFrame) and len(run["history"]) == 2
    assert TrainConfig.from_dict(run["config"]) == result.config
    assert run["metrics"]["params"]["trainable"] == 16 * 2 + 2


def test_killed_run_lists_as_interrupted_and_keeps_its_checkpoint(toy_folder, tmp_path):
    run_dir = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os
        from lib.training import TrainCallbacks, TrainConfig, train

        def die(row):
            if row["epoch"] == 2:
                os._exit(3)  # like a server killed mid-run: no cleanup at all

        train(TrainConfig(backbone="tiny_random", data={str(toy_folder)!r}, epochs=5,
                          batch_size=4, test_split=0.0, early_stopping_patience=None),
              run_dir={str(run_dir)!r}, callbacks=TrainCallbacks(on_epoch_end=die))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    [row] = [r for r in runs.list_runs(tmp_path) if r["name"] == "killed"]
    assert row["status"] == "interrupted" and row["has_model"]
    assert not (run_dir / "model.keras").exists()
    model, labels = runs.load_trained_model(run_dir)
    assert labels == ["cat", "dog"]
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 2)


def test_half_written_folders_never_break_the_listing(tmp_path):
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "config.json").write_text('{"backbone": "tiny')
    (tmp_path / "garbage" / "status.json").write_text("")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "loose_file.txt").write_text("hi")
    good = tmp_path / "good"
    runs.write_config(good, {"backbone": "tiny_random", "data": "toy"})
    runs.write_status(good, runs.DONE)
    rows = {r["name"]: r for r in runs.list_runs(tmp_path)}
    assert set(rows) == {"garbage", "good"}
    assert rows["good"]["status"] == "done" and rows["good"]["epochs"] == 0
    assert rows["garbage"]["status"] == "interrupted"
    assert runs.list_runs(tmp_path / "missing") == []


def test_running_status_turns_interrupted_when_its_process_is_gone(tmp_path):
    runs.write_status(tmp_path, runs.RUNNING)
    assert runs.read_status(tmp_path)["status"] == "running"  # this very process
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status = json.loads((tmp_path / "status.json").read_text())
    runs.write_json(tmp_path / "status.json", {**status, "pid": dead.pid})
    assert runs.read_status(tmp_path)["status"] == "interrupted"
    runs.write_json(tmp_path / "status.json", {**status, "heartbeat": time.time() - 3600})
    assert runs.read_status(tmp_path)["status"] == "interrupted"


def test_loading_a_missing_or_unfinished_run_says_why(tmp_path):
    with pytest.raises(TransferLabError, match="does not exist"):
        runs.load_trained_model(tmp_path / "nope")
    with pytest.raises(TransferLabError, match="labels.txt"):
        runs.load_trained_model(tmp_path)
    runs.write_labels(tmp_path, ["a", "b"])
    with pytest.raises(TransferLabError, match="no model yet"):
        runs.load_trained_model(tmp_path)
    with pytest.raises(TransferLabError, match="not a TransferLab run"):
        runs.load_run(tmp_path)


def test_new_run_dirs_are_unique(tmp_path):
    config = TrainConfig(data="/some/where/My Photos")
    a, b = runs.new_run_dir(config, tmp_path), runs.new_run_dir(config, tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert "efficientnet-lite0-my-photos" in a.name


def test_out_folder_holding_a_run_is_refused(tmp_path):
    runs.write_config(tmp_path, {"backbone": "x"})
    with pytest.raises(TransferLabError, match="already holds a run"):
        runs.prepare_run_dir(tmp_path)


# ----- the run recorder --------------------------------------------------------------------------


def _heartbeat(run_dir: Path) -> float:
    return float(json.loads((run_dir / "status.json").read_text())["heartbeat"])


def _wait_for(condition, timeout_s: float = 60.0) -> bool:
    """Polls `condition()` until true or `timeout_s` passes (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_recorder_heartbeat_beats_from_a_timer_while_training_is_busy(tmp_path):
    with RunRecorder(tmp_path, {"backbone": "x"}, phase="frozen", class_names=["a", "b"],
                     heartbeat_s=0.05) as recorder:
        first = _heartbeat(tmp_path)
        recorder.note(epoch=3)
        # The training thread does nothing here (a long epoch): the timer thread still beats.
        assert _wait_for(lambda: _heartbeat(tmp_path) > first)
        assert _wait_for(lambda: runs.read_json(tmp_path / "status.json").get("epoch") == 3)
        assert runs.read_status(tmp_path)["status"] == "running"
        assert recorder.heartbeat_alive
        recorder.finish(stopped=False)
        assert not recorder.heartbeat_alive
    status = runs.read_status(tmp_path)
    assert status["status"] == "done" and status["phase"] is None
    assert runs.read_labels(tmp_path) == ["a", "b"]
    assert runs.read_config(tmp_path) == {"backbone": "x"}


@pytest.mark.parametrize(("error", "status"), [(ValueError("boom"), "failed"),
                                               (KeyboardInterrupt(), "interrupted")])
def test_recorder_marks_a_raising_run_and_reraises(tmp_path, error, status):
    recorder = RunRecorder(tmp_path, {"backbone": "x"}, phase="frozen", class_names=["a", "b"],
                           heartbeat_s=0.05)
    with pytest.raises(type(error)), recorder:
        raise error
    assert not recorder.heartbeat_alive
    value = runs.read_status(tmp_path)
    assert value["status"] == status and type(error).__name__ in value["error"]


def test_live_run_is_never_listed_interrupted(toy_folder, tmp_path, monkeypatch):
    # One batch outlasts the stale-heartbeat limit: only a timer heartbeat keeps the run alive
    # (a heartbeat written at batch ends would go stale inside it).
    monkeypatch.setattr(runs, "STALE_AFTER_SECONDS", 3.0)
    monkeypatch.setattr(recorder_module, "HEARTBEAT_SECONDS", 0.05)
    seen = []

    def stuck_batch(row):
        if row["epoch"] == 1 and row["batch"] == 1:
            end = time.monotonic() + 4.0
            while time.monotonic() < end:
                seen.extend(r["status"] for r in runs.list_runs(tmp_path) if r["name"] == "run")
                time.sleep(0.1)

    train(_config(toy_folder, use_feature_cache=False), run_dir=tmp_path / "run",
          callbacks=TrainCallbacks(on_batch_end=stuck_batch))
    assert seen and set(seen) == {"running"}
    assert runs.read_status(tmp_path / "run")["status"] == "done"


# ----- runs saved before heads ended at their logits ---------------------------------------------


def _old_format_run(run_dir: Path, backbone, data_folder: Path) -> keras.Model:
    """A run as TransferLab saved it before: softmax `probabilities` inside the head, none on top."""
    from lib.data.sources import load_dataset
    from lib.models import build_body

    body = build_body(backbone)
    features = keras.Input(tuple(body.outputs[0].shape[1:]), name="features")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(2, name="logits")(x)
    head = keras.Model(features, keras.layers.Activation("softmax", name="probabilities")(x),
                       name="head")
    pixels = keras.Input((32, 32, 3), name="pixels")
    model = keras.Model(pixels, head(body(pixels, training=False)), name="classifier")
    dataset = load_dataset(str(data_folder))
    config = _config(data_folder)
    runs.write_config(run_dir, {**config.to_dict(), "kind": "transfer", "pretrained": False,
                                "image_size": 32, "data_fingerprint": dataset.fingerprint()})
    runs.write_labels(run_dir, dataset.class_names)
    runs.write_history(run_dir, pd.DataFrame([{
        "phase": "frozen", "epoch": 1, "loss": 0.7, "accuracy": 0.5, "val_loss": 0.7,
        "val_accuracy": 0.5, "seconds": 0.1, "lr": 1e-3}]))
    runs.write_metrics(run_dir, {"val_accuracy": 0.5, "val_loss": 0.7, "phases": {
        "frozen": {"epochs": 1, "best_epoch": 1, "val_loss": 0.7, "val_accuracy": 0.5}}})
    runs.save_model_atomic(model, run_dir / runs.MODEL_FILE)
    runs.write_status(run_dir, runs.DONE)
    return model


def test_old_format_run_still_loads_predicts_and_fine_tunes(tiny_backbone, toy_folder, tmp_path):
    from lib.models import build_logits_model, classifier_parts
    from lib.predict import load_classifier
    from lib.training import fine_tune, load_train_result

    old = _old_format_run(tmp_path / "old", tiny_backbone, toy_folder)
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = np.asarray(old(x))
    model, labels = runs.load_trained_model(tmp_path / "old")
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
    loaded = load_classifier(run=tmp_path / "old")
    assert loaded.class_names == ("cat", "dog") and loaded.source == "run"
    np.testing.assert_allclose(np.asarray(loaded.model(x)), expected, atol=1e-5)
    # Its logits are reachable with public Keras, and softmax of them is what it predicts.
    body, head = classifier_parts(model)
    logits = np.asarray(head(body(x)))
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(logits)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(build_logits_model(model)(x)), logits, atol=1e-5)
    # Fine-tuning it writes a new-format run and leaves the old one as it was.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "old").iterdir()}
    tuned = fine_tune(load_train_result(tmp_path / "old"), epochs=1, unfreeze=4,
                      run_dir=tmp_path / "tuned")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "old").iterdir()} == before
    assert tuned.model.layers[-1].name == "probabilities"
    assert tuned.history["phase"].tolist() == ["frozen", "fine_tune"]
    reloaded, _ = runs.load_trained_model(tmp_path / "tuned")
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(tuned.model(x)), atol=1e-5)
