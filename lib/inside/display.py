"""Images for people: amplified perturbations, PNG bytes, and the built-in sample photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lib.errors import TransferLabError
from lib.images import resize_center_crop
from lib.inside.canvas import deprocess

# Built-in photos bundled with scikit-image (offline): display name -> `skimage.data` function.
SAMPLES = {"Chelsea the cat": "chelsea", "A cup of coffee": "coffee", "An astronaut": "astronaut"}
# The perturbation's largest |value| is drawn this far from mid-grey.
AMPLIFIED_RANGE = 127.0


def amplify_perturbation(delta: np.ndarray) -> tuple[np.ndarray, float]:
    """Makes a perturbation visible: mid-grey plus `delta` times a gain.

    Args:
        delta: (H, W, 3) perturbation in pixel units.

    Returns:
        `(image, gain)`: a (H, W, 3) uint8 image `128 + gain * delta`, and the gain (1 when delta is
        zero), which the caption should state.
    """
    peak = float(np.abs(delta).max())
    gain = AMPLIFIED_RANGE / peak if peak > 0 else 1.0
    return deprocess(128.0 + gain * np.asarray(delta, np.float64)), gain


def png_bytes(image: np.ndarray) -> bytes:
    """Encodes (H, W, 3) pixels in [0, 255] as PNG bytes (clipped and rounded)."""
    buffer = io.BytesIO()
    Image.fromarray(deprocess(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_image(name: str, size: int | None = None) -> np.ndarray:
    """A built-in photo as float32 pixels in [0, 255].

    Args:
        name: a key of `SAMPLES` or its `skimage.data` name ("chelsea", "coffee", "astronaut").
        size: resize the shorter side and centre-crop to this square. Defaults to the full photo.

    Raises:
        TransferLabError: unknown name.
    """
    function = SAMPLES.get(name, name)
    if function not in SAMPLES.values():
        raise TransferLabError(f"Received `sample={name}`; choose one of {', '.join(SAMPLES)}.")
    from skimage import data

    img = Image.fromarray(getattr(data, function)()).convert("RGB")
    if size is not None:
        img = resize_center_crop(img, size)
    return np.asarray(img, np.float32)
