"""`python -m lib export`: every format runs its model card's snippet in a plain process, alone.

Each exported model is loaded in a separate `python -I` process that imports only that runtime
(plus numpy and Pillow), by the very lines the model card shows, and must give the same top-1 as
the run's `.keras` model on the test images, with probabilities within 1e-3.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image, ImageOps

from lib.cli import main
from lib.errors import TransferLabError
from lib.export import FORMATS, ONNX, SAVED_MODEL, TFLITE, export_archive, export_run, snippet
from lib.runs import load_trained_model

PROB_ATOL = 1e-3
# Modules the plain process must not load, per format (TensorFlow itself loads parts of keras).
FORBIDDEN = {
    "keras": ("lib", "onnxruntime", "ai_edge_litert"),
    SAVED_MODEL: ("lib", "onnxruntime", "ai_edge_litert"),
    TFLITE: ("lib", "tensorflow", "keras", "onnxruntime"),
    ONNX: ("lib", "tensorflow", "keras", "ai_edge_litert"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny 3-class run trained through the CLI, and photos to test it on."""
    root = tmp_path_factory.mktemp("export")
    data = make_image_folder(root / "toy", {"red": 8, "green": 8, "blue": 8})
    code = main(["train", "--data", str(data), "--backbone", "tiny_random", "--out",
                 str(root / "run"), "--epochs", "3", "--batch-size", "4", "--lr", "0.03"])
    assert code == 0
    from skimage import data as skdata

    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(skdata.chelsea()).save(photos / "chelsea.jpg")
    Image.fromarray(skdata.coffee()).save(photos / "coffee.jpg")
    images = [str(p) for p in sorted(data.rglob("*.jpg"))[::4]]
    images += [str(photos / "chelsea.jpg"), str(photos / "coffee.jpg")]
    return {"run": root / "run", "images": images, "root": root}


def _read_photo(path: str, size: int) -> np.ndarray:
    """What the model card's snippet does to a photo."""
    img = ImageOps.fit(Image.open(path).convert("RGB"), (size, size), Image.BILINEAR)
    return np.asarray(img, np.float32)[None]


def _plain_script(code: str, forbidden: tuple[str, ...]) -> str:
    """The card's snippet, looped over IMAGES, then probabilities and loaded modules as JSON."""
    lines = code.splitlines()
    first = next(i for i, line in enumerate(lines) if '"photo.jpg"' in line)
    loop = ["    " + line.replace('"photo.jpg"', "IMAGE") for line in lines[first:]]
    return "\n".join([
        "import json, sys",
        *lines[:first],
        "PROBS = []",
        "for IMAGE in json.loads(sys.argv[1]):",
        *loop,
        "    PROBS.append([float(p) for p in probs])",
        f"loaded = sorted(m for m in {list(forbidden)!r} if m in sys.modules)",
        'print("RESULT " + json.dumps({"probs": PROBS, "loaded": loaded}))',
    ])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_predicts_alone_like_the_keras_model(trained, fmt, capsys):
    out = trained["root"] / f"export-{fmt}"
    code = main(["export", "--run", str(trained["run"]), "--format", fmt, "--out", str(out)])
    value = json.loads(capsys.readouterr().out)
    assert code == 0 and value["format"] == fmt
    assert (out / "labels.txt").read_text().splitlines() == ["blue", "green", "red"]
    card = (out / "README.md").read_text()
    assert "0-255" in card and "inside the model" in card and "x / 127.5 - 1" in card
    assert "accuracy on the test split" in card and "1. green" in card
    assert snippet(fmt, 32) in card

    model, labels = load_trained_model(trained["run"])
    x = np.concatenate([_read_photo(p, 32) for p in trained["images"]])
    expected = model.predict(x, verbose=0)

    script = _plain_script(snippet(fmt, 32), FORBIDDEN[fmt])
    proc = subprocess.run([sys.executable, "-I", "-c", script, json.dumps(trained["images"])],
                          cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["loaded"] == []  # only that runtime was imported
    got = np.asarray(result["probs"])
    np.testing.assert_allclose(got, expected, atol=PROB_ATOL)
    # Same top-1 wherever Keras itself is not on a knife edge between two classes.
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * PROB_ATOL
    assert clear.sum() >= len(expected) // 2
    assert (got.argmax(1)[clear] == expected.argmax(1)[clear]).all()
    # The snippet's own print names a class.
    printed = [line.split()[0] for line in proc.stdout.splitlines() if not line.startswith("RESULT")]
    assert printed == [labels[i] for i in got.argmax(1)]


def test_export_refuses_bad_requests(trained, tmp_path):
    with pytest.raises(TransferLabError, match="format=tfjs"):
        export_run(trained["run"], "tfjs", tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(TransferLabError, match="not an empty folder"):
        export_run(trained["run"], "keras", tmp_path / "full")
    with pytest.raises(TransferLabError, match="does not exist"):
        export_run(tmp_path / "nope", "keras", tmp_path / "b")


def test_export_cli_user_errors_are_one_line(trained, tmp_path, capsys):
    code = main(["export", "--run", str(tmp_path / "nope"), "--format", "tflite",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err


def test_export_archive_zips_model_labels_and_card(trained):
    name, data = export_archive(trained["run"], TFLITE)
    assert name == "run-tflite.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["README.md", "labels.txt", "model.tflite"]


def test_onnx_missing_converter_is_a_clear_error(trained, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tf2onnx(name, *args, **kwargs):
        if name == "tf2onnx":
            raise ImportError("No module named 'tf2onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tf2onnx)
    with pytest.raises(TransferLabError, match="ONNX export needs `tf2onnx`"):
        export_run(trained["run"], ONNX, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cards_name_the_runtime_alone():
    for fmt in FORMATS:
        code = snippet(fmt, 224)
        assert "(224, 224)" in code and "lib" not in code.split()
    assert "tensorflow" not in snippet(TFLITE, 224) and "tensorflow" not in snippet(ONNX, 224)
