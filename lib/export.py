"""Exports a trained run in a format that loads without TransferLab: Keras, SavedModel, LiteRT, ONNX.

    python -m lib export --run RUN_DIR --format tflite --out DIR

writes into DIR:

    model.keras | saved_model/ | model.tflite | model.onnx     pixels -> probabilities
    labels.txt                                                   class names, in output order
    README.md                                                    the model card

Every format takes float32 pixels `(B, S, S, 3)`, RGB in [0, 255], and returns softmax
probabilities `(B, C)`; the backbone's preprocessing is inside the model. Keras 3's own
`model.export` writes SavedModel, LiteRT and ONNX. The model card's snippet uses that runtime
alone (plus numpy and Pillow), and the tests run it as written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.errors import TransferLabError
from lib.lazy import lazy_module
from lib.storage import atomic_write_text

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

KERAS = "keras"
SAVED_MODEL = "saved_model"
TFLITE = "tflite"
ONNX = "onnx"
FORMATS = (KERAS, SAVED_MODEL, TFLITE, ONNX)
MODEL_FILES = {KERAS: "model.keras", SAVED_MODEL: "saved_model", TFLITE: "model.tflite",
               ONNX: "model.onnx"}
RUNTIMES = {KERAS: "Keras 3 (`pip install keras tensorflow`)",
            SAVED_MODEL: "TensorFlow (`pip install tensorflow`)",
            TFLITE: "LiteRT (`pip install ai-edge-litert`)",
            ONNX: "ONNX Runtime (`pip install onnxruntime`)"}
LABELS_FILE = "labels.txt"
CARD_FILE = "README.md"
IMAGE_PLACEHOLDER = "photo.jpg"

# Five lines after the imports: load, read a photo as the model wants it, predict, name the class.
_READ_PHOTO = ("x = np.asarray(ImageOps.fit(Image.open(\"photo.jpg\").convert(\"RGB\"), ({size}, {size}), "
               "Image.BILINEAR), np.float32)[None]  # (1, {size}, {size}, 3) in [0, 255]")
_PRINT_LABEL = 'print(open("labels.txt").read().splitlines()[probs.argmax()], probs.max())'
SNIPPETS = {
    KERAS: [
        "import keras, numpy as np",
        "from PIL import Image, ImageOps",
        'model = keras.saving.load_model("model.keras")',
        _READ_PHOTO,
        "probs = model.predict(x, verbose=0)[0]",
        _PRINT_LABEL,
    ],
    SAVED_MODEL: [
        "import numpy as np, tensorflow as tf",
        "from PIL import Image, ImageOps",
        'model = tf.saved_model.load("saved_model")',
        _READ_PHOTO,
        "probs = model.serve(tf.constant(x)).numpy()[0]",
        _PRINT_LABEL,
    ],
    TFLITE: [
        "import numpy as np",
        "from PIL import Image, ImageOps",
        "from ai_edge_litert.interpreter import Interpreter",
        'model = Interpreter(model_path="model.tflite"); model.allocate_tensors()',
        _READ_PHOTO,
        'model.set_tensor(model.get_input_details()[0]["index"], x); model.invoke()',
        'probs = model.get_tensor(model.get_output_details()[0]["index"])[0]',
        _PRINT_LABEL,
    ],
    ONNX: [
        "import numpy as np, onnxruntime as ort",
        "from PIL import Image, ImageOps",
        'model = ort.InferenceSession("model.onnx")',
        _READ_PHOTO,
        "probs = model.run(None, {model.get_inputs()[0].name: x})[0][0]",
        _PRINT_LABEL,
    ],
}


def check_format(fmt: str) -> str:
    """Returns `fmt` if it is an export format, else raises TransferLabError echoing it."""
    if fmt not in FORMATS:
        raise TransferLabError(f"Received `format={fmt}`; use one of: {', '.join(FORMATS)}.")
    return fmt


def onnx_unavailable_reason() -> str | None:
    """Returns why ONNX export cannot run here (a missing package), or None when it can."""
    for module, package in (("tf2onnx", "tf2onnx"), ("onnx", "onnx")):
        try:
            __import__(module)
        except ImportError as e:
            return f"ONNX export needs `{package}` ({e}); install it with `pip install -r requirements.txt`."
    return None


def snippet(fmt: str, input_size: int) -> str:
    """Returns the Python lines that load an export in its own runtime and predict one photo."""
    return "\n".join(SNIPPETS[check_format(fmt)]).replace("{size}", str(int(input_size)))


def write_model(model: keras.Model, fmt: str, out_dir: Path) -> Path:
    """Writes the classifier in one format into `out_dir` and returns the model's path.

    Raises:
        TransferLabError: the format's converter is missing or fails.
    """
    path = out_dir / MODEL_FILES[check_format(fmt)]
    if fmt == ONNX and (reason := onnx_unavailable_reason()):
        raise TransferLabError(reason)
    size = int(model.inputs[0].shape[1])
    model(np.zeros((1, size, size, 3), np.float32))  # a loaded model has not been called yet
    try:
        if fmt == KERAS:
            model.save(path)
        else:
            export_format = {SAVED_MODEL: "tf_saved_model", TFLITE: "litert", ONNX: "onnx"}[fmt]
            model.export(str(path), format=export_format, verbose=False)
    except Exception as e:  # noqa: BLE001 - a converter failure is reported to the person
        raise TransferLabError(f"Could not export to {fmt}: {type(e).__name__}: {e}") from e
    return path


def _metrics_lines(metrics: dict) -> list[str]:
    evaluation = metrics.get("evaluation") or {}
    lines = []
    if evaluation.get("accuracy") is not None:
        lines.append(f"- accuracy on the {evaluation.get('split', 'held-out')} split: "
                     f"{evaluation['accuracy']:.4f} ({evaluation.get('n', '?')} images)")
    for name, per in (evaluation.get("per_class") or {}).items():
        lines.append(f"  - {name}: precision {per.get('precision', 0):.3f}, "
                     f"recall {per.get('recall', 0):.3f}, support {per.get('support', 0)}")
    if metrics.get("val_accuracy") is not None and evaluation.get("split") != "val":
        lines.append(f"- validation accuracy: {metrics['val_accuracy']:.4f}")
    return lines or ["- no metrics were recorded for this run"]


def build_model_card(*, fmt: str, run_name: str, config: dict, metrics: dict, labels: list[str],
                     input_size: int, preprocessing: str, cut: str) -> str:
    """Returns the export's README.md: classes, input contract, metrics, and how to predict.

    Args:
        fmt: the export format.
        run_name: the run folder's name.
        config: the run's `config.json`.
        metrics: the run's `metrics.json` (may be empty).
        labels: class names in output order.
        input_size: square input side in pixels.
        preprocessing: how the model scales pixels inside (from the backbone spec).
        cut: the layer the backbone was cut at.
    """
    classes = "\n".join(f"{i}. {name}" for i, name in enumerate(labels))
    return f"""# {run_name} ({fmt})

An image classifier trained with TransferLab: backbone `{config.get('backbone', '?')}`
(cut at `{cut}`), a new head on top.
File: `{MODEL_FILES[fmt]}`. Runtime: {RUNTIMES[fmt]}.

## Classes (output order, also in `labels.txt`)

{classes}

## Input contract

- float32 pixels, shape `(batch, {input_size}, {input_size}, 3)`, RGB, values in **0-255**
  (not 0-1, not normalised).
- Preprocessing is **inside the model** ({preprocessing}); do not scale the pixels yourself.
- TransferLab itself centre-crops the shorter side and resizes bilinearly to {input_size}x{input_size}.
- Output: softmax probabilities, shape `(batch, {len(labels)})`, in the order above.

## Metrics

{chr(10).join(_metrics_lines(metrics))}

## Predict with {RUNTIMES[fmt].split(' (')[0]} alone

```python
{snippet(fmt, input_size)}
```
"""


def export_run(run_dir: str | Path, fmt: str, out_dir: str | Path) -> dict:
    """Exports a trained run: the model in one format, `labels.txt` and the model card.

    Args:
        run_dir: a run folder written by `train`.
        fmt: one of `FORMATS`: `"keras"`, `"saved_model"`, `"tflite"` or `"onnx"`.
        out_dir: folder to write; it must not exist yet or be empty.

    Returns:
        `{"out", "format", "model", "files", "classes", "input_size"}` (paths as strings).

    Raises:
        TransferLabError: unknown format, a folder that is not a finished run, a non-empty
            `out_dir`, or a converter that is missing or fails.
    """
    from lib.backbones import get_spec
    from lib.runs import CONFIG_FILE, METRICS_FILE, load_trained_model, read_json

    check_format(fmt)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TransferLabError(f"Received `out={out}`, which is not an empty folder; choose a new one.")
    if fmt == ONNX and (reason := onnx_unavailable_reason()):
        raise TransferLabError(reason)
    run_dir = Path(run_dir).expanduser()
    model, labels = load_trained_model(run_dir)
    config = read_json(run_dir / CONFIG_FILE) or {}
    metrics = read_json(run_dir / METRICS_FILE) or {}
    input_size = int(model.inputs[0].shape[1])
    try:
        spec = get_spec(config["backbone"])
        preprocessing, cut = spec.preprocessing, config.get("cut") or spec.feature_layer
    except (KeyError, TransferLabError):  # a run of a backbone this install does not know
        preprocessing, cut = "the backbone's own scaling", config.get("cut") or "its feature layer"
    out.mkdir(parents=True, exist_ok=True)
    model_path = write_model(model, fmt, out)
    atomic_write_text(out / LABELS_FILE, "\n".join(labels) + "\n")
    atomic_write_text(out / CARD_FILE, build_model_card(
        fmt=fmt, run_name=run_dir.name, config=config, metrics=metrics, labels=labels,
        input_size=input_size, preprocessing=preprocessing, cut=cut))
    return {
        "out": str(out),
        "format": fmt,
        "model": str(model_path),
        "files": sorted(str(p.relative_to(out)) for p in out.iterdir()),
        "classes": labels,
        "input_size": input_size,
    }


def export_archive(run_dir: str | Path, fmt: str) -> tuple[str, bytes]:
    """Exports a run into a temporary folder and returns it zipped, for a download button.

    Args:
        run_dir: a run folder written by `train`.
        fmt: one of `FORMATS`.

    Returns:
        `(file_name, zip_bytes)`, e.g. `("myrun-tflite.zip", b"PK...")`; the zip holds the model,
        `labels.txt` and `README.md` at its top level.

    Raises:
        TransferLabError: as `export_run`.
    """
    import io
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(prefix="transferlab-export-") as tmp:
        out = Path(tmp) / "export"
        export_run(run_dir, fmt, out)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(out).as_posix())
    return f"{Path(run_dir).name}-{fmt}.zip", buffer.getvalue()
