"""The canvas of an ideal image: its settings, parameterisation, regularisers and random views.

* parameterisation: `"fft"` (Lucid's): the image is a spectrum scaled by 1/frequency, in decorrelated
  colour, through a sigmoid, so every step changes low frequencies first and pixels stay in [0, 255];
  `"pixels"`: the pixels themselves, clipped to [0, 255] after every step;
* total variation (penalises neighbouring-pixel differences), L2 decay towards grey;
* each step, a random jitter (translation), scale and rotation of the image, applied by one
  differentiable affine resample that also resizes the canvas to the model's input size, averaged
  over `batch` random views;
* optional blur every N steps.

Everything here is model-free; the ascent loop that uses it is `lib.inside.ideal`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.errors import TransferLabError
from lib.lazy import lazy_module

tf = lazy_module("tensorflow")  # imported at first use (see lib.lazy)

PARAMETERIZATIONS = ("fft", "pixels")
MAX_IDEAL_STEPS = 5000
MIN_SIZE, MAX_SIZE = 16, 1024
# Lucid's colour correlation (square root of the ImageNet colour covariance, via its SVD).
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(
    np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)
)
# Lucid divides the inverse FFT by 4 so that the initial image has a gentle contrast.
FFT_IMAGE_SCALE = 4.0
FFT_INIT_STD = 0.01
PIXEL_INIT_STD = 0.1
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class IdealSettings:
    """How an ideal image is made. The defaults are tuned so Lite0 images transfer to Lite1/Lite2.

    Attributes:
        steps: optimisation steps. Defaults to 200.
        size: canvas side in pixels; None uses the model's input size.
        tv_weight: total-variation weight (TV of the [0, 1] image, mean over pixels). Defaults to 100.
        l2_weight: L2 decay weight (mean squared distance from grey, [0, 1] units). Defaults to 0.
        jitter: max random translation in canvas pixels each step. Defaults to 16.
        scale: random zoom in [1 - scale, 1 + scale] each step. Defaults to 0.2.
        rotation: random rotation in [-rotation, rotation] degrees each step. Defaults to 10.
        blur_every: blur the image every N steps (0 = never). Defaults to 0.
        blur_sigma: blur standard deviation in canvas pixels. Defaults to 0.5.
        learning_rate: Adam step. Defaults to 0.05 (fft); use ~0.01 for pixels.
        parameterization: "fft" or "pixels". Defaults to "fft".
        batch: random views averaged per step. Defaults to 1.
        frame_every: report a frame every N steps (0 = only the last). Defaults to 10.
        seed: seeds the start and the random transforms. Defaults to 0.
    """

    steps: int = 200
    size: int | None = None
    tv_weight: float = 100.0
    l2_weight: float = 0.0
    jitter: int = 16
    scale: float = 0.2
    rotation: float = 10.0
    blur_every: int = 0
    blur_sigma: float = 0.5
    learning_rate: float = 0.05
    parameterization: str = "fft"
    batch: int = 1
    frame_every: int = 10
    seed: int = 0


# The seed lesson's baseline: plain gradient ascent on pixels, no regulariser, no transforms.
UNREGULARISED = IdealSettings(
    tv_weight=0.0, l2_weight=0.0, jitter=0, scale=0.0, rotation=0.0, blur_every=0,
    learning_rate=0.01, parameterization="pixels",
)


def validate_settings(settings: IdealSettings) -> None:
    """Checks ideal-image settings, echoing the bad value.

    Raises:
        TransferLabError: a value out of range.
    """
    s = settings
    checks = [
        (1 <= s.steps <= MAX_IDEAL_STEPS, f"`steps={s.steps}`; use 1 to {MAX_IDEAL_STEPS}"),
        (s.size is None or MIN_SIZE <= s.size <= MAX_SIZE,
         f"`size={s.size}`; use {MIN_SIZE} to {MAX_SIZE} pixels"),
        (s.tv_weight >= 0, f"`tv_weight={s.tv_weight}`; it must be >= 0"),
        (s.l2_weight >= 0, f"`l2_weight={s.l2_weight}`; it must be >= 0"),
        (s.jitter >= 0, f"`jitter={s.jitter}`; it must be >= 0 pixels"),
        (0 <= s.scale < 1, f"`scale={s.scale}`; use 0 to 0.9"),
        (0 <= s.rotation <= 180, f"`rotation={s.rotation}`; use 0 to 180 degrees"),
        (s.blur_every >= 0, f"`blur_every={s.blur_every}`; it must be >= 0"),
        (s.blur_sigma > 0, f"`blur_sigma={s.blur_sigma}`; it must be > 0"),
        (s.learning_rate > 0, f"`learning_rate={s.learning_rate}`; it must be > 0"),
        (s.parameterization in PARAMETERIZATIONS,
         f"`parameterization={s.parameterization}`; choose {' or '.join(PARAMETERIZATIONS)}"),
        (1 <= s.batch <= 16, f"`batch={s.batch}`; use 1 to 16"),
        (s.frame_every >= 0, f"`frame_every={s.frame_every}`; it must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise TransferLabError(f"Received {message}.")


# ----- image parameterisations -------------------------------------------------------------------


def spectrum_scale(size: int) -> np.ndarray:
    """Lucid's 1/frequency scaling of an rfft2d spectrum, shape (size, size // 2 + 1)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[: size // 2 + 1][None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(freqs, 1.0 / size) * size).astype(np.float32)


def render(param: tf.Tensor, scale: tf.Tensor, parameterization: str) -> tf.Tensor:
    """Turns the optimised parameter into pixels, (size, size, 3) in [0, 255].

    Args:
        param: "fft": (2, 3, size, size // 2 + 1) real and imaginary parts; "pixels": (size, size, 3)
            in [0, 1].
        scale: the spectrum scaling (size, size // 2 + 1), unused for pixels.
        parameterization: "fft" or "pixels".
    """
    if parameterization == "pixels":
        return tf.clip_by_value(param, 0.0, 1.0) * 255.0
    spectrum = tf.complex(param[0] * scale, param[1] * scale)  # (3, size, size // 2 + 1)
    size = tf.shape(param)[2]
    channels = tf.signal.irfft2d(spectrum, fft_length=[size, size])  # (3, size, size)
    image = tf.transpose(channels, (1, 2, 0)) / FFT_IMAGE_SCALE  # (size, size, 3)
    image = tf.tensordot(image, tf.constant(COLOR_CORRELATION.T), axes=1)  # decorrelated colour
    return tf.sigmoid(image) * 255.0


def initial_param(size: int, settings: IdealSettings, start: np.ndarray | None,
                  rng: np.random.Generator) -> np.ndarray:
    """The starting parameter: small noise, or the inverse of `render` for a start image.

    Args:
        size: canvas side.
        settings: uses `parameterization`.
        start: optional (size, size, 3) pixels in [0, 255].
        rng: random source.
    """
    if settings.parameterization == "pixels":
        if start is not None:
            return (np.asarray(start, np.float32) / 255.0).astype(np.float32)
        return np.clip(0.5 + rng.normal(0, PIXEL_INIT_STD, (size, size, 3)), 0, 1).astype(np.float32)
    if start is None:
        return rng.normal(0, FFT_INIT_STD, (2, 3, size, size // 2 + 1)).astype(np.float32)
    p = np.clip(np.asarray(start, np.float64) / 255.0, 1e-3, 1 - 1e-3)
    logit = np.log(p / (1 - p))  # (size, size, 3) before the sigmoid
    decorrelated = logit @ np.linalg.inv(COLOR_CORRELATION.T.astype(np.float64))
    channels = np.transpose(decorrelated * FFT_IMAGE_SCALE, (2, 0, 1))  # (3, size, size)
    spectrum = np.fft.rfft2(channels) / spectrum_scale(size)
    return np.stack([spectrum.real, spectrum.imag]).astype(np.float32)


# ----- regularisers and transforms ---------------------------------------------------------------


def total_variation(image: tf.Tensor) -> tf.Tensor:
    """Mean absolute difference between neighbouring pixels, in [0, 1] units.

    Args:
        image: (..., H, W, 3) pixels in [0, 255].

    Returns:
        A scalar (mean over the batch).
    """
    # Differences via tf.roll with the wrapped-around first row/column masked out: the same value
    # as slicing x[1:] - x[:-1], at a third of the cost (the gradient of a strided slice is slow).
    x = image / 255.0
    height, width = tf.shape(x)[-3], tf.shape(x)[-2]
    first_row = tf.cast(tf.range(height) > 0, x.dtype)[:, None, None]  # (H, 1, 1)
    first_col = tf.cast(tf.range(width) > 0, x.dtype)[:, None]  # (W, 1)
    dy = tf.abs(x - tf.roll(x, 1, axis=-3)) * first_row  # (..., H, W, 3)
    dx = tf.abs(x - tf.roll(x, 1, axis=-2)) * first_col  # (..., H, W, 3)
    h, w = tf.cast(height, x.dtype), tf.cast(width, x.dtype)
    return tf.reduce_mean(dy) * h / (h - 1.0) + tf.reduce_mean(dx) * w / (w - 1.0)


def l2_decay(image: tf.Tensor) -> tf.Tensor:
    """Mean squared distance from mid-grey, in [0, 1] units. `image`: (..., H, W, 3) in [0, 255]."""
    return tf.reduce_mean(tf.square(image / 255.0 - 0.5))


def affine_transforms(count: int, canvas: int, out: int, settings: IdealSettings,
                      rng: np.random.Generator) -> np.ndarray:
    """Random jitter / scale / rotation as projective-transform rows for `ImageProjectiveTransformV3`.

    Each row maps an output pixel (x, y) of the model-sized view to a canvas position:
    `canvas_centre + (canvas / out) / zoom * R(angle) @ (p - out_centre) + shift`.

    Returns:
        (count, 8) float32.
    """
    ratio = canvas / out
    zoom = 1.0 + rng.uniform(-settings.scale, settings.scale, count)
    angle = np.deg2rad(rng.uniform(-settings.rotation, settings.rotation, count))
    shift = rng.integers(-settings.jitter, settings.jitter + 1, (count, 2)) if settings.jitter else (
        np.zeros((count, 2)))
    c_in, c_out = (canvas - 1) / 2.0, (out - 1) / 2.0
    a = ratio / zoom
    a0, a1 = a * np.cos(angle), -a * np.sin(angle)
    b0, b1 = a * np.sin(angle), a * np.cos(angle)
    a2 = c_in - a0 * c_out - a1 * c_out + shift[:, 0]
    b2 = c_in - b0 * c_out - b1 * c_out + shift[:, 1]
    zeros = np.zeros(count)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(np.float32)


def apply_transforms(image: tf.Tensor, transforms: tf.Tensor, out: int) -> tf.Tensor:
    """Resamples `batch` random views of one image (differentiable, bilinear, reflected borders).

    Args:
        image: (size, size, 3) pixels.
        transforms: (B, 8) rows from `affine_transforms`.
        out: the model's input side.

    Returns:
        (B, out, out, 3) pixels.
    """
    batch = tf.shape(transforms)[0]
    images = tf.repeat(image[None], batch, axis=0)  # (B, size, size, 3)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([out, out]),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="REFLECT",
    )


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blurs (size, size, 3) pixels with a separable Gaussian (reflected borders)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(t * padded[i:i + image.shape[0], :, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + image.shape[1], :] for i, t in enumerate(taps)).astype(np.float32)


def deprocess(image: np.ndarray | tf.Tensor) -> np.ndarray:
    """Pixels in [0, 255] (any float) -> a displayable (H, W, 3) uint8 array."""
    return np.clip(np.rint(np.asarray(image, np.float64)), 0, 255).astype(np.uint8)


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes (H, W, 3) pixels to (size, size, 3) with antialiased bilinear resampling."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.asarray(image, np.float32)
    resized = tf.image.resize(np.asarray(image, np.float32)[None], (size, size), antialias=True)
    return tf.clip_by_value(resized[0], 0.0, 255.0).numpy()
