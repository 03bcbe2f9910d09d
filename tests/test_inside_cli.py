"""`python -m lib attack | ideal | gradcam`: JSON shapes, PNGs written, user errors exit 2.

The model loader is patched to the tiny random backbone (the slow loader, not the CLI, is faked).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lib.cli import main

LABELS = [f"class{i}" for i in range(10)]


@pytest.fixture
def tiny_source(monkeypatch, tiny_backbone):
    monkeypatch.setattr("lib.cli.inside.load_model_source",
                        lambda args: (tiny_backbone.model, LABELS))


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def run_json(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_attack_prints_the_documented_json(tiny_source, photo, tmp_path, capsys):
    out = tmp_path / "adv.png"
    result = run_json(["attack", "--backbone", "x", str(photo), "--method", "pgd", "--eps", "8",
                       "--steps", "3", "--target", "class2", "--out", str(out)], capsys)
    assert set(result) >= {"before", "after", "target", "success", "linf", "l2", "steps"}
    assert set(result["before"]) == set(result["after"]) == {"index", "label", "prob"}
    assert result["target"]["index"] == 2
    assert isinstance(result["success"], bool)
    assert result["linf"] <= 8 and 0 <= result["steps"] <= 3
    saved = np.asarray(Image.open(out))
    assert saved.shape == (32, 32, 3)


def test_untargeted_fgsm_l2(tiny_source, photo, tmp_path, capsys):
    result = run_json(["attack", "--run", "r", str(photo), "--method", "fgsm", "--eps", "30",
                       "--norm", "l2", "--out", str(tmp_path / "a.png")], capsys)
    assert result["target"] is None
    assert result["l2"] <= 30 + 1e-3
    assert result["steps"] <= 1


def test_ideal_prints_the_documented_json(tiny_source, tmp_path, capsys):
    out = tmp_path / "ideal.png"
    result = run_json(["ideal", "--backbone", "x", "--class", "3", "--steps", "5", "--tv", "0",
                       "--size", "40", "--seed", "1", "--out", str(out)], capsys)
    assert set(result) >= {"class", "prob", "steps", "seconds"}
    assert result["class"]["index"] == 3 and result["steps"] == 5
    assert 0.0 <= result["prob"] <= 1.0
    assert np.asarray(Image.open(out)).shape == (40, 40, 3)


def test_ideal_for_a_channel(tiny_source, tmp_path, capsys):
    result = run_json(["ideal", "--backbone", "x", "--layer", "block2_out", "--channel", "2",
                       "--steps", "3", "--out", str(tmp_path / "ch.png")], capsys)
    assert result["class"] is None and result["layer"] == "block2_out" and result["channel"] == 2


def test_gradcam_prints_the_class_explained(tiny_source, photo, tmp_path, capsys):
    out = tmp_path / "cam.png"
    result = run_json(["gradcam", "--backbone", "x", str(photo), "--out", str(out)], capsys)
    assert result["class"]["index"] == result["predicted"]["index"]
    assert result["heatmap_shape"] == [4, 4]
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)


@pytest.mark.parametrize(
    "argv",
    [["attack", "--backbone", "x", "PHOTO", "--eps", "999", "--out", "OUT"],
     ["attack", "--backbone", "x", "PHOTO", "--eps", "4", "--target", "zebra", "--out", "OUT"],
     ["attack", "--backbone", "x", "missing.png", "--eps", "4", "--out", "OUT"],
     ["ideal", "--backbone", "x", "--class", "42", "--steps", "5", "--out", "OUT"],
     ["ideal", "--backbone", "x", "--class", "1", "--steps", "0", "--out", "OUT"],
     ["ideal", "--backbone", "x", "--steps", "5", "--out", "OUT"],
     ["ideal", "--backbone", "x", "--layer", "block2_out", "--steps", "5", "--out", "OUT"],
     ["gradcam", "--backbone", "x", "PHOTO", "--class", "99", "--out", "OUT"]],
)
def test_user_errors_exit_2_with_one_line(tiny_source, photo, tmp_path, capsys, argv):
    argv = [str(photo) if a == "PHOTO" else str(tmp_path / "o.png") if a == "OUT" else a
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_run_directory_with_body_and_head(tiny_backbone, photo, tmp_path, capsys):
    """A saved body + head classifier loads through --run; attacks and Grad-CAM see its logits."""
    from lib.models import build_body, build_classifier, build_head
    from lib.runs import save_model_atomic, write_labels

    body = build_body(tiny_backbone)
    model = build_classifier(body, build_head(tuple(body.outputs[0].shape[1:]), 3), 32)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_model_atomic(model, run_dir / "model.keras")
    write_labels(run_dir, ["ant", "bee", "cow"])
    result = run_json(["attack", "--run", str(run_dir), str(photo), "--eps", "16", "--target", "bee",
                       "--out", str(tmp_path / "a.png")], capsys)
    assert result["target"]["label"] == "bee" and result["linf"] <= 16
    result = run_json(["gradcam", "--run", str(run_dir), str(photo), "--out",
                       str(tmp_path / "c.png")], capsys)
    assert result["heatmap_shape"] == [4, 4] and result["class"]["label"] in {"ant", "bee", "cow"}
