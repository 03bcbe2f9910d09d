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
import queue
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

import keras
import numpy as np

from lib.storage import atomic_write_bytes, atomic_write_text, cache_dir

ENGINES_DIR = "engines"
FORMAT_VERSION = "v1"
POOL_NAME = "engine_pool"
TFLITE_SUFFIX = ".tflite"
FAILED_SUFFIX = ".failed.txt"
LOCK_SUFFIX = ".lock"
# Images per task of `LiteRTPool.map`: small enough that progress and stop come often, big
# enough that scheduling costs nothing next to ~10 ms per image.
MAP_CHUNK = 8
# Each interpreter holds its own packed copy of the weights: a pool keeps at most this many bytes
# of model files in interpreters (a big backbone on many cores gets fewer, multi-thread ones).
POOL_MODEL_BYTES = 512 * 2**20


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
        pixels = np.asarray(pixels)
        if pixels.shape != self._shape:
            # Re-plans the buffers; a pass resizes at most twice (full batches, then the last one).
            self.interpreter.resize_tensor_input(self._input, pixels.shape, strict=False)
            self.interpreter.allocate_tensors()
            self._shape = pixels.shape
        # Straight into the input buffer: one copy, which also makes a strided view (the resize's
        # transposed output) contiguous. The view is dropped before `invoke`, as LiteRT requires.
        np.copyto(self.interpreter.tensor(self._input)(), pixels, casting="same_kind")
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)  # already a copy


class LiteRTPool:
    """Runs a `.tflite` model on one single-thread interpreter per thread, one image per invoke.

    Why not one interpreter with every thread: XNNPACK splits each operator across its threads and
    waits for all of them at the end of every operator (about a hundred per image), so a thread
    that loses its core (to image decoding, another job, another process) stalls the others. One
    single-thread interpreter per core has no such barrier, and one image per invoke keeps each
    layer's activations in cache (the least CPU per image here: `bench/inference_engines.py`).
    Batches smaller than the pool go to one interpreter with every thread (lowest latency). A
    model so big that `threads` copies of it would pass `POOL_MODEL_BYTES` gets fewer
    interpreters, each with several threads.

    Not thread-safe itself (make one per pass); it runs its own worker threads.

    Args:
        model_path: a `.tflite` file with one float32 input and one output.
        threads: threads in all (interpreters x threads each), at least 1.

    Raises:
        EngineUnavailable: `ai-edge-litert` is not installed or the file does not load.
    """

    def __init__(self, model_path: Path, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"Received `threads={threads}`; a pool needs at least one.")
        self.model_path = model_path
        self.threads = threads
        size = max(1, Path(model_path).stat().st_size)
        self.workers = max(1, min(threads, POOL_MODEL_BYTES // size))
        self._free: queue.SimpleQueue[LiteRTRunner] = queue.SimpleQueue()
        for _ in range(self.workers):
            self._free.put(LiteRTRunner(model_path, threads // self.workers))
        self._latency: LiteRTRunner | None = None
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="litert")

    def close(self) -> None:
        """Stops the worker threads (pending work is cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Runs one batch: float32 `(B, S, S, 3)` in [0, 255] -> float32 `(B, ...)`."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if len(pixels) < self.workers:  # too few images to share out: one interpreter, all threads
            if self._latency is None:
                self._latency = LiteRTRunner(self.model_path, self.threads)
            return self._latency(pixels)
        return self.map(range(len(pixels)), lambda i: pixels[i])

    def map(self, items: Sequence, load: Callable[[Any], np.ndarray],
            on_done: Callable[[int], None] | None = None, chunk: int = MAP_CHUNK) -> np.ndarray:
        """Loads and runs every item on the worker threads; returns the outputs in item order.

        Args:
            items: anything `load` takes (file paths, indices).
            load: `fn(item) -> float32 (S, S, 3)` pixels; runs on the worker threads.
            on_done: `fn(n_items)` on the calling thread as chunks finish; it may raise to stop
                (the remaining chunks are dropped and the exception propagates). Defaults to None.
            chunk: items per task. Defaults to `MAP_CHUNK`.

        Returns:
            float32 `(N, ...)`, row i for `items[i]`.
        """
        items = list(items)
        out: list[np.ndarray | None] = [None] * len(items)
        stop = threading.Event()

        def run_chunk(start: int) -> int:
            runner = self._free.get()
            try:
                for i in range(start, min(start + chunk, len(items))):
                    if stop.is_set():
                        break
                    out[i] = runner(load(items[i])[None])[0]  # (1, S, S, 3) -> (...)
            finally:
                self._free.put(runner)
            return min(chunk, len(items) - start)

        futures = [self._executor.submit(run_chunk, s) for s in range(0, len(items), chunk)]
        try:
            for future in as_completed(futures):
                n = future.result()
                if on_done is not None:
                    on_done(n)
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            wait(futures)
            raise
        return np.stack(out) if out else np.zeros((0,), np.float32)
