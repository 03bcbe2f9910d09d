"""Lesson `ideal-image`: the image a network finds most like a class, by gradient ascent from noise,
plain and regularised, judged by another backbone that never saw the optimisation."""

from __future__ import annotations

from dataclasses import replace

from lib.lessons.lesson import LESSON_BACKBONE, OTHER_BACKBONE, Lesson, Models

ESPRESSO = 967  # measured: Lite2 reads Lite0's regularised espresso at p >= 0.5 on 5 of 5 seeds
KINDS = ("plain", "regularised")


def ideal_settings(kind: str, steps: int, seed: int):
    """Plain ascent (pixels, no regulariser, no transforms) or the tuned regularised defaults."""
    from lib.errors import TransferLabError
    from lib.inside.ideal import UNREGULARISED, IdealSettings

    if kind not in KINDS:
        raise TransferLabError(f"Received `kind={kind}`; choose one of {', '.join(KINDS)}.")
    base = UNREGULARISED if kind == "plain" else IdealSettings()
    return replace(base, steps=int(steps), seed=int(seed), frame_every=0)


def run(models: Models, *, backbone: str = LESSON_BACKBONE, other: str | None = OTHER_BACKBONE,
        class_index: int = ESPRESSO, steps: int = 200, seed: int = 0, which: str = "both",
        on_progress=None) -> dict:
    """Draws the ideal image of a class, plain and/or regularised, and measures both.

    Args:
        models: where the backbones come from.
        backbone: the model that makes the image. Defaults to EfficientNet-Lite0.
        other: a backbone that judges the image without having made it; None skips it. Defaults to
            EfficientNet-Lite2.
        class_index: the ImageNet class. Defaults to 967 (espresso).
        steps: ascent steps per image. Defaults to 200.
        seed: seeds the start and the random views. Defaults to 0.
        which: "both", "plain" or "regularised". Defaults to "both".
        on_progress: optional `on_progress(done, total, message)` per step.

    Returns:
        numbers: `{"class", "plain": {"prob", "total_variation", "other_backbone_prob"},
        "regularised": {...}}` (only the kinds run); images: one per kind; figures: none.
    """
    import tensorflow as tf

    from lib.errors import TransferLabError
    from lib.inside.canvas import deprocess
    from lib.inside.ideal import ideal_image, total_variation, transfer_probabilities

    kinds = KINDS if which == "both" else (which,)
    if any(k not in KINDS for k in kinds):
        raise TransferLabError(f"Received `which={which}`; choose both, plain or regularised.")
    probe = models.probe(backbone)
    others = {other: models.probe(other)} if other else {}
    numbers: dict = {"backbone": backbone, "other": other, "class": probe.labels[class_index],
                     "class_index": int(class_index), "steps": int(steps), "seed": int(seed)}
    images = {}
    for n, kind in enumerate(kinds):
        def report(info, n=n, kind=kind):
            if on_progress is not None:
                on_progress(n * steps + info["step"], len(kinds) * steps,
                            f"{kind}: step {info['step']}/{info['steps']}")

        result = ideal_image(probe, class_index, ideal_settings(kind, steps, seed), on_step=report)
        transfer = transfer_probabilities(result.image, class_index, others)
        numbers[kind] = {"prob": result.prob,
                         "total_variation": float(total_variation(tf.constant(result.image))),
                         "other_backbone_prob": transfer.get(other) if other else None}
        images[kind] = deprocess(result.image)
    return {"numbers": numbers, "images": images, "figures": {}}


LESSON = Lesson(
    name="ideal-image",
    title="The image a network thinks is most like a class",
    paragraphs=(
        "Training changes the weights to fit the images. We can turn this around: keep the "
        "weights fixed and change the *image*, step by step, so the network grows surer it sees "
        "one class (here: espresso). This is gradient ascent on the pixels.",
        "Plain ascent from noise quickly makes the network almost certain, yet the image stays "
        "coloured noise. Adding a penalty on jumps between neighbouring pixels (total variation), "
        "and jiggling the image at every step, gives a picture a person can read.",
        "To check which image really shows the class, we ask a second network that never saw "
        "the optimisation.",
    ),
    notice=(
        "Both images convince the network that made them (probability near 1).",
        "Only the regularised one convinces the other network, and it is smoother (lower total "
        "variation).",
        "Look for the parts of the class (cups, crema, saucers) repeated across the image.",
    ),
    question="Plain ascent reaches a probability near 1 on noise. What does that tell us about "
             "how the network decides?",
    answer="Many inputs that look nothing like the class excite it: the network responds to "
           "patterns, not to whole objects as we see them. The noise is tuned to one network's "
           "weights, which is why another network is not fooled by it, while the regularised "
           "image, which looks like the class, transfers.",
    run=run,
    defaults={"backbone": LESSON_BACKBONE, "other": OTHER_BACKBONE, "class_index": ESPRESSO,
              "steps": 200, "seed": 0, "which": "both"},
    timing="15–25 s per image (200 steps); the first run also compiles the step "
           "and loads the second network (about 30 s more)",
)
