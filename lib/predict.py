"""Top-k prediction on image files, with an ImageNet backbone or a trained run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from lib.backbones.imagenet import top_k
from lib.images import load_image

PREDICT_BATCH = 16


def predict_probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Runs a classifier on pixels.

    Args:
        model: any TransferLab classifier (pixels in [0, 255] -> probabilities).
        images: float32 array `(N, S, S, 3)` of pixels in [0, 255].

    Returns:
        Probabilities, shape `(N, num_classes)`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Received images of shape {images.shape}; expected (N, S, S, 3).")
    out = [np.asarray(model(images[i : i + PREDICT_BATCH], training=False))
           for i in range(0, len(images), PREDICT_BATCH)]
    return np.concatenate(out, axis=0)


def input_size_of(model: keras.Model) -> int:
    """The square input side a classifier expects."""
    return int(model.inputs[0].shape[1])


def predict_files(
    model: keras.Model, labels: Sequence[str], sources: Sequence[str | Path | bytes], k: int = 5
) -> list[list[dict]]:
    """Loads images (shorter side resized, centre crop) and returns the top-k of each.

    Args:
        model: a classifier taking pixels in [0, 255].
        labels: its class names.
        sources: file paths or file bytes.
        k: classes per image. Defaults to 5.

    Returns:
        One list of `{"index", "label", "prob"}` per image.

    Raises:
        TransferLabError: an image cannot be read.
    """
    size = input_size_of(model)
    batch = np.stack([load_image(s, size) for s in sources])
    probs = predict_probabilities(model, batch)
    return [top_k(p, labels, k) for p in probs]
