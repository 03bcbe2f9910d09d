"""Top-k prediction on image files, with an ImageNet backbone or a trained run.

`load_classifier` is the one loader of "a model from a backbone or a run" (the CLI and every page
use it), and `classify_batches` is the one batched forward pass (prediction, evaluation): the
frozen body (or a whole ImageNet classifier) on `lib.engine` (LiteRT, TensorFlow as the fallback),
the head in Keras. `predict_batches` is TensorFlow's loop, today's path and the fallback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from lib.backbones.imagenet import top_k
from lib.engine import LITERT, ForwardResult, open_forward
from lib.errors import TransferLabError
from lib.images import EVAL_CROP_PADDING, load_image

if TYPE_CHECKING:
    from lib.backbones import Backbone

PREDICT_BATCH = 16
IMAGENET_CLASSES = 1000
# `LoadedClassifier.source` values.
SOURCE_BACKBONE, SOURCE_RUN, SOURCE_SESSION = "backbone", "run", "session"


@dataclass(frozen=True)
class LoadedClassifier:
    """A classifier ready to predict, and what it is.

    Attributes:
        model: pixels (B, S, S, 3) in [0, 255] -> probabilities (B, C). Shared when it is a
            cached backbone: never train or change it.
        class_names: the C class names, in output order.
        source: `"backbone"` (an ImageNet classifier), `"run"` (a trained run on disk) or
            `"session"` (a model the UI trained in this session, not loaded from disk).
        name: the backbone name, the run folder, or a description of the session's model.
        backbone: the registry name (or hub handle) the model is built on.
        pretrained: False when a backbone has random weights (its predictions mean nothing).
    """

    model: keras.Model
    class_names: tuple[str, ...]
    source: str
    name: str
    backbone: str
    pretrained: bool = True

    @property
    def input_size(self) -> int:
        return input_size_of(self.model)

    @property
    def crop_padding(self) -> int | None:
        """How images are cropped for this model: a backbone's ImageNet classifier takes
        EfficientNet's evaluation crop (`EVAL_CROP_PADDING`); a trained model takes the plain crop
        it was trained on (None)."""
        return EVAL_CROP_PADDING if self.source == SOURCE_BACKBONE else None


@dataclass(frozen=True)
class FilePrediction:
    """One image's prediction, or why it could not be read.

    Attributes:
        name: what the person calls the file (its name or path).
        top: `{"index", "label", "prob"}` rows, best first; None when the file failed.
        error: why the file could not be read ("" when it was predicted).
        engine: the engine that ran the model (`"litert"` or `"tf"`; "" when nothing ran).
    """

    name: str
    top: list[dict] | None
    error: str = ""
    engine: str = ""


@dataclass(frozen=True)
class EngineParts:
    """A classifier split for `lib.engine`: `finish(engine(core, pool)(pixels))` = probabilities.

    Attributes:
        core: what the engine runs: a TransferLab classifier's body, or the whole model when it is
            not body + head (an ImageNet classifier).
        pool: whether the engine averages the core's feature map (the head's own first step).
        finish: `fn(core outputs) -> float32 probabilities`, in Keras (the head after its pooling,
            then softmax); the identity for a whole model.
    """

    core: keras.Model
    pool: bool
    finish: Callable[[np.ndarray], np.ndarray]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (shifted by each row's max, so it cannot overflow)."""
    logits = np.asarray(logits, dtype=np.float32)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def split_for_engine(model: keras.Model) -> EngineParts:
    """Splits a classifier into what the inference engine runs and what Keras finishes.

    A TransferLab classifier's body runs on the engine, pooled there when its head starts with
    global average pooling (so it is the very `.tflite` feature extraction converted); the rest of
    the head and the softmax run in Keras. Any other model runs whole on the engine.

    Args:
        model: pixels (B, S, S, 3) in [0, 255] -> probabilities (B, C).

    Returns:
        `EngineParts`.
    """
    from lib.models import POOL_NAME, classifier_parts

    try:
        body, head = classifier_parts(model)
    except TransferLabError:
        return EngineParts(model, False, lambda outputs: np.asarray(outputs, np.float32))
    pool = any(layer.name == POOL_NAME for layer in head.layers)
    # The head after its pooling layer: pooled features (B, C) -> logits (B, K), same weights.
    tail = keras.Model(head.get_layer(POOL_NAME).output, head.outputs[0]) if pool else head
    return EngineParts(body, pool, lambda features: softmax(tail(features, training=False)))


def classify_batches(model: keras.Model, inputs: np.ndarray | Iterable, *,
                     batch_size: int = PREDICT_BATCH, engine: str | None = None) -> ForwardResult:
    """Probabilities of a classifier over batches, on LiteRT where it can run (see `lib.engine`).

    Args:
        model: pixels (B, S, S, 3) in [0, 255] -> probabilities (B, C); only read.
        inputs: as in `predict_batches`: an array `(N, S, S, 3)` or an iterable of batches.
        batch_size: rows per call when `inputs` is an array. Defaults to `PREDICT_BATCH`.
        engine: `"tf"`, `"litert"` or None (the environment, else LiteRT with TensorFlow as the
            fallback). Defaults to None.

    Returns:
        A `ForwardResult` whose `features` are float32 probabilities `(N, C)`, with the engine
        that ran (TensorFlow runs the whole model, today's `predict_batches`).

    Raises:
        TransferLabError: an unknown engine, or `litert` forced and unavailable.
    """
    if batch_size < 1:
        raise ValueError(f"Received `batch_size={batch_size}`; use 1 or more.")
    start = time.perf_counter()
    parts = split_for_engine(model)
    with open_forward(parts.core, engine=engine, pool=parts.pool, name=parts.core.name) as forward:
        if forward.engine != LITERT:
            probs = predict_batches(model, inputs, batch_size)
        else:
            if isinstance(inputs, np.ndarray):
                batches: Iterable = (inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size))
            else:
                batches = (b[0] if isinstance(b, tuple | list) else b for b in inputs)
            out = [parts.finish(forward(_as_array(batch))) for batch in batches]
            probs = (np.concatenate(out) if out
                     else np.zeros((0, *model.outputs[0].shape[1:]), dtype=np.float32))
    return ForwardResult(probs, forward.engine, forward.fallback_reason, forward.threads,
                         time.perf_counter() - start)


def _as_array(pixels) -> np.ndarray:
    return np.asarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels, dtype=np.float32)


def load_classifier(*, backbone: str | None = None, run: str | Path | None = None,
                    allow_random: bool = False) -> LoadedClassifier:
    """Loads the model that predicts: a backbone's ImageNet classifier, or a trained run.

    The CLI (`--backbone` / `--run`) and every page load models through here, so they apply the
    same checks.

    Args:
        backbone: a registry name (or hub handle) whose ImageNet classifier to use.
        run: a run folder written by `train` (or `fine-tune`).
        allow_random: accept a backbone whose weights are unavailable, with random weights
            (`pretrained=False`); only the zoo and tests want this. Defaults to False.

    Returns:
        A `LoadedClassifier`.

    Raises:
        TransferLabError: neither or both given, an unknown backbone, a backbone without an ImageNet
            classifier, unavailable weights, or a folder that is not a loadable run.
    """
    if (backbone is None) == (run is None):
        raise TransferLabError(
            f"Received `backbone={backbone!r}` and `run={run!r}`; give exactly one of them."
        )
    if run is not None:
        from lib.runs import CONFIG_FILE, load_trained_model, read_json

        model, labels = load_trained_model(run)
        # A folder with only a model and its labels (copied by hand) still predicts.
        config = read_json(Path(run).expanduser() / CONFIG_FILE) or {}
        return LoadedClassifier(model, tuple(labels), SOURCE_RUN, str(run), str(config.get("backbone", "")),
                                bool(config.get("pretrained", True)))
    from lib.backbones import load_backbone

    return classifier_from_backbone(load_backbone(backbone, allow_random=allow_random))


def classifier_from_backbone(loaded: Backbone) -> LoadedClassifier:
    """Wraps an already loaded backbone (e.g. the UI's shared, cached one) as its ImageNet classifier.

    Args:
        loaded: a `lib.backbones.Backbone`.

    Returns:
        A `LoadedClassifier` with `source="backbone"`, sharing the backbone's model.

    Raises:
        TransferLabError: the backbone outputs features, not ImageNet's 1000 classes.
    """
    from lib.backbones.imagenet import imagenet_labels

    if loaded.spec.num_classes != IMAGENET_CLASSES:
        raise TransferLabError(
            f"{loaded.spec.name} has no ImageNet classifier (it outputs features); train a head on "
            "it and use the run instead."
        )
    return LoadedClassifier(loaded.model, tuple(imagenet_labels()), SOURCE_BACKBONE,
                            loaded.spec.name, loaded.spec.name, loaded.pretrained)


def predict_batches(model: keras.Model, inputs: np.ndarray | Iterable,
                    batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """The one batched forward loop: the model in inference mode, outputs joined in order.

    Args:
        model: any Keras model.
        inputs: an array `(N, ...)`, cut into batches of `batch_size`; or an iterable of batches
            (e.g. a `tf.data.Dataset`), each an array or an `(x, y)` pair whose `x` is used.
        batch_size: rows per call when `inputs` is an array. Defaults to `PREDICT_BATCH`.

    Returns:
        float32 outputs `(N, ...)`; `(0, ...)` shaped like the model's output when there is nothing.

    Raises:
        ValueError: `batch_size` below 1.
    """
    if batch_size < 1:
        raise ValueError(f"Received `batch_size={batch_size}`; use 1 or more.")
    if isinstance(inputs, np.ndarray):
        batches: Iterable = (inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size))
    else:
        batches = (b[0] if isinstance(b, tuple | list) else b for b in inputs)
    out = [np.asarray(model(batch, training=False), dtype=np.float32) for batch in batches]
    if not out:
        return np.zeros((0, *model.outputs[0].shape[1:]), dtype=np.float32)
    return np.concatenate(out, axis=0)


def predict_probabilities(model: keras.Model, images: np.ndarray, *,
                          engine: str | None = None) -> np.ndarray:
    """Runs a classifier on pixels (`classify_batches`, which also says which engine ran).

    Args:
        model: any TransferLab classifier (pixels in [0, 255] -> probabilities).
        images: float32 array `(N, S, S, 3)` of pixels in [0, 255].
        engine: `"tf"`, `"litert"` or None (LiteRT, else TensorFlow). Defaults to None.

    Returns:
        Probabilities, shape `(N, num_classes)`.
    """
    return classify_images(model, images, engine=engine).features


def classify_images(model: keras.Model, images: np.ndarray, *,
                    engine: str | None = None) -> ForwardResult:
    """`predict_probabilities`, returning the `ForwardResult` (probabilities + the engine that ran).

    Raises:
        ValueError: images not shaped `(N, S, S, 3)`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Received images of shape {images.shape}; expected (N, S, S, 3).")
    return classify_batches(model, images, batch_size=PREDICT_BATCH, engine=engine)


def input_size_of(model: keras.Model) -> int:
    """The square input side a classifier expects."""
    return int(model.inputs[0].shape[1])


def predict_files(
    model: keras.Model, labels: Sequence[str], sources: Sequence[str | Path | bytes], k: int = 5,
    *, crop_padding: int | None = None, engine: str | None = None,
) -> list[list[dict]]:
    """Loads images (shorter side resized, centre crop) and returns the top-k of each.

    Args:
        model: a classifier taking pixels in [0, 255].
        labels: its class names.
        sources: file paths or file bytes.
        k: classes per image. Defaults to 5.
        crop_padding: None for the plain crop, or the evaluation crop's margin
            (`LoadedClassifier.crop_padding`). Defaults to None.
        engine: as in `classify_batches`. Defaults to None (LiteRT, else TensorFlow).

    Returns:
        One list of `{"index", "label", "prob"}` per image.

    Raises:
        TransferLabError: an image cannot be read (`predict_each` predicts the others instead).
    """
    return predict_files_run(model, labels, sources, k, crop_padding=crop_padding, engine=engine)[0]


def predict_files_run(
    model: keras.Model, labels: Sequence[str], sources: Sequence[str | Path | bytes], k: int = 5,
    *, crop_padding: int | None = None, engine: str | None = None,
) -> tuple[list[list[dict]], ForwardResult]:
    """`predict_files`, also returning the `ForwardResult` (which engine ran, and why not LiteRT).

    Returns:
        `(top-k rows per image, the run whose features are the probabilities (N, C))`.
    """
    size = input_size_of(model)
    batch = np.stack([load_image(s, size, crop_padding=crop_padding) for s in sources])
    run = classify_images(model, batch, engine=engine)
    return [top_k(p, labels, k) for p in run.features], run


def predict_each(
    model: keras.Model, labels: Sequence[str], sources: Sequence[str | Path | bytes],
    names: Sequence[str] | None = None, k: int = 5, *, crop_padding: int | None = None,
    engine: str | None = None,
) -> list[FilePrediction]:
    """`predict_files` for files a person hands in: each file that cannot be read gets its reason,
    and the others are predicted all the same.

    Args:
        model: a classifier taking pixels in [0, 255].
        labels: its class names.
        sources: file paths or file bytes.
        names: what to call each source in the results. Defaults to None: the paths, or
            "image N" for bytes.
        k: classes per image. Defaults to 5.
        crop_padding: as in `predict_files`. Defaults to None.
        engine: as in `classify_batches`. Defaults to None (LiteRT, else TensorFlow).

    Returns:
        One `FilePrediction` per source, in order, each saying which engine ran.
    """
    if names is not None and len(names) != len(sources):
        raise ValueError(f"Received {len(names)} names for {len(sources)} sources.")
    names = list(names) if names is not None else [
        f"image {i + 1}" if isinstance(s, bytes) else str(s) for i, s in enumerate(sources)]
    size = input_size_of(model)
    pixels: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    for i, source in enumerate(sources):
        try:
            pixels[i] = load_image(source, size, crop_padding=crop_padding)
        except TransferLabError as e:
            errors[i] = str(e)
    tops: dict[int, list[dict]] = {}
    engine_ran = ""
    if pixels:
        order = sorted(pixels)
        run = classify_images(model, np.stack([pixels[i] for i in order]), engine=engine)
        engine_ran = run.engine
        tops = {i: top_k(p, labels, k) for i, p in zip(order, run.features, strict=True)}
    return [FilePrediction(name, tops.get(i), errors.get(i, ""), engine_ran if i in tops else "")
            for i, name in enumerate(names)]
