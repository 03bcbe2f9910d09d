"""A run trained on a TF Hub backbone reloads: predict, evaluate and attack through `--run`.

Keras' safe mode refuses the SavedModel layer inside such a run's `model.keras`, so TransferLab
rebuilds the model from the run's config (checking the SavedModel again) and loads its weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.backbones.export import export_hub
from tests.conftest import make_image_folder, run_lib_in_process

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub_run")
    export_hub("tiny_random", base / "tiny_hub")
    data = make_image_folder(base / "data", {"red": 10, "green": 10}, size=36)
    env = {**os.environ, "TRANSFERLAB_HUB_ROOTS": str(base)}
    run = base / "run"
    train = run_lib_in_process(["train", "--backbone", str(base / "tiny_hub"), "--data", str(data),
                                "--epochs", "2", "--out", str(run)], env)
    assert train.returncode == 0, train.stderr
    return run, data, env


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`python -m lib ARGS` in a fresh process: nothing this process resolved is reused."""
    return subprocess.run([sys.executable, "-m", "lib", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def test_the_run_keeps_the_weights_it_reloads_from(hub_run):
    run, _, _ = hub_run
    assert (run / "model.keras").is_file() and (run / "model.weights.h5").is_file()


def test_predict_evaluate_and_attack_through_run(hub_run, tmp_path):
    run, data, env = hub_run
    image = str(next((data / "red").glob("*.jpg")))
    predict = run_lib_in_process(["predict", "--run", str(run), image], env)
    assert predict.returncode == 0, predict.stderr
    top = json.loads(predict.stdout)[0]
    assert {p["label"] for p in top["top"]} <= {"red", "green"}
    evaluate = run_lib_in_process(["evaluate", "--run", str(run), "--data", str(data)], env)
    assert evaluate.returncode == 0, evaluate.stderr
    assert 0.0 <= json.loads(evaluate.stdout)["accuracy"] <= 1.0
    attack = run_lib_in_process(["attack", "--run", str(run), image, "--eps", "8",
                                 "--out", str(tmp_path / "adv.png")], env)
    assert attack.returncode == 0, attack.stderr
    assert (tmp_path / "adv.png").is_file()


def test_the_reload_rechecks_the_saved_model(hub_run):
    """Without the operator's trust in its folder, the run's SavedModel is not loaded again."""
    run, data, env = hub_run
    untrusted = {k: v for k, v in env.items() if k != "TRANSFERLAB_HUB_ROOTS"}
    image = str(next((data / "red").glob("*.jpg")))
    proc = cli(["predict", "--run", str(run), image], untrusted)
    assert proc.returncode == 2 and "Refusing" in proc.stderr
