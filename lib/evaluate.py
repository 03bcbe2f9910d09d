"""Evaluation: accuracy, per-class precision and recall, confusion matrix, and the top losses.

Also what the pages show about a model before or after training: parameter counts for a head's
settings, the images of one confusion-matrix cell, and an unfreeze preview.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from lib.data.pipeline import load_pixels, make_dataset
from lib.data.sources import ImageRecord
from lib.engine import LITERT, ForwardResult, open_forward
from lib.errors import TransferLabError
from lib.predict import predict_batches, split_for_engine

if TYPE_CHECKING:
    from lib.backbones import Backbone
    from lib.models import HeadConfig

TOP_LOSSES = 16
# Gallery thumbnails (top losses, confusion cells) are made this size at most (longest side, px).
THUMBNAIL_SIDE = 256
# Probabilities are clipped before the log so a confident mistake has a finite loss.
EPSILON = 1e-7


def predict_records(model: keras.Model, records: Sequence[ImageRecord], num_classes: int,
                    batch_size: int = 32, *, engine: str | None = None) -> np.ndarray:
    """Runs a classifier over images in order (`predict_records_run` also says which engine ran).

    Returns:
        float32 probabilities `(N, C)`.
    """
    return predict_records_run(model, records, num_classes, batch_size, engine=engine).features


def predict_records_run(model: keras.Model, records: Sequence[ImageRecord], num_classes: int,
                        batch_size: int = 32, *, engine: str | None = None) -> ForwardResult:
    """Runs a classifier over images in order: the body on LiteRT, the head in Keras.

    On LiteRT each engine worker decodes its own images (`load_pixels`: the pixels `make_dataset`
    gives); on TensorFlow (asked for, or the fallback) it is today's path, tf.data and Keras.

    Args:
        model: pixels in [0, 255] -> probabilities `(B, C)`; only read.
        records: the images, in order.
        num_classes: C.
        batch_size: images per TensorFlow call. Defaults to 32.
        engine: `"tf"`, `"litert"` or None (LiteRT, else TensorFlow). Defaults to None.

    Returns:
        A `ForwardResult` whose `features` are the float32 probabilities `(N, C)`.
    """
    start = time.perf_counter()
    size = int(model.inputs[0].shape[1])
    parts = split_for_engine(model)
    with open_forward(parts.core, engine=engine, pool=parts.pool, name=parts.core.name) as forward:
        if forward.engine == LITERT:
            outputs = forward.map([r.path for r in records],
                                  functools.partial(load_pixels, image_size=size))
            probs = np.concatenate([parts.finish(outputs[i : i + batch_size])
                                    for i in range(0, len(outputs), batch_size)])
        else:
            dataset = make_dataset(records, num_classes, size, batch_size, shuffle=False, cache=False)
            probs = predict_batches(model, dataset)
    return ForwardResult(probs, forward.engine, forward.fallback_reason, forward.threads,
                         time.perf_counter() - start)


def summarize_predictions(probs: np.ndarray, records: Sequence[ImageRecord],
                          class_names: Sequence[str], top_losses: int = TOP_LOSSES) -> dict:
    """Turns predicted probabilities into the evaluation report.

    Args:
        probs: `(N, C)` probabilities, row i for `records[i]`.
        records: the images with their true labels.
        class_names: names in label order.
        top_losses: how many highest-loss examples to list. Defaults to `TOP_LOSSES`.

    Returns:
        `{"accuracy", "n", "classes", "confusion" (rows = true, cols = predicted),
        "per_class": {name: {"precision", "recall", "support"}}, "top_losses": [{"path",
        "source", "true", "pred", "loss", "prob"}, ...]}`.
    """
    n_classes = len(class_names)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(records), n_classes):
        raise ValueError(f"Received probabilities of shape {probs.shape}; expected "
                         f"({len(records)}, {n_classes}).")
    true = np.array([r.label for r in records], dtype=np.int64)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        predicted, support = confusion[:, i].sum(), confusion[i, :].sum()
        per_class[name] = {
            "precision": float(confusion[i, i] / predicted) if predicted else 0.0,
            "recall": float(confusion[i, i] / support) if support else 0.0,
            "support": int(support),
        }
    losses = -np.log(np.clip(probs[np.arange(len(true)), true], EPSILON, 1.0))
    worst = np.argsort(-losses, kind="stable")[:top_losses]
    return {
        "accuracy": float((pred == true).mean()) if len(true) else 0.0,
        "n": int(len(true)),
        "classes": list(class_names),
        "confusion": confusion.tolist(),
        "per_class": per_class,
        "top_losses": [
            {
                "path": records[i].path,
                "source": records[i].source,
                "true": class_names[true[i]],
                "pred": class_names[pred[i]],
                "loss": float(losses[i]),
                "prob": float(probs[i, pred[i]]),
            }
            for i in worst
        ],
    }


def evaluate_model(model: keras.Model, records: Sequence[ImageRecord], class_names: Sequence[str],
                   batch_size: int = 32, *, engine: str | None = None) -> dict:
    """Evaluates a classifier on images.

    Args:
        model: pixels in [0, 255] -> probabilities over `class_names`.
        records: the images (e.g. a test split), labels indexing `class_names`.
        class_names: names in label order.
        batch_size: images per forward pass. Defaults to 32.
        engine: `"tf"`, `"litert"` or None (LiteRT, else TensorFlow). Defaults to None.

    Returns:
        The report from `summarize_predictions`, plus `"engine"`: the engine that ran.

    Raises:
        TransferLabError: no images, or the model's output does not match the classes.
    """
    if not records:
        raise TransferLabError("No images to evaluate on: the split is empty.")
    width = int(model.outputs[0].shape[-1])
    if width != len(class_names):
        raise TransferLabError(
            f"The model predicts {width} classes but the data has {len(class_names)}: "
            f"{', '.join(class_names)}."
        )
    run = predict_records_run(model, records, len(class_names), batch_size, engine=engine)
    return {**summarize_predictions(run.features, records, class_names), "engine": run.engine}


def load_thumbnail(path: str, side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    """A small upright RGB copy of a dataset image, for a gallery; None when it cannot be read.

    Galleries get pixels, not file paths: a path hands the file to Streamlit as it is (any size
    and format the dataset held), and a file that is gone by the time the result is shown (an
    unpacked upload or a converted image pruned from the cache, a run reopened elsewhere) breaks
    the whole page instead of one tile.

    Args:
        path: the record's `path` (what `tf.io.decode_image` read for training).
        side: the longest side of the thumbnail in pixels. Defaults to `THUMBNAIL_SIDE`.

    Returns:
        `(h, w, 3)` uint8 with `max(h, w) <= side`, or None (missing, unreadable, not an image).
    """
    from lib.images import open_image

    if side < 1:
        raise ValueError(f"Received `side={side}`; it must be a positive pixel count.")
    try:
        img, _ = open_image(path)
    except TransferLabError:
        return None
    img.thumbnail((side, side))
    return np.asarray(img, dtype=np.uint8)


def check_class_names(run_labels: Sequence[str], data_classes: Sequence[str], data_name: str) -> None:
    """Checks that a dataset has exactly the classes a run was trained on, in the same order.

    Raises:
        TransferLabError: the names differ; the message lists both.
    """
    if list(run_labels) != list(data_classes):
        raise TransferLabError(
            f"The classes of {data_name} ({', '.join(data_classes)}) do not match the run's labels "
            f"({', '.join(run_labels)}). Evaluate on data with the same class folders."
        )


def evaluation_records(result: Any) -> Sequence[ImageRecord]:
    """The images a training result was evaluated on (its test split, else validation).

    Args:
        result: a `lib.training.TrainResult` (its `metrics["evaluation"]["split"]` names the split).

    Returns:
        The split's records, in order; empty when the result has no split.
    """
    evaluation = result.metrics.get("evaluation") or {}
    if not result.split:
        return ()
    return getattr(result.split, evaluation.get("split", "val"), ())


def cell_records(records: Sequence[ImageRecord], predicted: Sequence[int], true_index: int,
                 pred_index: int) -> list[ImageRecord]:
    """The images of one confusion-matrix cell.

    Args:
        records: the evaluated images.
        predicted: the predicted class index of each, in the same order.
        true_index: the cell's row (true class).
        pred_index: the cell's column (predicted class).

    Returns:
        The records whose label is `true_index` and prediction `pred_index`.

    Raises:
        ValueError: `records` and `predicted` differ in length.
    """
    if len(records) != len(predicted):
        raise ValueError(f"Received {len(records)} records and {len(predicted)} predictions.")
    return [r for r, p in zip(records, predicted, strict=True)
            if r.label == true_index and int(p) == pred_index]


def count_classifier_params(backbone: Backbone, cut: str | None, head: HeadConfig,
                            num_classes: int) -> dict[str, int]:
    """Trainable (head) and frozen (body) parameters for these settings, built but never trained.

    Args:
        backbone: the loaded backbone (only read: the body shares its layers).
        cut: the cut point; None for the top feature layer.
        head: hidden units and dropout.
        num_classes: classes of the data (at least 2 are counted, as training needs).

    Returns:
        `{"trainable": head parameters, "non_trainable": body parameters}`.
    """
    from lib.models import build_body, build_head, count_params

    body = build_body(backbone, cut)
    built = build_head(tuple(body.outputs[0].shape[1:]), max(2, int(num_classes)), head)
    body_counts = count_params(body)
    return {"trainable": count_params(built)["trainable"],
            "non_trainable": body_counts["trainable"] + body_counts["non_trainable"]}


def make_preview_body(classifier: keras.Model) -> keras.Model:
    """A private copy of a trained classifier's body, to preview unfreezing on.

    The copy has its own layers, so `preview_unfreeze` never changes the model that predicts.
    """
    from lib.models import classifier_parts, copy_body

    return copy_body(classifier_parts(classifier)[0])


def preview_unfreeze(body: keras.Model, n_layers: int) -> list[dict]:
    """`layer_table` rows (bottom to top) after unfreezing the top `n_layers` of a private body.

    Args:
        body: a copy from `make_preview_body` (its trainable flags are changed).
        n_layers: layers to unfreeze, counted as `lib.models.unfreeze_top` counts them.

    Returns:
        Rows with `name, type, trainable, is_batchnorm, params`.
    """
    from lib.models import layer_table, unfreeze_top

    unfreeze_top(body, n_layers=n_layers)
    return layer_table(body)
