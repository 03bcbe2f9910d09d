"""The pieces of an attack step, in pixel units: budgets, projection, rounding and the goal check.

Images are float32 pixels in [0, 255]; `eps` bounds `delta = adversarial - original` (max |delta|
for L-inf, the Euclidean norm over all pixels and channels for L2). `lib.inside.attacks` drives these
pieces for FGSM, PGD and the eps sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from lib.errors import TransferLabError
from lib.lazy import lazy_module

if TYPE_CHECKING:
    from lib.inside.probe import ModelProbe

tf = lazy_module("tensorflow")  # imported at first use (see lib.lazy)

METHODS = ("fgsm", "pgd")
NORMS = ("linf", "l2")
MAX_EPS = 255.0
MAX_STEPS = 1000
# Madry et al.'s rule of thumb: a step of 2.5 * eps / steps lets PGD cross the ball and come back.
STEP_SIZE_FACTOR = 2.5
# PGD stops once the goal class leads (targeted) or the reference class trails (untargeted) the best
# other class by this much probability on the rounded image: a clear top-1, not a coin toss.
DEFAULT_MARGIN = 0.2
# Bisection steps that find the largest whole-pixel L2 perturbation inside the budget.
L2_ROUNDING_BISECTIONS = 20
# Guards the L2 normalisation of an all-zero gradient.
NORM_EPSILON = 1e-12


def validate_attack(method: str, norm: str, eps: float, steps: int) -> None:
    """Checks attack settings, echoing the bad value.

    Raises:
        TransferLabError: unknown method or norm, eps out of (0, 255] (L-inf) or <= 0, bad steps.
    """
    if method not in METHODS:
        raise TransferLabError(f"Received `method={method}`; choose one of {', '.join(METHODS)}.")
    if norm not in NORMS:
        raise TransferLabError(f"Received `norm={norm}`; choose one of {', '.join(NORMS)}.")
    if not np.isfinite(eps) or eps <= 0 or (norm == "linf" and eps > MAX_EPS):
        raise TransferLabError(
            f"Received `eps={eps}`; it is in pixel units and must be in (0, {MAX_EPS:g}] for L-inf "
            "and positive for L2."
        )
    if not 1 <= int(steps) <= MAX_STEPS:
        raise TransferLabError(f"Received `steps={steps}`; use 1 to {MAX_STEPS}.")


def validate_margin(margin: float) -> None:
    """Raises TransferLabError unless `margin` is a probability margin in [0, 1)."""
    if not 0.0 <= float(margin) < 1.0:
        raise TransferLabError(
            f"Received `margin={margin}`; it is a probability margin, from 0 (just cross the "
            "decision boundary) to below 1."
        )


def check_images(probe: ModelProbe, images: np.ndarray) -> None:
    """Raises TransferLabError unless `images` is (N, S, S, 3) at the model's input size."""
    if images.ndim != 4 or images.shape[1:] != (probe.input_size, probe.input_size, 3):
        shape = images.shape[1:] if images.ndim == 4 else images.shape
        raise TransferLabError(
            f"Received images of shape {shape}; the model takes ({probe.input_size}, "
            f"{probe.input_size}, 3). Load them with `load_image(path, {probe.input_size})`."
        )


def ascent_direction(grad: tf.Tensor, norm: str) -> tf.Tensor:
    """The steepest-ascent unit step for a norm: sign(g) for L-inf, g / ||g||_2 for L2.

    Args:
        grad: (B, S, S, 3).
        norm: "linf" or "l2".

    Returns:
        (B, S, S, 3).
    """
    if norm == "linf":
        return tf.sign(grad)
    length = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3], keepdims=True))  # (B, 1, 1, 1)
    return grad / (length + NORM_EPSILON)


def project(x: tf.Tensor, x0: tf.Tensor, eps: tf.Tensor, norm: str) -> tf.Tensor:
    """Projects `x` onto the eps-ball around `x0`, then clips to valid pixels [0, 255].

    Clipping after projection never leaves the ball: it only moves pixels towards `x0`'s range.

    Args:
        x, x0: (B, S, S, 3) pixels.
        eps: scalar or (B,) budget in pixel units.
        norm: "linf" or "l2".
    """
    eps = tf.reshape(tf.cast(eps, x.dtype), [-1, 1, 1, 1])  # (B or 1, 1, 1, 1)
    delta = x - x0
    if norm == "linf":
        delta = tf.clip_by_value(delta, -eps, eps)
    else:
        length = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2, 3], keepdims=True))
        delta = delta * tf.minimum(1.0, eps / (length + NORM_EPSILON))
    return tf.clip_by_value(x0 + delta, 0.0, 255.0)


def make_attack_step(probe: ModelProbe, norm: str) -> Callable:
    """Compiles one attack step for a model and norm (traced once per input shape).

    The step returns the next iterate and the cross-entropy of the current one; inactive images
    keep their current value.
    """

    @tf.function(reduce_retracing=True)
    def attack_step(x, x0, classes, targeted, eps, step_size, active):
        # x, x0: (B, S, S, 3) pixels; classes: (B,) int32 reference or target class;
        # targeted, active: (B,) bool; eps, step_size: (B,) float32.
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = probe.scores(x)  # (B, K): head(body(x)) or the flat model's logits
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=classes, logits=logits)  # (B,)
            loss = tf.reduce_sum(tf.where(targeted, -ce, ce))  # ascend this
        grad = tape.gradient(loss, x)  # (B, S, S, 3)
        step = tf.reshape(step_size, [-1, 1, 1, 1]) * ascent_direction(grad, norm)
        x_next = project(x + step, x0, eps, norm)
        return tf.where(active[:, None, None, None], x_next, x), ce

    return attack_step


def get_attack_step(probe: ModelProbe, norm: str) -> Callable:
    """The probe's compiled attack step for `norm`, built on first use."""
    return probe.compiled(("attack", norm), lambda: make_attack_step(probe, norm))


def random_start(x0: np.ndarray, eps: np.ndarray, norm: str, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random point of the eps-ball around `x0`, clipped to [0, 255]. Shapes (B, S, S, 3)."""
    e = eps.reshape(-1, 1, 1, 1)
    if norm == "linf":
        delta = rng.uniform(-1.0, 1.0, x0.shape) * e
    else:
        direction = rng.normal(size=x0.shape)
        direction /= np.sqrt((direction**2).sum(axis=(1, 2, 3), keepdims=True)) + NORM_EPSILON
        delta = direction * e * rng.uniform(0.0, 1.0, (len(x0), 1, 1, 1))
    return np.clip(x0 + delta, 0.0, 255.0).astype(np.float32)


def quantize(x: np.ndarray, x0: np.ndarray, eps: np.ndarray, norm: str) -> np.ndarray:
    """Rounds iterates to whole pixel values (what a PNG holds), keeping them in the eps-ball.

    Rounding first and projecting after would leave fractional pixels that saving rounds again, so
    the image checked would not be the image saved. Here the result is whole wherever `x0` is:
    for L-inf each pixel is clipped to the whole values within eps of the original; for L2 the
    perturbation is scaled down, by bisection, until its rounded version fits the budget.

    Args:
        x, x0: (B, S, S, 3) iterates and originals, pixels in [0, 255].
        eps: (B,) budgets in pixel units.
        norm: "linf" or "l2".

    Returns:
        (B, S, S, 3) float32.
    """
    x, x0 = np.asarray(x, np.float64), np.asarray(x0, np.float64)
    e = np.asarray(eps, np.float64).reshape(-1, 1, 1, 1)
    if norm == "linf":
        low = np.maximum(np.ceil(x0 - e), 0.0)
        high = np.minimum(np.floor(x0 + e), 255.0)
        return np.clip(np.rint(x), low, high).astype(np.float32)
    delta = x - x0

    def rounded_norm(scale: np.ndarray) -> np.ndarray:  # (B,) L2 norm of the rounded, scaled delta
        return np.sqrt((np.rint(delta * scale) ** 2).sum(axis=(1, 2, 3)))

    fits = rounded_norm(np.ones_like(e)) <= e.ravel()
    low, high = np.zeros_like(e), np.ones_like(e)  # the scale: low always fits
    for _ in range(L2_ROUNDING_BISECTIONS):
        mid = (low + high) / 2
        ok = (rounded_norm(mid) <= e.ravel()).reshape(-1, 1, 1, 1)
        low, high = np.where(ok, mid, low), np.where(ok, high, mid)
    scale = np.where(fits.reshape(-1, 1, 1, 1), 1.0, low)
    return np.clip(x0 + np.rint(delta * scale), 0.0, 255.0).astype(np.float32)


def goal_margin(probs: np.ndarray, classes: np.ndarray, targeted: bool) -> np.ndarray:
    """How far each image is past its goal, in probability.

    Args:
        probs: (B, K) probabilities.
        classes: (B,) target (targeted) or reference (untargeted) classes.
        targeted: which goal.

    Returns:
        (B,) `p(target) - max other p` (targeted) or `max other p - p(reference)` (untargeted):
        positive once the goal is reached.
    """
    rows = np.arange(len(probs))
    chosen = probs[rows, classes]
    others = probs.copy()
    others[rows, classes] = -np.inf
    best_other = others.max(axis=-1)
    return chosen - best_other if targeted else best_other - chosen


def goal_reached(probs: np.ndarray, classes: np.ndarray, targeted: bool, margin: float) -> np.ndarray:
    """(B,) bool: the goal is reached (a strict top-1 change) by at least `margin`."""
    gap = goal_margin(probs, np.asarray(classes, int), targeted)
    return (gap > 0) & (gap >= margin)
