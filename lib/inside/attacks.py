"""Adversarial examples: FGSM and iterative FGSM / PGD, untargeted or targeted, L-inf or L2.

Everything is in pixel units: images are float32 pixels in [0, 255], the budget `eps` bounds the
perturbation `delta = adversarial - original` (max |delta| for L-inf, the Euclidean norm over all
pixels and channels for L2), and every iterate is clipped to [0, 255]. The loss is the softmax
cross-entropy of the model's logits:

* untargeted: push the image away from its reference class (the clean prediction) by gradient
  *ascent* on the cross-entropy of that class;
* targeted: pull it towards class T by gradient *descent* on the cross-entropy of T.

One compiled step (`attack_step`) serves FGSM (one step of size eps from the original) and PGD
(many steps of size `step_size`, each followed by projection onto the eps-ball), for a batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from lib.backbones.imagenet import top_k
from lib.errors import TransferLabError
from lib.inside.probe import ModelProbe

METHODS = ("fgsm", "pgd")
NORMS = ("linf", "l2")
MAX_EPS = 255.0
MAX_STEPS = 1000
# Madry et al.'s rule of thumb: a step of 2.5 * eps / steps lets PGD cross the ball and come back.
STEP_SIZE_FACTOR = 2.5
SWEEP_BATCH = 8
# Guards the L2 normalisation of an all-zero gradient.
NORM_EPSILON = 1e-12


@dataclass(frozen=True)
class AttackResult:
    """One attacked image.

    Attributes:
        original: (S, S, 3) float32 pixels in [0, 255].
        adversarial: (S, S, 3) float32 pixels in [0, 255].
        perturbation: `adversarial - original`, (S, S, 3).
        before: top-k of the original, `[{"index", "label", "prob"}, ...]`.
        after: top-k of the adversarial image.
        target: the target class index, or None for an untargeted attack.
        target_prob_before: probability of the target (or of the reference class) before.
        target_prob_after: the same, after.
        success: the prediction left the reference class (untargeted) or became the target.
        linf: max |perturbation| in pixel units.
        l2: Euclidean norm of the perturbation in pixel units.
        steps: gradient steps taken (PGD stops early once it succeeds).
        method, norm, eps: the settings used.
    """

    original: np.ndarray = field(repr=False)
    adversarial: np.ndarray = field(repr=False)
    perturbation: np.ndarray = field(repr=False)
    before: list[dict]
    after: list[dict]
    target: int | None
    target_prob_before: float
    target_prob_after: float
    success: bool
    linf: float
    l2: float
    steps: int
    method: str
    norm: str
    eps: float


@dataclass(frozen=True)
class SweepResult:
    """Attacks over a grid of budgets for a set of images.

    Attributes:
        eps: the budgets, ascending.
        success: (len(eps), N) bool: did the attack succeed on image n at eps[i]?
        robust_accuracy: per eps, the fraction of images still predicted as their reference class.
        success_rate: per eps, the fraction of successful attacks.
        min_eps: per image, the smallest eps in the grid that succeeded, or None.
        reference: per image, the reference class (given label or clean prediction).
        targets: per image, the target class, or None for untargeted sweeps.
    """

    eps: list[float]
    success: np.ndarray = field(repr=False)
    robust_accuracy: list[float]
    success_rate: list[float]
    min_eps: list[float | None]
    reference: list[int]
    targets: list[int] | None


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

    The step returns the next iterate and whether the *current* iterate already succeeds; images
    that succeed (with `early_stop`) or are inactive keep their current value.
    """
    scores_model = probe.scores

    @tf.function(reduce_retracing=True)
    def attack_step(x, x0, classes, targeted, eps, step_size, active, early_stop):
        # x, x0: (B, S, S, 3) pixels; classes: (B,) int32 reference or target class;
        # targeted, active: (B,) bool; eps, step_size: (B,) float32; early_stop: scalar bool.
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = scores_model(x, training=False)  # (B, K)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=classes, logits=logits)  # (B,)
            loss = tf.reduce_sum(tf.where(targeted, -ce, ce))  # ascend this
        grad = tape.gradient(loss, x)  # (B, S, S, 3)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)  # (B,)
        succeeded = tf.where(targeted, predicted == classes, predicted != classes)  # (B,)
        step = tf.reshape(step_size, [-1, 1, 1, 1]) * ascent_direction(grad, norm)
        x_next = project(x + step, x0, eps, norm)
        move = active & ~(succeeded & early_stop)  # (B,)
        x_next = tf.where(move[:, None, None, None], x_next, x)
        return x_next, succeeded, ce

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
    """Rounds iterates to whole pixel values (what a PNG holds) and keeps them in the eps-ball."""
    rounded = np.clip(np.rint(x), 0.0, 255.0).astype(np.float32)
    return project(tf.constant(rounded), tf.constant(x0), tf.constant(eps, tf.float32), norm).numpy()


def attack_batch(
    probe: ModelProbe,
    images: np.ndarray,
    classes: np.ndarray,
    *,
    targeted: bool,
    method: str = "pgd",
    eps: float = 4.0,
    steps: int = 10,
    norm: str = "linf",
    step_size: float | None = None,
    random_init: bool = False,
    early_stop: bool = True,
    round_pixels: bool = True,
    seed: int = 0,
    stop_event: threading.Event | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Attacks a batch of images. The core of `attack` and `eps_sweep`.

    Args:
        probe: the model under attack.
        images: (B, S, S, 3) float32 pixels in [0, 255], S = the model's input size.
        classes: (B,) reference classes (untargeted) or target classes (targeted).
        targeted: move towards `classes` (True) or away from them (False).
        method: "fgsm" (one step of size eps) or "pgd". Defaults to "pgd".
        eps: budget in pixel units. Defaults to 4.
        steps: PGD iterations (FGSM always takes 1). Defaults to 10.
        norm: "linf" or "l2". Defaults to "linf".
        step_size: PGD step in pixel units; defaults to 2.5 * eps / steps.
        random_init: PGD starts from a random point of the ball. Defaults to False.
        early_stop: stop moving an image once it succeeds. Defaults to True.
        round_pixels: round the result to whole pixel values (as saved in a PNG). Defaults to True.
        seed: seeds the random start. Defaults to 0.
        stop_event: set it to stop after the current step.
        on_step: called after each step with `{"step", "steps", "loss", "succeeded"}`.

    Returns:
        `(adversarial, steps_used)`: (B, S, S, 3) float32 and (B,) int.
    """
    validate_attack(method, norm, eps, steps)
    x0 = np.asarray(images, dtype=np.float32)
    check_images(probe, x0)
    batch = len(x0)
    n_steps = 1 if method == "fgsm" else int(steps)
    size = float(eps) if method == "fgsm" else float(step_size or STEP_SIZE_FACTOR * eps / n_steps)
    eps_b = np.full(batch, eps, np.float32)
    step = get_attack_step(probe, norm)
    x = random_start(x0, eps_b, norm, np.random.default_rng(seed)) if (
        random_init and method == "pgd") else x0.copy()
    x, x0_t = tf.constant(x), tf.constant(x0)
    classes_t = tf.constant(np.asarray(classes, np.int32))
    targeted_t = tf.fill([batch], bool(targeted))
    eps_t, size_t = tf.constant(eps_b), tf.fill([batch], np.float32(size))
    active = np.ones(batch, bool)
    steps_used = np.zeros(batch, int)
    for i in range(n_steps):
        if stop_event is not None and stop_event.is_set():
            break
        x, succeeded, ce = step(x, x0_t, classes_t, targeted_t, eps_t, size_t,
                                tf.constant(active), tf.constant(early_stop))
        succeeded = succeeded.numpy()
        if early_stop:
            active &= ~succeeded
        steps_used += active
        if on_step is not None:
            on_step({"step": i + 1, "steps": n_steps, "loss": float(np.mean(ce.numpy())),
                     "succeeded": int(succeeded.sum())})
        if not active.any():
            break
    adversarial = x.numpy()
    if round_pixels:
        adversarial = quantize(adversarial, x0, eps_b, norm)
    return adversarial, steps_used


def attack(
    probe: ModelProbe,
    image: np.ndarray,
    *,
    method: str = "pgd",
    eps: float = 4.0,
    steps: int = 10,
    target: int | None = None,
    norm: str = "linf",
    step_size: float | None = None,
    random_init: bool = False,
    early_stop: bool = True,
    round_pixels: bool = True,
    seed: int = 0,
    k: int = 5,
    stop_event: threading.Event | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> AttackResult:
    """Attacks one image and reports the result.

    Args:
        probe: the model under attack.
        image: (S, S, 3) pixels in [0, 255] at the model's input size (see `lib.images.load_image`).
        method: "fgsm" or "pgd". Defaults to "pgd".
        eps: budget in pixel units (0-255). Defaults to 4.
        steps: PGD iterations. Defaults to 10.
        target: class index to reach; None attacks the clean prediction (untargeted).
        norm: "linf" or "l2". Defaults to "linf".
        step_size, random_init, early_stop, round_pixels, seed, stop_event, on_step: see
            `attack_batch`.
        k: classes in the before/after top-k. Defaults to 5.

    Returns:
        An `AttackResult`.

    Raises:
        TransferLabError: bad settings, a target out of range, or an image of the wrong shape.
    """
    validate_attack(method, norm, eps, steps)
    if target is not None and not 0 <= int(target) < probe.num_classes:
        raise TransferLabError(
            f"Received `target={target}`; the model has classes 0..{probe.num_classes - 1}."
        )
    x0 = np.asarray(image, dtype=np.float32)[None]  # (1, S, S, 3)
    check_images(probe, x0)
    probs_before = probe.probabilities(x0)[0]  # (K,)
    reference = int(np.argmax(probs_before))
    goal = reference if target is None else int(target)
    adversarial, used = attack_batch(
        probe, x0, np.array([goal]), targeted=target is not None, method=method, eps=eps,
        steps=steps, norm=norm, step_size=step_size, random_init=random_init,
        early_stop=early_stop, round_pixels=round_pixels, seed=seed, stop_event=stop_event,
        on_step=on_step,
    )
    probs_after = probe.probabilities(adversarial)[0]
    predicted = int(np.argmax(probs_after))
    success = predicted == goal if target is not None else predicted != reference
    delta = adversarial[0] - x0[0]
    return AttackResult(
        original=x0[0],
        adversarial=adversarial[0],
        perturbation=delta,
        before=top_k(probs_before, probe.labels, k),
        after=top_k(probs_after, probe.labels, k),
        target=None if target is None else int(target),
        target_prob_before=float(probs_before[goal]),
        target_prob_after=float(probs_after[goal]),
        success=bool(success),
        linf=float(np.abs(delta).max()),
        l2=float(np.sqrt((delta.astype(np.float64) ** 2).sum())),
        steps=int(used[0]),
        method=method,
        norm=norm,
        eps=float(eps),
    )


def eps_sweep(
    probe: ModelProbe,
    images: np.ndarray,
    eps_values: Sequence[float],
    *,
    labels: Sequence[int] | None = None,
    targets: Sequence[int] | None = None,
    method: str = "pgd",
    steps: int = 10,
    norm: str = "linf",
    random_init: bool = False,
    seed: int = 0,
    on_progress: Callable[[int, int, str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> SweepResult:
    """Attacks every image at every budget: the robust-accuracy curve and each image's minimal eps.

    Args:
        probe: the model under attack.
        images: (N, S, S, 3) pixels in [0, 255] at the model's input size.
        eps_values: budgets in pixel units (sorted ascending here).
        labels: reference classes (true labels); defaults to the clean predictions.
        targets: per-image target classes for a targeted sweep; None is untargeted.
        method, steps, norm, random_init, seed: see `attack_batch`.
        on_progress: `on_progress(done, total, message)` after each batch.
        stop_event: set it to stop; budgets not reached are left out of the result.

    Returns:
        A `SweepResult`.

    Raises:
        TransferLabError: no images, no budgets, or bad settings.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise TransferLabError(f"Received images of shape {x.shape}; need at least one image.")
    check_images(probe, x)
    eps_grid = sorted(float(e) for e in eps_values)
    if not eps_grid:
        raise TransferLabError("Received no eps values to sweep.")
    for e in eps_grid:
        validate_attack(method, norm, e, steps)
    clean = np.concatenate([probe.probabilities(x[i:i + SWEEP_BATCH]).argmax(-1)
                            for i in range(0, len(x), SWEEP_BATCH)])
    reference = np.asarray(labels if labels is not None else clean, int)
    goals = reference if targets is None else np.asarray(targets, int)
    total = len(eps_grid) * int(np.ceil(len(x) / SWEEP_BATCH))
    rows, done = [], 0
    for e in eps_grid:
        predicted = np.zeros(len(x), int)  # (N,) predictions after the attack at this eps
        complete = True
        for i in range(0, len(x), SWEEP_BATCH):
            if stop_event is not None and stop_event.is_set():
                complete = False
                break
            adv, _ = attack_batch(probe, x[i:i + SWEEP_BATCH], goals[i:i + SWEEP_BATCH],
                                  targeted=targets is not None, method=method, eps=e, steps=steps,
                                  norm=norm, random_init=random_init, seed=seed)
            predicted[i:i + SWEEP_BATCH] = probe.probabilities(adv).argmax(-1)
            done += 1
            if on_progress is not None:
                on_progress(done, total, f"eps {e:g}: {min(i + SWEEP_BATCH, len(x))}/{len(x)} images")
        if not complete:
            break  # this eps is incomplete: leave it out
        rows.append(predicted)
    predictions = np.array(rows).reshape(len(rows), len(x))  # (E, N)
    if targets is None:
        success = predictions != reference[None]
    else:
        success = predictions == goals[None]
    min_eps = [next((eps_grid[j] for j in range(len(rows)) if success[j, n]), None)
               for n in range(len(x))]
    return SweepResult(
        eps=eps_grid[: len(rows)],
        success=success,
        robust_accuracy=[float(np.mean(p == reference)) for p in predictions],
        success_rate=[float(np.mean(s)) for s in success],
        min_eps=min_eps,
        reference=[int(r) for r in reference],
        targets=None if targets is None else [int(t) for t in goals],
    )
