"""Lesson `features`: what a pretrained network sees, from edges at the bottom to ImageNet's classes
at the top, and why transfer learning keeps the body and replaces the top."""

from __future__ import annotations

import numpy as np

from lib.lessons.lesson import LESSON_BACKBONE, Lesson, Models
from lib.lessons.pictures import make_feature_mosaic, strongest_channels

ROLES = ("early", "middle", "late")
PHOTOS = ("chelsea", "coffee", "astronaut")


def pick_cuts(cut_points: tuple[str, ...]) -> dict[str, str]:
    """An early, a middle (a third of the way up) and the late cut point of a backbone."""
    return {"early": cut_points[0], "middle": cut_points[max(1, len(cut_points) // 3 - 1)],
            "late": cut_points[-1]}


def feature_maps_at(backbone, probe, image: np.ndarray, cut: str) -> np.ndarray:
    """(h, w, C) activations of one image at cut point `cut` (the cut model is built once)."""
    from lib.backbones import feature_model

    model = probe.cached(("lesson_features", cut), lambda: feature_model(backbone, cut))
    return np.asarray(model([image[None]], training=False))[0]  # (1, h, w, C) -> (h, w, C)


def run(models: Models, *, backbone: str = LESSON_BACKBONE, photo: str = "chelsea",
        channels: int = 8) -> dict:
    """ImageNet top-5 for a photo, and its strongest feature maps at three cut points.

    Args:
        models: where the backbone comes from.
        backbone: a registry name with an ImageNet classifier. Defaults to EfficientNet-Lite0.
        photo: a built-in photo: "chelsea", "coffee" or "astronaut". Defaults to "chelsea".
        channels: feature maps shown per cut point (the most active ones). Defaults to 8.

    Returns:
        numbers: `{"backbone", "photo", "top5": [{"index", "label", "prob"}], "cuts": [{"role",
        "layer", "height", "width", "channels"}]}`; images: the photo and one mosaic per cut;
        figures: the top-5 bars.
    """
    from lib.backbones.imagenet import top_k
    from lib.errors import TransferLabError
    from lib.inside.canvas import deprocess
    from lib.inside.display import sample_image
    from lib.plots.ui import make_topk_figure

    if channels < 1:
        raise TransferLabError(f"Received `channels={channels}`; show 1 or more feature maps.")
    loaded, probe = models.backbone(backbone), models.probe(backbone)
    image = sample_image(photo, loaded.spec.input_size)  # (S, S, 3) pixels
    top5 = top_k(probe.probabilities(image[None])[0], probe.labels, 5)
    cuts, images = [], {"photo": deprocess(image)}
    for role, layer in pick_cuts(loaded.spec.cut_points).items():
        maps = feature_maps_at(loaded, probe, image, layer)  # (h, w, C)
        shown = strongest_channels(maps, min(channels, maps.shape[-1]))
        images[f"maps_{role}"] = make_feature_mosaic(maps, shown)
        cuts.append({"role": role, "layer": layer, "height": int(maps.shape[0]),
                     "width": int(maps.shape[1]), "channels": int(maps.shape[-1])})
    numbers = {"backbone": backbone, "photo": photo, "top5": top5, "cuts": cuts}
    figures = {"top5": make_topk_figure(top5, title=f"{backbone}: top-5 for {photo}")}
    return {"numbers": numbers, "images": images, "figures": figures}


LESSON = Lesson(
    name="features",
    title="What a pretrained network sees",
    paragraphs=(
        "A network trained on ImageNet has seen 1.2 million photos of 1000 kinds of things. Here "
        "it looks at one photo and gives its five best guesses.",
        "Between the pixels and the guess, every layer turns the image into feature maps: small "
        "pictures that light up where a pattern is found. We cut the network at three places and "
        "show the eight most active maps at each.",
        "Low layers find patterns every photo has; the top layer is built for ImageNet's 1000 "
        "classes. So for a new task we keep the body and replace only the top with our own "
        "classifier.",
    ),
    notice=(
        "Early maps are as detailed as the photo: edges, colours and textures.",
        "Going up, the maps get smaller (fewer pixels) and there are many more of them (channels).",
        "Late maps are coarse blobs that mark *where* a part of an object is, not what it looks like.",
    ),
    question="Why do we drop the top of the network and keep the body when we train on our own "
             "classes?",
    answer="The body's features (edges, textures, parts) are useful for almost any photo, and "
           "learning them needs millions of images. The top only maps features to ImageNet's 1000 "
           "classes, which are not ours, so we replace it with a small classifier for our classes.",
    run=run,
    defaults={"backbone": LESSON_BACKBONE, "photo": "chelsea", "channels": 8},
    timing="about 2 s once the backbone is loaded (loading it the first time: about 20 s)",
)
