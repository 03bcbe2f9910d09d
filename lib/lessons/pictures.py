"""Pictures for lessons: feature maps as a mosaic a class can read."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lib.inside.canvas import deprocess

TILE = 96  # each feature map is shown this many pixels wide
TILE_GAP = 4


def normalise_map(channel: np.ndarray) -> np.ndarray:
    """One (h, w) activation map stretched to [0, 255] (a flat map becomes mid-grey)."""
    low, high = float(channel.min()), float(channel.max())
    if high - low < 1e-8:
        return np.full(channel.shape, 128.0)
    return 255.0 * (channel - low) / (high - low)


def strongest_channels(maps: np.ndarray, count: int) -> list[int]:
    """The `count` channels of (h, w, C) with the largest mean activation, strongest first."""
    means = maps.reshape(-1, maps.shape[-1]).mean(0)  # (C,)
    return [int(c) for c in np.argsort(-means)[:count]]


def make_feature_mosaic(maps: np.ndarray, channels: list[int], columns: int = 4) -> np.ndarray:
    """Feature maps side by side in a grid, each enlarged to `TILE` pixels (nearest neighbour, so
    a 7×7 map shows its 49 cells).

    Args:
        maps: (h, w, C) activations of one image.
        channels: which channels to show, in order.
        columns: tiles per row. Defaults to 4.

    Returns:
        (H, W, 3) uint8 grey mosaic.
    """
    rows = -(-len(channels) // columns)
    side = TILE + TILE_GAP
    mosaic = np.full((rows * side - TILE_GAP, columns * side - TILE_GAP), 255, np.uint8)
    for n, c in enumerate(channels):
        tile = Image.fromarray(deprocess(normalise_map(maps[..., c]))).resize(
            (TILE, TILE), Image.Resampling.NEAREST)
        r, col = divmod(n, columns)
        mosaic[r * side:r * side + TILE, col * side:col * side + TILE] = np.asarray(tile)
    return np.repeat(mosaic[..., None], 3, axis=-1)
