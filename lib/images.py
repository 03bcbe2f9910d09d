"""Reading any image a person might hand us into a clean RGB uint8 array.

Every path into a model (predict, the data pipeline, attacks) goes through `load_image`, so odd
files are handled once: EXIF rotation, grayscale/RGBA/palette/CMYK/16-bit conversion, decompression
bombs and truncated files.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lib.errors import TransferLabError

# Bigger than any photo a phone takes (~50 MP), small enough that decoding cannot exhaust memory.
MAX_PIXELS = 80_000_000
# Files past this size are refused before PIL even opens them.
MAX_FILE_BYTES = 64 * 1024 * 1024
# Images over this many pixels are decoded one at a time in a process (12 MP: a phone photo).
LARGE_PIXELS = 12_000_000
LARGE_DECODES = threading.Semaphore(1)
# Rows converted at once from 16-bit or float to 8-bit (bounds the float copy).
RESCALE_ROWS = 256
# EfficientNet-Lite's own ImageNet evaluation crops the centre size/(size+32) of the shorter side,
# then resizes (bicubic): 224/256 at 224 px. A backbone's ImageNet classifier predicts on that crop.
EVAL_CROP_PADDING = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class ImageInfo:
    """What `load_image` had to do to a file: its original mode and whether it was converted."""

    mode: str
    size: tuple[int, int]
    converted: bool


def rescale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Maps a 16-bit or float image's real range to 0..255 (instead of clipping to white).

    Works in bands of rows, so the peak memory is the 8-bit output plus one float32 band, not
    several float64 copies of the whole image (a 16-bit PNG of a few hundred KB can hold tens of
    megapixels).
    """
    lo, hi = float(arr.min()), float(arr.max())
    out = np.zeros(arr.shape[:2], dtype=np.uint8)
    if hi <= lo:
        return out
    scale = np.float32(255.0 / (hi - lo))
    for start in range(0, arr.shape[0], RESCALE_ROWS):
        band = arr[start : start + RESCALE_ROWS].astype(np.float32)
        band -= np.float32(lo)
        band *= scale
        out[start : start + RESCALE_ROWS] = np.clip(np.rint(band, out=band), 0, 255)
    return out


def to_rgb(img: Image.Image) -> tuple[Image.Image, bool]:
    """Converts any PIL mode to 8-bit RGB.

    Args:
        img: an opened PIL image in any mode.

    Returns:
        `(rgb_image, converted)`; `converted` is True when the mode was not already RGB.
    """
    if img.mode == "RGB":
        return img, False
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(rescale_to_uint8(np.asarray(img)), "L").convert("RGB"), True
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as a browser would show them, not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), True
    return img.convert("RGB"), True


def open_image(source: str | Path | bytes) -> tuple[Image.Image, ImageInfo]:
    """Opens and fully decodes an image, upright and in RGB.

    Args:
        source: a file path or the file's bytes.

    Returns:
        `(rgb_image, info)`.

    Raises:
        TransferLabError: the file is missing, too large, not an image, or corrupt.
    """
    name = "uploaded image" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise TransferLabError(f"Image not found: {name}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise TransferLabError(
                f"{name} is {path.stat().st_size / 2**20:.0f} MB; images over "
                f"{MAX_FILE_BYTES // 2**20} MB are refused."
            )
        data = path.read_bytes()
    else:
        data = source
        if len(data) > MAX_FILE_BYTES:
            raise TransferLabError(f"The {name} is over {MAX_FILE_BYTES // 2**20} MB.")
    if not data:
        raise TransferLabError(f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x the pixel limit; we refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            mode, size = img.mode, img.size
            # Scans decode in several threads: one large image at a time bounds the peak memory.
            with LARGE_DECODES if size[0] * size[1] > LARGE_PIXELS else contextlib.nullcontext():
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb, converted = to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TransferLabError(
            f"{name} is too large to decode safely (over {MAX_PIXELS:,} pixels)."
        ) from e
    except UnidentifiedImageError as e:
        raise TransferLabError(f"{name} is not an image PIL can read.") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise TransferLabError(f"{name} is corrupt or truncated ({e}).") from e
    if size[0] < 1 or size[1] < 1:
        raise TransferLabError(f"{name} has no pixels ({size[0]}x{size[1]}).")
    return rgb, ImageInfo(mode=mode, size=size, converted=converted)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resizes so the shorter side is `size`, then crops the centre `size`x`size` square.

    Args:
        img: an RGB PIL image.
        size: the output side in pixels.

    Returns:
        A `size`x`size` RGB image.
    """
    if size < 1:
        raise ValueError(f"Received `size={size}`; it must be a positive pixel count.")
    return ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5))


def eval_center_crop(img: Image.Image, size: int, crop_padding: int = EVAL_CROP_PADDING) -> Image.Image:
    """EfficientNet's evaluation crop: the centre `size/(size+crop_padding)` of the shorter side,
    as a square, resized (bicubic) to `size`x`size`.

    Args:
        img: an RGB PIL image.
        size: the output side in pixels.
        crop_padding: the margin the crop leaves, in output pixels. Defaults to
            `EVAL_CROP_PADDING` (32: the centre 224/256 at 224 px).

    Returns:
        A `size`x`size` RGB image.
    """
    if size < 1 or crop_padding < 0:
        raise ValueError(f"Received `size={size}`, `crop_padding={crop_padding}`; use size >= 1 "
                         "and crop_padding >= 0.")
    width, height = img.size
    side = max(1, int(round(size / (size + crop_padding) * min(width, height))))
    left, top = (width - side) // 2, (height - side) // 2
    return img.resize((size, size), Image.Resampling.BICUBIC,
                      box=(left, top, left + side, top + side))


def load_image(source: str | Path | bytes, size: int | None = None, *,
               crop_padding: int | None = None) -> np.ndarray:
    """Loads an image as a float32 array of pixels in [0, 255].

    Args:
        source: a file path or the file's bytes.
        size: if given, resize the shorter side to `size` and centre-crop to a square.
            Defaults to None (keep the original size).
        crop_padding: with `size`, use the evaluation crop instead (`eval_center_crop` with this
            margin, e.g. `EVAL_CROP_PADDING` for a backbone's ImageNet classifier). Defaults to
            None (the plain resize-and-crop the data pipeline uses).

    Returns:
        A float32 array of shape `(H, W, 3)`.
    """
    img, _ = open_image(source)
    if size is not None and crop_padding is not None:
        img = eval_center_crop(img, size, crop_padding)
    elif size is not None:
        img = resize_center_crop(img, size)
    return np.asarray(img, dtype=np.float32)


def save_image(array: np.ndarray, path: str | Path) -> Path:
    """Writes a `(H, W, 3)` array of pixels in [0, 255] as PNG (clipped and rounded).

    Args:
        array: pixel values, any float or int dtype.
        path: where to write; parent folders are created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.clip(np.rint(np.asarray(array, dtype=np.float64)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG")
    return path
