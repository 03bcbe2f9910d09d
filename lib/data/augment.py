"""Keras augmentation layers for training, and a preview for the Data page.

Every layer keeps pixels in [0, 255] (models take raw pixels), so `RandomContrast` is told the
value range. Each layer gets its own seed derived from one seed, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lib.errors import TransferLabError
from lib.lazy import lazy_module

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

PIXEL_RANGE = (0.0, 255.0)
# Rotation is a fraction of a full turn; more than half a turn repeats itself.
MAX_ROTATION = 0.5
# Zoom, translation and contrast are fractions of the image size or of the contrast.
MAX_FRACTION = 0.9


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; 0 (or False) turns a layer off.

    Attributes:
        flip: random horizontal flips. Defaults to True.
        rotation: max rotation as a fraction of a full turn (0.1 = 36 degrees). Defaults to 0.1.
        zoom: max zoom in or out as a fraction of the size. Defaults to 0.1.
        translation: max shift as a fraction of the size. Defaults to 0.1.
        contrast: max contrast change as a fraction. Defaults to 0.1.
    """

    flip: bool = True
    rotation: float = 0.1
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1

    @property
    def enabled(self) -> bool:
        """True when at least one layer is on."""
        return bool(self.flip or self.rotation or self.zoom or self.translation or self.contrast)

    def to_dict(self) -> dict:
        """Returns the settings as plain data (for run configs)."""
        return asdict(self)


def validate_config(config: AugmentConfig) -> None:
    """Checks each strength is in range, echoing a bad value.

    Raises:
        TransferLabError: a strength is negative or too large.
    """
    limits = {
        "rotation": MAX_ROTATION,
        "zoom": MAX_FRACTION,
        "translation": MAX_FRACTION,
        "contrast": MAX_FRACTION,
    }
    for name, limit in limits.items():
        value = getattr(config, name)
        if not 0.0 <= float(value) <= limit:
            raise TransferLabError(f"Received `{name}={value}`; it must be between 0 and {limit}.")


def build_augmentation(config: AugmentConfig, seed: int = 0) -> keras.Sequential:
    """Builds the augmentation model from a config.

    Args:
        config: which layers, how strong.
        seed: base seed; layer i uses `seed + i`. Defaults to 0.

    Returns:
        A `keras.Sequential` mapping pixels (B, S, S, 3) in [0, 255] to augmented pixels, same
        shape and range. With every layer off it is the identity.

    Raises:
        TransferLabError: a strength is out of range.
    """
    validate_config(config)
    layers: list[keras.layers.Layer] = []
    if config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.rotation:
        layers.append(
            keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed + 1)
        )
    if config.zoom:
        layers.append(
            keras.layers.RandomZoom((-config.zoom, config.zoom), fill_mode="reflect", seed=seed + 2)
        )
    if config.translation:
        layers.append(
            keras.layers.RandomTranslation(
                config.translation, config.translation, fill_mode="reflect", seed=seed + 3
            )
        )
    if config.contrast:
        layers.append(
            keras.layers.RandomContrast(config.contrast, value_range=PIXEL_RANGE, seed=seed + 4)
        )
    if not layers:
        layers.append(keras.layers.Identity())
    return keras.Sequential(layers, name="augmentation")


def augment_preview(
    image: np.ndarray, config: AugmentConfig, n: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """Makes `n` augmented versions of one image, for a preview grid.

    Args:
        image: (S, S, 3) pixels in [0, 255].
        config: the augmentation settings.
        n: how many versions. Defaults to 8.
        seed: the seed. Defaults to 0.

    Returns:
        `n` float32 arrays (S, S, 3) in [0, 255].
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise TransferLabError(f"Received an image of shape {image.shape}; expected (S, S, 3).")
    if n < 1:
        raise TransferLabError(f"Received `n={n}`; ask for at least 1 preview.")
    augmentation = build_augmentation(config, seed=seed)
    batch = np.repeat(image[None], n, axis=0)
    out = keras.ops.convert_to_numpy(augmentation(batch, training=True))
    return [np.clip(x, *PIXEL_RANGE).astype(np.float32) for x in out]
