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
from lib.training import TrainConfig, train

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
