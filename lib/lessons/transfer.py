"""Lesson `transfer-vs-scratch`: the same network on the same few digits, once with a frozen
pretrained body and once from random weights."""

from __future__ import annotations

from lib.errors import TransferLabError
from lib.lessons.lesson import LESSON_BACKBONE, Lesson, Models

DATA = "builtin:digits"
# Both networks see 64x64 images (the digits are 28x28), so training all of Lite0 from scratch
# fits in a lesson; the README's table is the same comparison at Lite0's own 224 pixels.
SIZE = 64
EPOCHS = 20
# 50 per class would add the slowest run by far (scratch on 500 images): `--param` adds it.
IMAGES_PER_CLASS = "2,5,10,20"
CURVE_IMAGES = 10  # the count whose learning curves are drawn (the claim: 10 per class)


def parse_counts(text: str) -> list[int]:
    """`"2,5,10"` -> `[2, 5, 10]`, sorted and unique.

    Raises:
        TransferLabError: an entry that is not a positive whole number.
    """
    try:
        counts = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError as e:
        raise TransferLabError(f"Received `images_per_class={text}`; write counts such as "
                               "2,5,10,20,50.") from e
    if not counts or counts[0] < 1:
        raise TransferLabError(f"Received `images_per_class={text}`; counts must be 1 or more.")
    return counts


def run(models: Models, *, backbone: str = LESSON_BACKBONE, data: str = DATA, size: int = SIZE,
        epochs: int = EPOCHS, images_per_class: str = IMAGES_PER_CLASS,
        curve_images: int = CURVE_IMAGES, seed: int = 0, on_progress=None) -> dict:
    """Trains transfer and scratch at each count of training images per class.

    Args:
        models: where the backbone comes from.
        backbone: the architecture (and, for transfer, its weights). Defaults to EfficientNet-Lite0.
        data: the dataset. Defaults to `builtin:digits`.
        size: the input side both networks see, in pixels. Defaults to 64.
        epochs: epochs for each network at each count. Defaults to 20.
        images_per_class: comma-separated training counts. Defaults to "2,5,10,20".
        curve_images: the count whose per-epoch curves are returned (added to the counts if
            missing). Defaults to 10.
        seed: the split, the heads and the random weights. Defaults to 0.
        on_progress: optional `on_progress(done, total, message)` after each epoch.

    Returns:
        numbers: `{"images_per_class": [...], "transfer": [...], "scratch": [...]` (test accuracy
        after the last epoch), `"curves": {"images_per_class", "transfer": [...per epoch],
        "scratch": [...]}`, `"test_images", "size", "epochs", "chance"}`; figures: the curves and
        accuracy against images per class.
    """
    from lib.lessons.small_data import (
        build_sized_body,
        load_lesson_images,
        pooled_features,
        split_per_class,
        train_head_step,
        train_scratch_step,
    )
    from lib.plots.transfer import make_accuracy_vs_images_figure, make_learning_curves_figure

    counts = sorted(set(parse_counts(images_per_class)) | {int(curve_images)})
    if not isinstance(epochs, int) or not 1 <= epochs <= 200:
        raise TransferLabError(f"Received `epochs={epochs}`; use 1 to 200.")
    images = load_lesson_images(data, size)
    split_per_class(images.labels, counts[-1], seed)  # too many per class fails before any work
    num_classes = len(images.class_names)
    loaded = models.backbone(backbone)
    features = pooled_features(build_sized_body(loaded, size), images.pixels)  # (N, C), once
    total, done = 2 * epochs * len(counts), [0]
    numbers: dict = {"backbone": backbone, "data": data, "size": size, "epochs": epochs,
                     "images_per_class": counts, "transfer": [], "scratch": [],
                     "chance": 1.0 / num_classes}
    curves = {}
    for count in counts:
        train, test = split_per_class(images.labels, count, seed)
        for kind in ("transfer", "scratch"):
            def report(epoch: int, accuracy: float, kind=kind, count=count) -> None:
                done[0] += 1
                if on_progress is not None:
                    on_progress(done[0], total, f"{count} per class, {kind}: epoch {epoch}/"
                                                f"{epochs}, test accuracy {accuracy:.0%}")
            if kind == "transfer":
                curve, _ = train_head_step(features[train], images.labels[train], features[test],
                                        images.labels[test], num_classes=num_classes,
                                        epochs=epochs, seed=seed, on_epoch=report)
            else:
                body = build_sized_body(loaded, size, pretrained=False, seed=seed)
                curve = train_scratch_step(body, images.pixels[train], images.labels[train],
                                           images.pixels[test], images.labels[test],
                                           num_classes=num_classes, epochs=epochs, seed=seed,
                                           on_epoch=report)
            numbers[kind].append(round(curve[-1], 4))
            if count == curve_images:
                curves[kind] = [round(a, 4) for a in curve]
        numbers["test_images"] = len(test)
    numbers["curves"] = {"images_per_class": int(curve_images), **curves}
    figures = {
        "curves": make_learning_curves_figure(curves["transfer"], curves["scratch"],
                                              images_per_class=int(curve_images),
                                              chance=numbers["chance"]),
        "accuracy_vs_images": make_accuracy_vs_images_figure(
            counts, numbers["transfer"], numbers["scratch"], chance=numbers["chance"]),
    }
    return {"numbers": numbers, "images": {}, "figures": figures}


LESSON = Lesson(
    name="transfer-vs-scratch",
    title="Transfer learning against training from scratch",
    paragraphs=(
        "We take one network (EfficientNet-Lite0) and train it twice on a handful of handwritten "
        "digits. Once its body keeps the weights it learned on a million ImageNet photos, frozen, "
        "and only a new last layer learns the digits. Once every weight starts random and the whole "
        "network learns from the digits alone.",
        "Same architecture, same images (shown at 64×64 pixels so it runs here), same optimiser, "
        "same number of epochs. The only difference is where the weights start.",
        "We repeat this with 2, 5, 10 and 20 training images per class, and test each "
        "network on 30 other images of each digit that it never saw.",
    ),
    notice=(
        "From random weights the network stops improving after a few epochs: a handful of "
        "images is too little to learn features from nothing, so it memorises them instead.",
        "The pretrained network keeps climbing and ends far higher (chance is 10%).",
        "On the right, follow the two lines as images per class are added: how far apart are "
        "they at 2 images, and at 20?",
    ),
    question="The pretrained network never saw a handwritten digit. Why does it still help?",
    answer="Its lower layers learned to find edges, strokes, corners and curves: parts of every "
           "image, digits included. The new last layer only has to learn which of these features "
           "go with which digit, which takes a few examples. From random weights the network must "
           "first learn the features themselves, and a few dozen images are not enough.",
    run=run,
    defaults={"backbone": LESSON_BACKBONE, "data": DATA, "size": SIZE, "epochs": EPOCHS,
              "images_per_class": IMAGES_PER_CLASS, "curve_images": CURVE_IMAGES, "seed": 0},
    timing="about 12 minutes: 8 networks are trained, so prepare it before class",
    replay=True,
)
