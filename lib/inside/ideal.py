"""Ideal class images: gradient ascent on the input until the network sees the class.

Plain gradient ascent on pixels reaches p ~ 1 for any class within a few hundred steps, yet the image
stays coloured noise: many inputs convince a network. The regularisers here make the result look like
the class to *other* networks too (our measurable proxy for "a person can recognise it"):

* parameterisation: `"fft"` (Lucid's): the image is a spectrum scaled by 1/frequency, in decorrelated
  colour, through a sigmoid, so every step changes low frequencies first and pixels stay in [0, 255];
  `"pixels"`: the pixels themselves, clipped to [0, 255] after every step;
* total variation (penalises neighbouring-pixel differences), L2 decay towards grey;
* each step, a random jitter (translation), scale and rotation of the image, applied by one
  differentiable affine resample that also resizes the canvas to the model's input size, averaged
  over `batch` random views;
* optional blur every N steps.

The objective is a class logit (`class_index`) or the mean of one channel at a layer (`layer`,
`channel`). The loop reports through `on_step(dict)` and `on_frame(dict)`, and stops on `stop_event`.

What the defaults were chosen on (Lite0, 200 steps, espresso, Lite2's probability of espresso for
the Lite0 image): plain pixels without regularisers 0.00; pixels + transforms 0.06-0.31 whatever
the TV weight; FFT + transforms with TV 0 / 30 / 100 over seeds 0-3: 0.42-0.83 / 0.21-0.86 /
0.55-0.91. The 1/f spectrum and the random transforms do most of the work; TV 100 halves the total
variation (0.17 -> 0.09, visibly smoother) and gave the best worst case. Averaging two views per
step (`batch=2`) did not help enough to pay for its time. See bench/look_inside.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import keras
import numpy as np
import tensorflow as tf

from lib.errors import TransferLabError
from lib.inside.probe import ModelProbe

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


@dataclass(frozen=True)
class IdealResult:
    """A finished (or stopped) ideal image.

    Attributes:
        image: (size, size, 3) float32 pixels in [0, 255].
        prob: the model's probability of the class for the image, resized to the input size (for a
            channel objective, of the model's top class).
        class_index: the class, or None for a channel objective.
        objective: per step, the objective on that step's random views (logit or channel mean).
        probs: per step, the mean class probability on that step's random views.
        frames: `[(step, (size, size, 3) uint8), ...]` every `frame_every` steps and the last.
        steps: steps done (fewer than asked when stopped).
        seconds: wall time of the loop.
        settings: the settings used.
    """

    image: np.ndarray = field(repr=False)
    prob: float
    class_index: int | None
    objective: list[float] = field(repr=False)
    probs: list[float] = field(repr=False)
    frames: list[tuple[int, np.ndarray]] = field(repr=False)
    steps: int
    seconds: float
    settings: IdealSettings


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


def identity_transform(canvas: int, out: int) -> np.ndarray:
    """The transform row that only resizes the canvas to the model's input size. Shape (1, 8)."""
    plain = IdealSettings(jitter=0, scale=0.0, rotation=0.0)
    return affine_transforms(1, canvas, out, plain, np.random.default_rng(0))


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


# ----- the compiled step -------------------------------------------------------------------------


def make_objective_model(probe: ModelProbe, layer: str | None) -> keras.Model:
    """Pixels -> scores (class objective) or -> the layer's output (channel objective)."""
    return probe.scores if layer is None else probe.layer_model(layer)


def make_ascent_step(probe: ModelProbe, parameterization: str, layer: str | None) -> Callable:
    """Compiles one regularised gradient-ascent step with Adam (traced once per canvas/batch shape)."""
    objective_model = make_objective_model(probe, layer)
    scores_model = probe.scores
    out = probe.input_size

    @tf.function(reduce_retracing=True)
    def gradient_ascent_step(param, m, v, t, scale, transforms, target, channel, weights, lr):
        # param, m, v: the parameter and its Adam moments (same shape); t: scalar step (1-based);
        # transforms: (B, 8); target: scalar class; channel: scalar channel;
        # weights: (2,) = [tv_weight, l2_weight]; lr: scalar learning rate.
        with tf.GradientTape() as tape:
            tape.watch(param)
            image = render(param, scale, parameterization)  # (size, size, 3)
            views = apply_transforms(image, transforms, out)  # (B, out, out, 3)
            if layer is None:
                logits = objective_model(views, training=False)  # (B, K)
                activation = tf.reduce_mean(logits[:, target])
            else:
                maps = objective_model(views, training=False)  # (B, h, w, C) or (B, C)
                activation = tf.reduce_mean(tf.gather(maps, channel, axis=-1))
                logits = scores_model(views, training=False)
            loss = (-activation + weights[0] * total_variation(image)
                    + weights[1] * l2_decay(image))
        grad = tape.gradient(loss, param)
        m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
        v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
        m_hat = m / (1 - tf.pow(ADAM_BETA1, t))
        v_hat = v / (1 - tf.pow(ADAM_BETA2, t))
        param = param - lr * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON)
        if parameterization == "pixels":
            param = tf.clip_by_value(param, 0.0, 1.0)  # pixels stay valid at every step
        probs = tf.nn.softmax(logits, axis=-1)  # (B, K)
        prob = tf.reduce_mean(probs[:, target])
        return param, m, v, activation, prob

    return gradient_ascent_step


def get_ascent_step(probe: ModelProbe, parameterization: str, layer: str | None) -> Callable:
    """The probe's compiled ascent step, built on first use."""
    return probe.compiled(("ideal", parameterization, layer),
                          lambda: make_ascent_step(probe, parameterization, layer))


@tf.function(reduce_retracing=True)
def render_compiled(param, scale, parameterization: str):
    """`render` compiled (used for frames and the final image)."""
    return render(param, scale, parameterization)


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes (H, W, 3) pixels to (size, size, 3) with antialiased bilinear resampling."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.asarray(image, np.float32)
    resized = tf.image.resize(np.asarray(image, np.float32)[None], (size, size), antialias=True)
    return tf.clip_by_value(resized[0], 0.0, 255.0).numpy()


def ideal_image(
    probe: ModelProbe,
    class_index: int | None = None,
    settings: IdealSettings | None = None,
    *,
    layer: str | None = None,
    channel: int | None = None,
    start_image: np.ndarray | None = None,
    on_step: Callable[[dict], None] | None = None,
    on_frame: Callable[[dict], None] | None = None,
    stop_event: threading.Event | None = None,
) -> IdealResult:
    """Draws the image the model thinks is most like a class (or most excites a channel).

    Args:
        probe: the model.
        class_index: the class whose logit is maximised; also the class whose probability is
            reported. Required unless `layer` and `channel` are given.
        settings: an `IdealSettings`; defaults to `IdealSettings()`.
        layer: a layer with a feature-map output, for a channel objective (e.g. a cut point).
        channel: the channel of `layer` to maximise.
        start_image: optional (H, W, 3) pixels to start from (resized to the canvas) instead of noise.
        on_step: called each step with `{"step", "steps", "objective", "prob"}`.
        on_frame: called every `frame_every` steps with `{"step", "image"}` (uint8 (size, size, 3)).
        stop_event: set it to stop after the current step; the result holds the steps done.

    Returns:
        An `IdealResult`.

    Raises:
        TransferLabError: bad settings, class or channel.
    """
    settings = settings or IdealSettings()
    validate_settings(settings)
    if (layer is None) != (channel is None):
        raise TransferLabError(f"Received `layer={layer}`, `channel={channel}`; give both or neither.")
    if layer is None and class_index is None:
        raise TransferLabError("Give a class to visualise, or a layer and a channel.")
    if class_index is not None and not 0 <= int(class_index) < probe.num_classes:
        raise TransferLabError(
            f"Received `class={class_index}`; the model has classes 0..{probe.num_classes - 1}."
        )
    if layer is not None:
        width = int(probe.layer_model(layer).outputs[0].shape[-1])
        if not 0 <= int(channel) < width:
            raise TransferLabError(f"Received `channel={channel}`; layer {layer} has 0..{width - 1}.")
    size = int(settings.size or probe.input_size)
    rng = np.random.default_rng(settings.seed)
    start = None if start_image is None else resize_to(np.asarray(start_image, np.float32), size)
    param = tf.constant(initial_param(size, settings, start, rng))
    m, v = tf.zeros_like(param), tf.zeros_like(param)
    scale = tf.constant(spectrum_scale(size))
    step = get_ascent_step(probe, settings.parameterization, layer)
    target = tf.constant(int(class_index if class_index is not None else 0), tf.int32)
    channel_t = tf.constant(int(channel or 0), tf.int32)
    weights = tf.constant([settings.tv_weight, settings.l2_weight], tf.float32)
    lr = tf.constant(settings.learning_rate, tf.float32)
    objective, probs, frames = [], [], []
    began = time.perf_counter()
    done = 0
    for i in range(1, settings.steps + 1):
        if stop_event is not None and stop_event.is_set():
            break
        transforms = affine_transforms(settings.batch, size, probe.input_size, settings, rng)
        param, m, v, activation, prob = step(param, m, v, tf.constant(float(i)), scale,
                                             tf.constant(transforms), target, channel_t, weights, lr)
        if settings.blur_every and i % settings.blur_every == 0:
            param = blur_param(param, scale, settings, size)
        done = i
        objective.append(float(activation))
        probs.append(float(prob))
        if on_step is not None:
            on_step({"step": i, "steps": settings.steps, "objective": objective[-1],
                     "prob": probs[-1]})
        if settings.frame_every and i % settings.frame_every == 0:
            frame = deprocess(render_compiled(param, scale, settings.parameterization))
            frames.append((i, frame))
            if on_frame is not None:
                on_frame({"step": i, "image": frame})
    seconds = time.perf_counter() - began
    image = render_compiled(param, scale, settings.parameterization).numpy()
    if not frames or frames[-1][0] != done:
        frames.append((done, deprocess(image)))
        if on_frame is not None:
            on_frame({"step": done, "image": frames[-1][1]})
    final = probe.probabilities(resize_to(image, probe.input_size)[None])[0]
    reported = int(class_index) if class_index is not None else int(np.argmax(final))
    return IdealResult(
        image=image, prob=float(final[reported]),
        class_index=None if class_index is None else int(class_index),
        objective=objective, probs=probs, frames=frames, steps=done, seconds=seconds,
        settings=settings,
    )


def blur_param(param: tf.Tensor, scale: tf.Tensor, settings: IdealSettings, size: int) -> tf.Tensor:
    """Blurs the current image and re-expresses it in the parameterisation."""
    image = gaussian_blur(render_compiled(param, scale, settings.parameterization).numpy(),
                          settings.blur_sigma)
    return tf.constant(initial_param(size, settings, image, np.random.default_rng(0)))


def transfer_probabilities(
    image: np.ndarray, class_index: int, probes: dict[str, ModelProbe]
) -> dict[str, float]:
    """How strongly other models see the class in an ideal image (the quality proxy).

    Args:
        image: (H, W, 3) pixels in [0, 255]; resized to each model's own input size.
        class_index: the class.
        probes: name -> probe of a model that did *not* make the image.

    Returns:
        name -> probability of `class_index`.
    """
    return {name: float(p.probabilities(resize_to(image, p.input_size)[None])[0][class_index])
            for name, p in probes.items()}


COMPARISON_NAMES = {"plain": "plain gradient ascent", "tv0": "your settings, TV 0",
                    "tv": "your settings"}


def compare_tv(
    probe: ModelProbe,
    class_index: int,
    settings: IdealSettings,
    *,
    others: dict[str, ModelProbe] | None = None,
    include_plain: bool = True,
    on_progress: Callable[[int, int, str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> dict[str, dict]:
    """The seed's lesson, measured: TV weight 0 against `settings.tv_weight`, and plain ascent.

    Args:
        probe: the model that makes the images.
        class_index: the class.
        settings: the user's settings (the "TV 0" run copies them with `tv_weight=0`).
        others: models for the transfer figures (e.g. Lite1, Lite2); optional.
        include_plain: also run `UNREGULARISED` (raw pixels, no TV, no transforms) for as many
            steps: the coloured-noise baseline. Defaults to True.
        on_progress: `on_progress(done, total, message)` per step over all runs.
        stop_event: set it to stop; runs not started are left out.

    Returns:
        `{"plain": {...}, "tv0": {...}, "tv": {...}}` (no "plain" unless asked), each
        `{"result": IdealResult, "name": str, "tv": float, "total_variation": float,
        "transfer": {model name: prob}}`.
    """
    runs = [("tv0", replace(settings, tv_weight=0.0)), ("tv", settings)]
    if include_plain:
        runs.insert(0, ("plain", replace(UNREGULARISED, steps=settings.steps, size=settings.size,
                                         seed=settings.seed, frame_every=settings.frame_every)))
    total = len(runs) * settings.steps
    out = {}
    for n, (key, s) in enumerate(runs):
        if stop_event is not None and stop_event.is_set():
            break
        name = COMPARISON_NAMES[key] + (f" (TV {s.tv_weight:g})" if key == "tv" else "")

        def report(info, n=n, name=name):
            if on_progress is not None:
                on_progress(n * settings.steps + info["step"], total,
                            f"{name}: step {info['step']}/{info['steps']}")

        result = ideal_image(probe, class_index, s, on_step=report, stop_event=stop_event)
        out[key] = {
            "result": result,
            "name": name,
            "tv": s.tv_weight,
            "total_variation": float(total_variation(tf.constant(result.image))),
            "transfer": transfer_probabilities(result.image, class_index, others or {}),
        }
    return out


def class_probabilities_per_model(
    images: Sequence[np.ndarray], class_index: int, probes: dict[str, ModelProbe]
) -> list[dict[str, float]]:
    """`transfer_probabilities` for several images."""
    return [transfer_probabilities(img, class_index, probes) for img in images]
