"""The 1000 ImageNet class names, offline, and top-k decoding."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lib.errors import TransferLabError

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 class names in Keras' index order (`keras.applications` `decode_predictions`)."""
    return tuple(CLASSES_FILE.read_text().splitlines())


def top_k(probs: np.ndarray, labels: list[str] | tuple[str, ...], k: int = 5) -> list[dict]:
    """Decodes one probability vector.

    Args:
        probs: shape `(num_classes,)`.
        labels: class names, same length as `probs`.
        k: how many to return. Defaults to 5.

    Returns:
        `[{"index": int, "label": str, "prob": float}, ...]`, most likely first.
    """
    probs = np.asarray(probs)
    if probs.ndim != 1 or len(labels) != probs.shape[0]:
        raise ValueError(f"Received probs of shape {probs.shape} for {len(labels)} labels.")
    order = np.argsort(-probs)[: max(1, min(k, probs.shape[0]))]
    return [{"index": int(i), "label": labels[i], "prob": float(probs[i])} for i in order]


def resolve_class(value: str | int, labels: list[str] | tuple[str, ...]) -> int:
    """Turns a class index or name (case-insensitive, `_` or spaces) into an index.

    Raises:
        TransferLabError: out of range, or no such name (the message suggests close names).
    """
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise TransferLabError(f"Class index {index} is out of range 0..{len(labels) - 1}.")
        return index
    wanted = text.replace("_", " ").lower()
    for i, name in enumerate(labels):
        if name.replace("_", " ").lower() == wanted:
            return i
    close = [n for n in labels if wanted in n.lower()][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise TransferLabError(f"No class named `{text}`.{hint}")
