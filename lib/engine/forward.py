"""Forward-only passes through frozen layers: LiteRT when it can, TensorFlow when it cannot.

    with open_forward(body) as forward:     # converts once (cached), leases threads
        features = forward(pixels)           # (B, S, S, 3) in [0, 255] -> (B, D)
        features = forward.map(paths, load)  # load(path) -> (S, S, 3) on the engine's workers
        forward.engine                       # "litert" or "tf": which engine ran

LiteRT runs as a `LiteRTPool`: one single-thread interpreter per leased core, one image per
invoke, and `map` decodes on the same workers, so decoding never competes with an interpreter
for a core (see `LiteRTPool` for why this beats one interpreter with every thread).

    result = forward_batches(body, batches)  # the same over an iterable of batches
    result.features, result.engine, result.fallback_reason

Which engine: the `engine` argument, else `TRANSFERLAB_ENGINE` (`tf` or `litert`), else LiteRT
with TensorFlow as the fallback when the body cannot be converted or loaded (the reason is kept,
so the run config and the UI can say which engine ran and why). A forced `litert` that cannot run
is an error, not a silent fallback. TensorFlow stays the engine for everything with gradients.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from lib.engine.litert import EngineUnavailable, LiteRTPool, cached_tflite
from lib.engine.threads import thread_budget
from lib.errors import TransferLabError

ENGINE_ENV = "TRANSFERLAB_ENGINE"
TF = "tf"
LITERT = "litert"
ENGINES = (TF, LITERT)
# Images per TensorFlow call when `Forward.map` loads images itself (LiteRT runs one per invoke).
MAP_BATCH = 32

BatchDone = Callable[[int], None]


@dataclass(frozen=True)
class ForwardResult:
    """Features from one pass, and how they were computed.

    Attributes:
        features: float32 `(N, ...)`, row i from the i-th image of the batches.
        engine: `"litert"` or `"tf"`: the engine that ran.
        fallback_reason: why LiteRT did not run when it was allowed to ("" when it ran, or when
            TensorFlow was asked for).
        threads: LiteRT interpreter threads, or None for TensorFlow (its own thread pools).
        seconds: wall time of the pass, conversion included.
    """

    features: np.ndarray
    engine: str
    fallback_reason: str
    threads: int | None
    seconds: float


def resolve_engine(engine: str | None = None) -> str | None:
    """Returns the engine asked for: the argument, else `TRANSFERLAB_ENGINE`, else None (automatic).

    Raises:
        TransferLabError: an unknown engine name (argument or environment).
    """
    chosen = engine if engine is not None else os.environ.get(ENGINE_ENV, "").strip().lower() or None
    if chosen is not None and chosen not in ENGINES:
        source = "engine" if engine is not None else ENGINE_ENV
        raise TransferLabError(f"Received `{source}={chosen}`; use one of: {', '.join(ENGINES)}.")
    return chosen


def build_tf_forward(body: keras.Model, pool: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """Returns the TensorFlow engine: a compiled `fn(pixels) -> features` in inference mode."""
    import tensorflow as tf

    rank = len(body.outputs[0].shape)

    @tf.function(reduce_retracing=True, autograph=False)  # nothing to convert
    def extract(pixels: tf.Tensor) -> tf.Tensor:
        features = body(pixels, training=False)  # (B, H, W, C) or (B, C)
        if pool and rank == 4:
            features = tf.reduce_mean(features, axis=(1, 2))  # (B, C), what GAP computes
        return features

    return lambda pixels: extract(tf.convert_to_tensor(pixels, tf.float32)).numpy()


class Forward:
    """A callable forward pass with the facts of how it runs (`engine`, `threads`, `fallback_reason`).

    `forward(pixels)` runs a batch; `forward.map(items, load)` loads and runs many images, on the
    LiteRT workers when LiteRT runs (decoding overlaps the other workers' invokes).
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], engine: str, *,
                 threads: int | None = None, fallback_reason: str = "") -> None:
        self._fn = fn
        self.engine = engine
        self.threads = threads
        self.fallback_reason = fallback_reason

    def __call__(self, pixels) -> np.ndarray:
        return self._fn(pixels)

    def map(self, items: Sequence, load: Callable[[Any], np.ndarray],
            on_done: Callable[[int], None] | None = None) -> np.ndarray:
        """Runs `load(item)` pixels `(S, S, 3)` through the model for every item, in order.

        Args:
            items: what `load` takes (file paths, records).
            load: `fn(item) -> float32 (S, S, 3)` in [0, 255].
            on_done: `fn(n_images)` on the calling thread after each group of images; it may
                raise to stop the pass. Defaults to None.

        Returns:
            float32 `(N, ...)`, row i for `items[i]`.
        """
        if isinstance(self._fn, LiteRTPool):
            return self._fn.map(items, load, on_done)
        parts = []
        for start in range(0, len(items), MAP_BATCH):
            pixels = np.stack([load(item) for item in items[start : start + MAP_BATCH]])
            parts.append(self._fn(pixels))
            if on_done is not None:
                on_done(len(pixels))
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


@contextmanager
def open_forward(body: keras.Model, *, engine: str | None = None, pool: bool = True,
                 threads: int | None = None, name: str = "") -> Iterator[Forward]:
    """Opens a forward pass over a frozen body on the chosen engine.

    Args:
        body: pixels -> features; only read.
        engine: `"tf"`, `"litert"` or None (the environment, else LiteRT with a TensorFlow
            fallback). Defaults to None.
        pool: average feature maps to `(B, C)`. Defaults to True.
        threads: at most this many LiteRT threads. Defaults to None: the free cores of the
            process-wide budget.
        name: readable prefix for the cached `.tflite`. Defaults to "".

    Yields:
        A `Forward`; LiteRT threads stay leased until the block ends.

    Raises:
        TransferLabError: unknown engine, or `litert` forced and unavailable.
    """
    wanted = resolve_engine(engine)
    if wanted == TF:
        yield Forward(build_tf_forward(body, pool), TF)
        return
    try:
        model_path = cached_tflite(body, pool=pool, name=name or body.name)
    except EngineUnavailable as e:
        if wanted == LITERT:
            raise TransferLabError(f"The LiteRT engine was asked for but cannot run: {e}") from e
        yield Forward(build_tf_forward(body, pool), TF, fallback_reason=str(e))
        return
    with thread_budget().lease(threads) as n_threads:
        try:
            runner = LiteRTPool(model_path, n_threads)
        except EngineUnavailable as e:
            if wanted == LITERT:
                raise TransferLabError(f"The LiteRT engine was asked for but cannot run: {e}") from e
            yield Forward(build_tf_forward(body, pool), TF, fallback_reason=str(e))
            return
        try:
            yield Forward(runner, LITERT, threads=n_threads)
        finally:
            runner.close()


def _as_numpy(pixels) -> np.ndarray:
    return pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)


def forward_batches(body: keras.Model, batches: Iterable, *, engine: str | None = None,
                    pool: bool = True, threads: int | None = None, name: str = "",
                    on_batch: BatchDone | None = None) -> ForwardResult:
    """Runs pixels -> features over batches on LiteRT, or TensorFlow where LiteRT cannot run.

    Args:
        body: pixels -> features, frozen; only read.
        batches: float32 pixel batches `(B, S, S, 3)` in [0, 255] (numpy arrays or tensors).
        engine: `"tf"`, `"litert"` or None (see `open_forward`). Defaults to None.
        pool: average feature maps to `(B, C)`. Defaults to True.
        threads: at most this many LiteRT threads. Defaults to None (the free cores).
        name: readable prefix for the cached `.tflite`. Defaults to "".
        on_batch: `fn(n_images)` after each batch; it may raise to stop the pass. Defaults to None.

    Returns:
        A `ForwardResult` (features of every image in order, and the engine that ran).

    Raises:
        TransferLabError: no batches, an unknown engine, or `litert` forced and unavailable.
    """
    start = time.perf_counter()
    with open_forward(body, engine=engine, pool=pool, threads=threads, name=name) as forward:
        parts = []
        for pixels in batches:
            parts.append(forward(_as_numpy(pixels)))
            if on_batch is not None:
                on_batch(len(parts[-1]))
    if not parts:
        raise TransferLabError("No images to run through the model.")
    features = np.concatenate(parts).astype(np.float32, copy=False)
    return ForwardResult(features, forward.engine, forward.fallback_reason, forward.threads,
                         time.perf_counter() - start)
