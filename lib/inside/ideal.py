"""Ideal class images: gradient ascent on the input until the network sees the class.

Plain gradient ascent on pixels reaches p ~ 1 for any class within a few hundred steps, yet the image
stays coloured noise: many inputs convince a network. The regularisers of `lib.inside.canvas` (1/f
spectrum, total variation, random jitter, scale and rotation) make the result look like the class to
*other* networks too (our measurable proxy for "a person can recognise it").

The objective is a class logit (`class_index`) or the mean of one channel at a layer (`layer`,
`channel`). The loop reports through `on_step(dict)` and `on_frame(dict)`, and stops on `stop_event`.

What the defaults were chosen on (Lite0, 200 steps, espresso, Lite2's probability of espresso for
the Lite0 image): plain pixels without regularisers 0.00; pixels + transforms 0.06-0.31 whatever
the TV weight; FFT + transforms with TV 0 / 30 / 100 over seeds 0-3: 0.42-0.83 / 0.21-0.86 /
0.55-0.91. The 1/f spectrum and the random transforms do most of the work; TV 100 halves the total
variation (0.17 -> 0.09, visibly smoother) and gave the best worst case. Averaging two views per
step (`batch=2`) did not help enough to pay for its time. Over seeds 0-4 on the benchmark's five
classes (espresso, goldfish, pizza, banana, flamingo; `bench/look_inside.py --transfer-only
--seeds 5`), Lite2 reads the class at p >= 0.5 in 25 of 25 images (mean 0.90 ± 0.13; the worst
class, espresso, 0.71 ± 0.16, minimum 0.51), so the defaults stay. Saving the image as a PNG and
reading it back as `predict` does gives the same p (espresso, seed 0: 0.857 and 0.860).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import tensorflow as tf

from lib.errors import TransferLabError
from lib.inside.canvas import (  # noqa: F401  (re-exported: the page, bench and tests import them here)
    ADAM_BETA1,
    ADAM_BETA2,
    ADAM_EPSILON,
    PARAMETERIZATIONS,
    UNREGULARISED,
    IdealSettings,
    affine_transforms,
    apply_transforms,
    deprocess,
    gaussian_blur,
    initial_param,
    l2_decay,
    render,
    resize_to,
    spectrum_scale,
    total_variation,
    validate_settings,
)
from lib.inside.probe import ModelProbe


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


# ----- the compiled step -------------------------------------------------------------------------


def make_objective_model(probe: ModelProbe, layer: str | None) -> Callable:
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
