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

Success is judged on the image a person downloads: the iterate rounded to whole pixels (kept inside
the eps-ball). PGD does not stop at the first boundary crossing, where rounding could undo it, but
goes on until that rounded image reaches its goal by a probability `margin` (or the steps run out).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from lib.backbones.imagenet import top_k
from lib.errors import TransferLabError
from lib.inside.perturb import (  # noqa: F401  (re-exported: the CLI and tests import them here)
    DEFAULT_MARGIN,
    MAX_EPS,
    METHODS,
    NORMS,
    STEP_SIZE_FACTOR,
    check_images,
    get_attack_step,
    goal_margin,
    goal_reached,
    quantize,
    random_start,
    validate_attack,
    validate_margin,
)
from lib.inside.probe import ModelProbe
from lib.progress import ProgressFn

SWEEP_BATCH = 8


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
        success: on the returned (whole-pixel) image, the prediction left the reference class
            (untargeted) or became the target.
        linf: max |perturbation| in pixel units.
        l2: Euclidean norm of the perturbation in pixel units.
        steps: gradient steps taken (PGD stops early once the margin is reached).
        method, norm, eps: the settings used.
        margin: the probability margin PGD aimed for.
        margin_reached: the returned image reaches its goal by at least `margin`.
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
    margin: float = DEFAULT_MARGIN
    margin_reached: bool = False


@dataclass(frozen=True)
class SweepResult:
    """Attacks over a grid of budgets for a set of images.

    Attributes:
        eps: the budgets, ascending.
        success: (len(eps), N) bool: did the attack succeed on image n at eps[i]?
        robust_accuracy: per eps, the fraction of images still predicted as their reference class.
        success_rate: per eps, the fraction of successful attacks.
        mean_confidence: per eps, the mean top-1 probability of the attacked images.
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
    mean_confidence: list[float] = field(default_factory=list)


def sample_dataset(
    index, limit: int, size: int, model_labels: Sequence[str]
) -> tuple[np.ndarray, list[int] | None]:
    """Up to `limit` images spread over a dataset, and their true labels as the model's classes.

    The ε sweep of the CLI (`attack --sweep --data`) and of the Adversarial page both use it, so
    both measure robust accuracy against the same labels.

    Args:
        index: a `lib.data.DatasetIndex` (its records are sorted by class, so a stride spreads the
            sample over the classes).
        limit: the most images to take.
        size: the model's input side; images are resized and centre-cropped to it.
        model_labels: the model's class names, in output order.

    Returns:
        `(images (N, size, size, 3) float32, label indices or None)`: the labels are None unless
        every class name of the dataset is a class of the model (e.g. a run trained on it).

    Raises:
        TransferLabError: the dataset has no images, or `limit` is below 1.
    """
    from lib.images import load_image

    if limit < 1:
        raise TransferLabError(f"Received `limit={limit}`; use 1 or more images.")
    if not index.records:
        raise TransferLabError(f"{index.name} holds no usable images to attack.")
    stride = max(1, len(index.records) // limit)
    records = index.records[::stride][:limit]
    images = np.stack([load_image(r.path, size) for r in records])
    position = {name: i for i, name in enumerate(model_labels)}
    if not all(name in position for name in index.class_names):
        return images, None
    return images, [position[index.class_names[r.label]] for r in records]


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
    margin: float = DEFAULT_MARGIN,
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
        early_stop: stop moving an image once its rounded version reaches the goal by `margin`.
            Defaults to True.
        round_pixels: return (and judge) whole pixel values, as saved in a PNG. Defaults to True.
        margin: the probability margin that ends an image's attack (see `goal_margin`); 0 stops at
            the first boundary crossing. Defaults to 0.2.
        seed: seeds the random start. Defaults to 0.
        stop_event: set it to stop after the current step.
        on_step: called after each step with `{"step", "steps", "loss", "succeeded"}`, where
            `succeeded` counts images whose rounded version reaches the goal by `margin`.

    Returns:
        `(adversarial, steps_used)`: (B, S, S, 3) float32 and (B,) int.
    """
    validate_attack(method, norm, eps, steps)
    validate_margin(margin)
    x0 = np.asarray(images, dtype=np.float32)
    check_images(probe, x0)
    batch = len(x0)
    classes = np.asarray(classes, np.int32)
    n_steps = 1 if method == "fgsm" else int(steps)
    size = float(eps) if method == "fgsm" else float(step_size or STEP_SIZE_FACTOR * eps / n_steps)
    eps_b = np.full(batch, eps, np.float32)
    step = get_attack_step(probe, norm)

    def finished(x: np.ndarray) -> np.ndarray:
        """(B,) bool, judged on the image a person would save."""
        saved = quantize(x, x0, eps_b, norm) if round_pixels else x
        return goal_reached(probe.probabilities(saved), classes, targeted, margin)

    x = random_start(x0, eps_b, norm, np.random.default_rng(seed)) if (
        random_init and method == "pgd") else x0.copy()
    x0_t, classes_t = tf.constant(x0), tf.constant(classes)
    targeted_t = tf.fill([batch], bool(targeted))
    eps_t, size_t = tf.constant(eps_b), tf.fill([batch], np.float32(size))
    active = ~finished(x) if early_stop else np.ones(batch, bool)
    steps_used = np.zeros(batch, int)
    for i in range(n_steps):
        if (stop_event is not None and stop_event.is_set()) or not active.any():
            break
        x_next, ce = step(tf.constant(x), x0_t, classes_t, targeted_t, eps_t, size_t,
                          tf.constant(active))
        x = x_next.numpy()
        steps_used += active
        if early_stop or on_step is not None:
            reached = finished(x)
            if early_stop:
                active &= ~reached
            if on_step is not None:
                on_step({"step": i + 1, "steps": n_steps, "loss": float(np.mean(ce.numpy())),
                         "succeeded": int(reached.sum())})
    adversarial = quantize(x, x0, eps_b, norm) if round_pixels else x
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
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
    k: int = 5,
    stop_event: threading.Event | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> AttackResult:
    """Attacks one image and reports the result, judged on the whole-pixel image it returns.

    Args:
        probe: the model under attack.
        image: (S, S, 3) pixels in [0, 255] at the model's input size (see `lib.images.load_image`).
        method: "fgsm" or "pgd". Defaults to "pgd".
        eps: budget in pixel units (0-255). Defaults to 4.
        steps: PGD iterations. Defaults to 10.
        target: class index to reach; None attacks the clean prediction (untargeted).
        norm: "linf" or "l2". Defaults to "linf".
        step_size, random_init, early_stop, round_pixels, margin, seed, stop_event, on_step: see
            `attack_batch`.
        k: classes in the before/after top-k. Defaults to 5.

    Returns:
        An `AttackResult`.

    Raises:
        TransferLabError: bad settings, a target out of range, or an image of the wrong shape.
    """
    validate_attack(method, norm, eps, steps)
    validate_margin(margin)
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
        early_stop=early_stop, round_pixels=round_pixels, margin=margin, seed=seed,
        stop_event=stop_event, on_step=on_step,
    )
    probs_after = probe.probabilities(adversarial)[0]
    predicted = int(np.argmax(probs_after))
    success = predicted == goal if target is not None else predicted != reference
    reached = goal_reached(probs_after[None], np.array([goal]), target is not None, margin)[0]
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
        margin=float(margin),
        margin_reached=bool(reached),
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
    margin: float = DEFAULT_MARGIN,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> SweepResult:
    """Attacks every image at every budget: the robust-accuracy curve and each image's minimal eps.

    Success is judged on the whole-pixel adversarial images. With true `labels` an untargeted
    attack pushes each image away from its label, and success means misclassified (so
    `robust_accuracy` is the accuracy under attack); without, the clean predictions stand in.

    Args:
        probe: the model under attack.
        images: (N, S, S, 3) pixels in [0, 255] at the model's input size.
        eps_values: budgets in pixel units (sorted ascending here); 0 means no attack (the clean
            images).
        labels: reference classes (true labels); defaults to the clean predictions.
        targets: per-image target classes for a targeted sweep; None is untargeted.
        method, steps, norm, random_init, margin, seed: see `attack_batch`.
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
        if e != 0:  # 0 is the clean baseline
            validate_attack(method, norm, e, steps)
    validate_margin(margin)
    batches = range(0, len(x), SWEEP_BATCH)
    clean_probs = np.concatenate([probe.probabilities(x[i:i + SWEEP_BATCH]) for i in batches])
    reference = np.asarray(labels if labels is not None else clean_probs.argmax(-1), int)
    if len(reference) != len(x) or (reference < 0).any() or (reference >= probe.num_classes).any():
        raise TransferLabError(
            f"Received {len(reference)} labels for {len(x)} images; give one class index in "
            f"0..{probe.num_classes - 1} per image."
        )
    goals = reference if targets is None else np.asarray(targets, int)
    total = len(eps_grid) * len(batches)
    rows, done = [], 0
    for e in eps_grid:
        probs = np.zeros((len(x), probe.num_classes))  # (N, K) after the attack at this eps
        complete = True
        for i in batches:
            if stop_event is not None and stop_event.is_set():
                complete = False
                break
            if e == 0:
                probs[i:i + SWEEP_BATCH] = clean_probs[i:i + SWEEP_BATCH]
            else:
                adv, _ = attack_batch(probe, x[i:i + SWEEP_BATCH], goals[i:i + SWEEP_BATCH],
                                      targeted=targets is not None, method=method, eps=e,
                                      steps=steps, norm=norm, random_init=random_init,
                                      margin=margin, seed=seed)
                probs[i:i + SWEEP_BATCH] = probe.probabilities(adv)
            done += 1
            if on_progress is not None:
                on_progress(done, total, f"eps {e:g}: {min(i + SWEEP_BATCH, len(x))}/{len(x)} images")
        if not complete:
            break  # this eps is incomplete: leave it out
        rows.append(probs)
    attacked = np.array(rows).reshape(len(rows), len(x), probe.num_classes)  # (E, N, K)
    predictions = attacked.argmax(-1)  # (E, N)
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
        mean_confidence=[float(np.mean(a.max(-1))) for a in attacked],
    )
