"""`python -m lib predict` and `backbones`: JSON shapes and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from tests.conftest import run_lib_in_process

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m lib ARGS` in a fresh process, as a person runs it; the commands that load a
    model run in this process instead (`run_lib_in_process`), sparing a TensorFlow import each."""
    return subprocess.run(
        [sys.executable, "-m", "lib", *args], cwd=REPO, capture_output=True, text=True,
        env=os.environ.copy(), timeout=300,
    )


def test_backbones_lists_the_registry_as_json():
    out = run_cli("backbones")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    lite0 = rows["efficientnet_lite0"]
    assert lite0["weights"] in ("offline", "cached") and lite0["top1"] == 75.1
    assert {"input_size", "feature_dim", "cut_points", "weights_source", "preprocessing"} <= set(lite0)
    assert "tiny_random" not in rows


@pytest.mark.parametrize(("command", "code"), [
    (["backbones"], 0),
    (["data", "--data", "builtin:faces"], 0),
    (["--help"], 0),
    (["train", "--no-such-flag"], 2),
    (["predict", "--backbone", "no_such_net", "x.png"], 2),
])
def test_commands_that_need_no_model_never_import_tensorflow(command, code):
    """`-X importtime` lists every module the command imported, on stderr."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "lib", *command], cwd=REPO,
                         capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "lib.cli" in imported, out.stderr[-2000:]
    assert not {"tensorflow", "keras"} & imported
    assert out.returncode == code, out.stderr[-2000:]


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    out = run_cli("predict", "--backbone", "no_such_net", str(tmp_path / "x.png"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "Unknown backbone `no_such_net`" in out.stderr and "Traceback" not in out.stderr


def test_corrupt_image_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    out = run_lib_in_process(["predict", "--backbone", "efficientnet_lite0", str(bad)])
    assert out.returncode == 2 and "bad.jpg" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.large
def test_predict_prints_top5_json(tmp_path):
    path = tmp_path / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(path)
    out = run_lib_in_process(["predict", "--backbone", "efficientnet_lite0", str(path)])
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["image"] == str(path) and len(result["top"]) == 5
    assert set(result["top"][0]) == {"index", "label", "prob"}
    assert 281 <= result["top"][0]["index"] <= 285
    # Which engine ran (LiteRT unless the environment forces one), and no fallback.
    assert result["engine"] == (os.environ.get("TRANSFERLAB_ENGINE") or "litert")
    assert "engine_fallback" not in result


def test_predict_json_says_which_engine_ran_and_why_tensorflow(tmp_path, monkeypatch, capsys,
                                                                tiny_backbone):
    """In process, on a tiny classifier (the CLI's loader patched): each row names its engine."""
    from lib import predict
    from lib.cli import main
    from lib.engine import ENGINE_ENV, EngineUnavailable, forward
    from lib.models import HeadConfig, build_body, build_classifier, build_head

    body = build_body(tiny_backbone)
    head = build_head(tuple(body.outputs[0].shape[1:]), 2, HeadConfig(hidden_units=0))
    loaded = predict.LoadedClassifier(build_classifier(body, head, 32), ("a", "b"), "run", "r", "tiny")
    monkeypatch.setattr("lib.cli.predict.load_classifier", lambda **_: loaded)
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    path = tmp_path / "x.png"
    Image.fromarray(skdata.chelsea()).save(path)

    def rows() -> list[dict]:
        assert main(["predict", "--run", "r", str(path), str(path), "--top", "2"]) == 0
        return json.loads(capsys.readouterr().out)

    lite = rows()
    assert [r["engine"] for r in lite] == ["litert", "litert"] and "engine_fallback" not in lite[0]
    monkeypatch.setenv(ENGINE_ENV, "tf")
    forced = rows()
    assert forced[0]["engine"] == "tf" and "engine_fallback" not in forced[0]
    assert [t["index"] for t in forced[0]["top"]] == [t["index"] for t in lite[0]["top"]]
    monkeypatch.delenv(ENGINE_ENV)

    def unconvertible(*args, **kwargs):
        raise EngineUnavailable("LiteRT conversion failed: test")

    monkeypatch.setattr(forward, "cached_tflite", unconvertible)
    fell_back = rows()
    assert fell_back[0]["engine"] == "tf"
    assert fell_back[0]["engine_fallback"] == "LiteRT conversion failed: test"


def test_data_command_reports_counts_and_split(tmp_path):
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "d", {"a": 6, "b": 5})
    (root / "a" / "notes.txt").write_text("not an image")
    out = run_cli("data", "--data", str(root), "--val-split", "0.3", "--test-split", "0")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["classes"] == ["a", "b"] and result["report"]["counts"] == {"a": 6, "b": 5}
    assert [p for p, _ in result["report"]["skipped"]] == [str(root / "a" / "notes.txt")]
    assert sum(result["split"]["val"].values()) >= 2


def test_data_command_missing_folder_is_a_user_error(tmp_path):
    out = run_cli("data", "--data", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "nowhere" in out.stderr and "Traceback" not in out.stderr
