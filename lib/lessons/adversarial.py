"""Lesson `adversarial`: a photo nudged, invisibly, until the network names something else."""

from __future__ import annotations

from lib.lessons.lesson import LESSON_BACKBONE, Lesson, Models

EPS_CHOICES = (0.5, 1.0, 2.0, 4.0, 8.0)
# Measured on Lite0 with Chelsea (PGD-10): reached at eps 1 (p 0.23), eps 2 (p 0.67), eps 4 (p 0.61).
TARGET = "golden retriever"


def run(models: Models, *, backbone: str = LESSON_BACKBONE, photo: str = "chelsea",
        eps: float = 2.0, steps: int = 10, target: str | None = TARGET) -> dict:
    """Attacks a photo (PGD, L-inf) within `eps` pixel units, towards `target` if given.

    Args:
        models: where the backbone comes from.
        backbone: a registry name with an ImageNet classifier. Defaults to EfficientNet-Lite0.
        photo: a built-in photo: "chelsea", "coffee" or "astronaut". Defaults to "chelsea".
        eps: the most any pixel may change, in 0-255 units. Defaults to 2.
        steps: PGD steps. Defaults to 10.
        target: an ImageNet class name or index to reach; None pushes the photo to any other
            class. Defaults to "golden retriever" (the cat becomes a dog).

    Returns:
        numbers: `{"before": {"index", "label", "prob"}, "after": {...}, "target", "success",
        "linf", "eps", "steps"}`; images: original, adversarial, amplified perturbation; figures: top-5 before and
        after.
    """
    from lib.backbones.imagenet import resolve_class
    from lib.inside.attacks import attack
    from lib.inside.canvas import deprocess
    from lib.inside.display import amplify_perturbation, sample_image
    from lib.plots.inside import make_topk_comparison_figure

    loaded, probe = models.backbone(backbone), models.probe(backbone)
    image = sample_image(photo, loaded.spec.input_size)
    goal = None if target is None else resolve_class(target, probe.labels)
    result = attack(probe, image, method="pgd", eps=float(eps), steps=int(steps), target=goal)
    amplified, gain = amplify_perturbation(result.perturbation)
    numbers = {
        "backbone": backbone, "photo": photo,
        "before": result.before[0], "after": result.after[0],
        "target": None if goal is None else {"index": goal, "label": probe.labels[goal],
                                              "prob_before": result.target_prob_before,
                                              "prob_after": result.target_prob_after},
        "success": result.success, "linf": result.linf, "eps": result.eps,
        "steps": result.steps, "gain": gain,
    }
    images = {"original": deprocess(result.original), "adversarial": deprocess(result.adversarial),
              "perturbation": amplified}
    figures = {"topk": make_topk_comparison_figure(result.before, result.after, target=goal)}
    return {"numbers": numbers, "images": images, "figures": figures}


LESSON = Lesson(
    name="adversarial",
    title="Fooling a network with an invisible change",
    paragraphs=(
        "A network's answer depends on every pixel. If we know which way each pixel pushes the "
        "answer (the gradient), we can nudge all of them a tiny bit in the direction that makes "
        "a class we choose more likely: here, a cat photo towards 'golden retriever'.",
        "ε is the most any pixel may change, on the 0-255 scale. A change of 2 is far below what "
        "an eye notices, yet after a few nudges the network names a different class, often with "
        "high confidence.",
    ),
    notice=(
        "The original and the adversarial image look the same to us.",
        "The perturbation is shown amplified (its gain is in the caption); unamplified it is "
        "almost black-grey noise.",
        "The confidence can stay high: the network is sure, and wrong.",
    ),
    question="The network is right on the original photo. Does that mean it 'sees' a cat the way "
             "we do?",
    answer="No. It relies on many small pixel patterns that a person ignores; a change too small "
           "to see moves them enough to change the answer. High accuracy on normal photos says "
           "nothing about robustness to changes chosen on purpose.",
    run=run,
    defaults={"backbone": LESSON_BACKBONE, "photo": "chelsea", "eps": 2.0, "steps": 10,
              "target": TARGET},
    timing="about 2–5 s once the backbone is loaded (the first attack also compiles: about 10 s)",
)
