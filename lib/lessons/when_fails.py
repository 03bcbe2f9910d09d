"""Lesson `when-transfer-fails`: digits are far from ImageNet's photos, so where the network is cut,
and whether its body is fine-tuned, matter."""

from __future__ import annotations

from lib.errors import TransferLabError
from lib.lessons.lesson import LESSON_BACKBONE, Lesson, Models
from lib.lessons.transfer import DATA, SIZE

IMAGES_PER_CLASS = 20
EPOCHS = 15


def choose_cuts(cut_points: tuple[str, ...], cuts: str | None) -> list[str]:
    """The cuts to compare, bottom to top: the named ones, or three spread over the body (a third
    of the way up, two thirds, and the top feature layer).

    Raises:
        TransferLabError: a named cut that is not one of `cut_points`.
    """
    if cuts:
        chosen = [c.strip() for c in str(cuts).split(",") if c.strip()]
        unknown = [c for c in chosen if c not in cut_points]
        if unknown:
            raise TransferLabError(f"Received `cuts={cuts}`; the backbone can be cut at: "
                                   f"{', '.join(cut_points)}.")
        return sorted(set(chosen), key=cut_points.index)
    n = len(cut_points)
    return list(dict.fromkeys((cut_points[n // 3], cut_points[2 * n // 3], cut_points[-1])))


def run(models: Models, *, backbone: str = LESSON_BACKBONE, data: str = DATA, size: int = SIZE,
        images_per_class: int = IMAGES_PER_CLASS, epochs: int = EPOCHS, cuts: str | None = None,
        seed: int = 0, on_progress=None) -> dict:
    """A head on the frozen body cut at each of `cuts`, then the whole body fine-tuned.

    Measured on Lite0 with the defaults (seed 0): frozen at block4a / block6a / top 47% / 78% / 80%,
    fine-tuned 91% (300 test digits; chance 10%).

    Args:
        models: where the backbone comes from.
        backbone: the pretrained network. Defaults to EfficientNet-Lite0.
        data: the dataset. Defaults to `builtin:digits`.
        size: the input side in pixels. Defaults to 64.
        images_per_class: training images per class. Defaults to 20.
        epochs: epochs for each head, and for fine-tuning. Defaults to 15.
        cuts: comma-separated cut points; None picks three (see `choose_cuts`). Defaults to None.
        seed: the split and the heads. Defaults to 0.
        on_progress: optional `on_progress(done, total, message)` after each epoch.

    Returns:
        numbers: `{"cuts": [...], "frozen": [accuracy per cut], "fine_tuned": accuracy of the
        whole body fine-tuned from the top cut's head, "fine_tune_curve", "best_frozen_cut",
        "chance", ...}`; figures: accuracy by cut, frozen and fine-tuned.
    """
    from lib.lessons.small_data import (
        build_sized_body,
        fine_tune_step,
        load_lesson_images,
        pooled_features,
        split_per_class,
        train_head_step,
    )
    from lib.plots.transfer import make_cut_comparison_figure

    if not isinstance(epochs, int) or not 1 <= epochs <= 200:
        raise TransferLabError(f"Received `epochs={epochs}`; use 1 to 200.")
    loaded = models.backbone(backbone)
    chosen = choose_cuts(loaded.spec.cut_points, cuts)
    images = load_lesson_images(data, size)
    num_classes = len(images.class_names)
    train, test = split_per_class(images.labels, int(images_per_class), seed)
    x_train, y_train = images.pixels[train], images.labels[train]
    x_test, y_test = images.pixels[test], images.labels[test]
    total, done = epochs * (len(chosen) + 1), [0]

    def reporter(what: str):
        def report(epoch: int, accuracy: float) -> None:
            done[0] += 1
            if on_progress is not None:
                on_progress(done[0], total, f"{what}: epoch {epoch}/{epochs}, test accuracy "
                                            f"{accuracy:.0%}")
        return report

    frozen, head = [], None
    for cut in chosen:
        body = build_sized_body(loaded, size, cut=cut)
        curve, head = train_head_step(
            pooled_features(body, x_train), y_train, pooled_features(body, x_test), y_test,
            num_classes=num_classes, epochs=epochs, seed=seed, on_epoch=reporter(f"frozen, {cut}"))
        frozen.append(round(curve[-1], 4))
    # `head` is the top cut's: fine-tuning starts from the frozen network at the top.
    top = build_sized_body(loaded, size, cut=chosen[-1])
    tuned = fine_tune_step(top, head, x_train, y_train, x_test, y_test, epochs=epochs, seed=seed,
                           on_epoch=reporter(f"fine-tuning up to {chosen[-1]}"))
    best = max(range(len(chosen)), key=lambda i: frozen[i])
    numbers = {"backbone": backbone, "data": data, "size": size,
               "images_per_class": int(images_per_class), "epochs": epochs, "cuts": chosen,
               "frozen": frozen, "fine_tuned": round(tuned[-1], 4),
               "fine_tune_curve": [round(a, 4) for a in tuned], "best_frozen_cut": chosen[best],
               "test_images": len(test), "chance": 1.0 / num_classes}
    figure = make_cut_comparison_figure(chosen, frozen, [None] * (len(chosen) - 1) + [tuned[-1]],
                                        chance=numbers["chance"])
    return {"numbers": numbers, "images": {}, "figures": {"cuts": figure}}


LESSON = Lesson(
    name="when-transfer-fails",
    title="When transfer helps less: a task far from ImageNet",
    paragraphs=(
        "A pretrained network's layers go from general to specific. Early layers find edges and "
        "blobs that every image has; the top layers combine them into parts of ImageNet's "
        "objects: fur, wheels, eyes. Handwritten digits are white strokes on black, nothing "
        "like ImageNet's photos.",
        "On 20 digits per class we try three cuts with the body frozen (a third of the way up, "
        "two thirds, and the top, as usual), then fine-tune the whole body at a 10× smaller "
        "learning rate, so that its features themselves adapt to digits.",
    ),
    notice=(
        "Cutting lower does not help here: averaged over the image, the low layers' edges and "
        "blobs say little about which digit it is; the upper layers have combined them into "
        "shapes.",
        "Fine-tuning lifts the accuracy well above every frozen cut: the features had to change "
        "for digits.",
        "On photos like ImageNet's (cats and dogs, flowers), fine-tuning gains almost nothing "
        "over the frozen body (see the README). Features transfer best between similar tasks.",
    ),
    question="You have 50 X-ray images per class. Would you keep an ImageNet network frozen, and "
             "if not, what would you try?",
    answer="X-rays are far from ImageNet's photos, so frozen ImageNet features fit them less well "
           "than they fit photos. Start from the frozen network (it is a good baseline), then "
           "fine-tune its upper layers at a small learning rate so the features adapt; with very "
           "few images keep the lower layers frozen, so the network cannot simply memorise them. "
           "Features transfer best between similar tasks; the further the task, the more the "
           "features need to change.",
    run=run,
    defaults={"backbone": LESSON_BACKBONE, "data": DATA, "size": SIZE,
              "images_per_class": IMAGES_PER_CLASS, "epochs": EPOCHS, "cuts": None, "seed": 0},
    timing="about 1–2 minutes: three heads, then the whole body fine-tuned",
    replay=True,
)
