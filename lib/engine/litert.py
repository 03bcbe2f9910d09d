"""LiteRT (XNNPACK) for layers that do not train: convert a body once, cache the `.tflite`, run it.

    body (Keras, frozen) --export(format="litert")--> <cache>/engines/<name>-<key>.tflite
    pixels (B, S, S, 3) float32 in [0, 255] --Interpreter + XNNPACK--> features (B, D)

* The key hashes the weights themselves (every variable's path and bytes), the graph's shape (layer
  names, input and output shapes, pooling) and the converter (TensorFlow and Keras versions), so a
  fine-tuned copy of a body gets its own file and an upgrade reconverts. Any process that builds the
  same body finds the same file.
* Files are written atomically (`atomic_write_bytes`); two processes converting at once both write
  a complete file and the last rename wins.
* A body that cannot be converted leaves a `<key>.failed.txt` with the reason, so it is not retried
  on every pass (the caller falls back to TensorFlow and says so).
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import tempfile
from pathlib import Path

import keras
import numpy as np

from lib.storage import atomic_write_bytes, atomic_write_text, cache_dir

ENGINES_DIR = "engines"
FORMAT_VERSION = "v1"
POOL_NAME = "engine_pool"
TFLITE_SUFFIX = ".tflite"
FAILED_SUFFIX = ".failed.txt"
LOCK_SUFFIX = ".lock"


class EngineUnavailable(Exception):
    """LiteRT cannot run this body (conversion failed, or the runtime is missing); says why."""


def converter_version() -> str:
    """Returns what the `.tflite` bytes depend on besides the model: converter and Keras versions."""
    import tensorflow as tf

    return f"{FORMAT_VERSION}|tf{tf.__version__}|keras{keras.__version__}"


def build_inference_model(body: keras.Model, pool: bool = True) -> keras.Model:
    """Wraps a body for conversion: pixels -> features, BatchNorm in inference mode.

    Args:
        body: pixels `(B, S, S, 3)` -> a feature map or a vector.
        pool: average a feature map over its spatial axes (what the head's GlobalAveragePooling2D
            computes), so the engine returns `(B, C)`. Defaults to True.

    Returns:
        A new functional model sharing the body's weights.
    """
    inputs = keras.Input(tuple(body.inputs[0].shape[1:]), name="pixels")
    outputs = body(inputs, training=False)  # (B, H, W, C) or (B, C)
    if pool and len(outputs.shape) == 4:
        outputs = keras.layers.GlobalAveragePooling2D(name=POOL_NAME)(outputs)  # (B, C)
    return keras.Model(inputs, outputs, name=f"{body.name}_engine")


def engine_key(body: keras.Model, pool: bool = True) -> str:
    """Returns the cache key of a body's `.tflite`: weights + graph + cut + converter version.

    Args:
        body: the Keras body.
        pool: whether feature maps are pooled inside the converted model. Defaults to True.
    """
    digest = hashlib.sha1(converter_version().encode())
    shapes = (tuple(body.inputs[0].shape), tuple(body.outputs[0].shape), pool)
    digest.update(repr(shapes).encode())
    digest.update("|".join(layer.name for layer in body.layers).encode())  # the cut: top layer
    for weight in body.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:20]


def engine_path(key: str, name: str = "") -> Path:
    """`<cache>/engines/<name>-<key>.tflite` (the name only helps a person browsing the folder)."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] + "-" if name else ""
    return cache_dir() / ENGINES_DIR / f"{prefix}{key}{TFLITE_SUFFIX}"


def convert_to_tflite(model: keras.Model) -> bytes:
    """Converts a Keras model with Keras 3's own LiteRT export and returns the flatbuffer."""
    with tempfile.TemporaryDirectory(prefix="transferlab-litert-") as tmp:
        path = Path(tmp) / "model.tflite"
        model.export(str(path), format="litert", verbose=False)
        return path.read_bytes()


def cached_tflite(body: keras.Model, *, pool: bool = True, name: str = "") -> Path:
    """Returns the body's `.tflite`, converting it the first time (ever, on this cache).

    Args:
        body: the Keras body (frozen; its weights are the key).
        pool: pool feature maps inside the converted model. Defaults to True.
        name: readable prefix of the file name. Defaults to "".

    Returns:
        Path of the `.tflite` file.

    Raises:
        EngineUnavailable: the body cannot be converted (now or on an earlier try).
    """
    path = engine_path(engine_key(body, pool), name)
    if path.is_file():
        return path
    # One conversion per file, whoever asks: jobs of several sessions (or worker processes) that
    # need the same body wait for the first conversion instead of each doing it (it costs seconds).
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + LOCK_SUFFIX), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _convert_once(body, pool, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _convert_once(body: keras.Model, pool: bool, path: Path) -> Path:
    failed = path.with_name(path.name[: -len(TFLITE_SUFFIX)] + FAILED_SUFFIX)
    if path.is_file():
        return path
    if failed.is_file():
        raise EngineUnavailable(failed.read_text(encoding="utf-8"))
    try:
        data = convert_to_tflite(build_inference_model(body, pool))
    except Exception as e:  # noqa: BLE001 - any converter failure means "use TensorFlow"
        reason = f"LiteRT conversion failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        atomic_write_text(failed, reason)
        raise EngineUnavailable(reason) from e
    atomic_write_bytes(path, data)
    return path


class LiteRTRunner:
    """Runs a `.tflite` model with the XNNPACK delegate: `runner(pixels) -> features`.

    Not thread-safe (one interpreter holds one set of buffers): make one per pass.

    Args:
        model_path: a `.tflite` file with one float32 input and one output.
        num_threads: XNNPACK worker threads.

    Raises:
        EngineUnavailable: `ai-edge-litert` is not installed or the file does not load.
    """

    def __init__(self, model_path: Path, num_threads: int) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise EngineUnavailable(f"ai-edge-litert is not installed ({e})") from e
        try:
            # The default op resolver applies the XNNPACK delegate to every op it supports.
            self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            raise EngineUnavailable(f"LiteRT could not load {model_path.name}: {e}") from e
        self.num_threads = num_threads
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Runs one batch.

        Args:
            pixels: float32 `(B, S, S, 3)` in [0, 255].

        Returns:
            float32 `(B, ...)`, a copy (the interpreter reuses its buffers).
        """
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if pixels.shape != self._shape:
            # Re-plans the buffers; a pass resizes at most twice (full batches, then the last one).
            self.interpreter.resize_tensor_input(self._input, pixels.shape, strict=False)
            self.interpreter.allocate_tensors()
            self._shape = pixels.shape
        self.interpreter.set_tensor(self._input, pixels)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()
