"""Every odd image a person might hand us becomes clean RGB pixels, or a clear message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lib.errors import TransferLabError
from lib.images import MAX_PIXELS, load_image, open_image, resize_center_crop, save_image


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "img, fmt",
    [
        (Image.new("L", (20, 10), 128), "PNG"),
        (Image.new("RGBA", (20, 10), (255, 0, 0, 128)), "PNG"),
        (Image.new("P", (20, 10), 3), "PNG"),
        (Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"),
        (Image.fromarray(np.arange(200, dtype=np.uint16).reshape(10, 20) * 300), "PNG"),
        (Image.new("1", (20, 10), 1), "BMP"),
    ],
    ids=["grayscale", "rgba", "palette", "cmyk", "16-bit", "1-bit"],
)
def test_odd_modes_become_rgb_and_are_flagged(img, fmt):
    rgb, info = open_image(encode(img, fmt))
    assert rgb.mode == "RGB" and rgb.size == (20, 10)
    assert info.converted and info.mode == img.mode
    pixels = np.asarray(rgb)
    assert pixels.min() >= 0 and pixels.max() <= 255


def test_sixteen_bit_keeps_its_range_instead_of_saturating():
    ramp = Image.fromarray(np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    pixels = np.asarray(open_image(encode(ramp))[0])[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 50


def test_transparent_pixels_become_white_not_black():
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(open_image(encode(clear))[0]).min() == 255


def test_rgb_is_untouched():
    rgb, info = open_image(encode(Image.new("RGB", (8, 8), (1, 2, 3))))
    assert not info.converted and np.asarray(rgb)[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")[:200], "corrupt"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_bytes_get_a_message(data, message):
    with pytest.raises(TransferLabError, match=message):
        open_image(data)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(TransferLabError, match="nope.png"):
        open_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused():
    side = int(MAX_PIXELS**0.5) + 100  # just over the limit: PIL alone would only warn
    with pytest.raises(TransferLabError, match="too large"):
        open_image(encode(Image.new("1", (side, side))))


def test_resize_center_crop_keeps_the_middle():
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # white middle third
    out = np.asarray(resize_center_crop(Image.fromarray(wide), 10))
    assert out.shape == (10, 10, 3) and out.mean() > 250


def test_load_and_save_round_trip(tmp_path):
    pixels = np.random.default_rng(0).uniform(0, 255, (12, 12, 3))
    path = save_image(pixels, tmp_path / "x.png")
    loaded = load_image(path)
    assert loaded.dtype == np.float32 and np.abs(loaded - np.rint(pixels)).max() == 0
    assert load_image(path, size=8).shape == (8, 8, 3)


def test_16_bit_conversion_peak_memory_is_bounded_per_pixel():
    """A big 16-bit image converts with about 1-2 bytes of extra memory per pixel, not ~30."""
    import tracemalloc

    from PIL import Image

    from lib.images import to_rgb

    side = 2000
    gradient = (np.arange(side * side, dtype=np.uint32) % 65536).astype(np.uint16).reshape(side, side)
    img = Image.fromarray(gradient)
    assert img.mode.startswith("I;16")
    tracemalloc.start()
    rgb, converted = to_rgb(img)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert converted and rgb.mode == "RGB" and rgb.size == (side, side)
    values = np.asarray(rgb)[..., 0]
    assert values.min() == 0 and values.max() == 255  # the full range is used
    assert peak / (side * side) < 8, f"{peak / (side * side):.1f} bytes per pixel"
