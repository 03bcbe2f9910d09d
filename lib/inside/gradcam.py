"""Grad-CAM: where in the image the evidence for a class lies.

For a feature map A (h, w, C) and a class score y (the logit), the channel weights are the spatial
mean of dy/dA, and the heatmap is ReLU(sum_c weight_c * A_c), shape (h, w), scaled to [0, 1]
(Selvaraju et al., 2017). Works for flat backbones and for trained runs whose feature map sits
inside a nested body model (see `lib.inside.probe.ModelProbe.map_and_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from lib.backbones.imagenet import top_k
from lib.errors import TransferLabError
from lib.inside.probe import ModelProbe, default_feature_layer

DEFAULT_ALPHA = 0.45
# Piecewise-linear "jet"-like colormap: positions in [0, 1] -> RGB in [0, 1].
COLORMAP_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
COLORMAP_RGB = np.array(
    [[0.0, 0.0, 0.5], [0.0, 0.4, 1.0], [0.2, 0.9, 0.5], [1.0, 0.85, 0.0], [0.8, 0.0, 0.0]]
)


@dataclass(frozen=True)
class GradCamResult:
    """A Grad-CAM explanation of one image.

    Attributes:
        heatmap: (h, w) float32 in [0, 1], the feature map's spatial shape; non-negative.
        overlay: (S, S, 3) uint8: the image with the upsampled heatmap blended on top.
        class_index: the class explained.
        label: its name.
        prob: the model's probability for it.
        top: the image's top-5.
        layer: the feature-map layer used.
    """

    heatmap: np.ndarray = field(repr=False)
    overlay: np.ndarray = field(repr=False)
    class_index: int
    label: str
    prob: float
    top: list[dict]
    layer: str


def make_cam_step(probe: ModelProbe, layer: str | None):
    """Compiles (feature map, dScore/dMap, scores) for a batch, once per layer (keras-io's way)."""
    map_and_scores = probe.map_and_scores(layer)

    @tf.function(reduce_retracing=True)
    def cam_gradients(images, classes):
        # images: (B, S, S, 3) pixels; classes: (B,) int32.
        with tf.GradientTape() as tape:
            tape.watch(images)  # frozen weights are not watched: record the graph from the input
            maps, scores = map_and_scores(images)  # (B, h, w, C), (B, K)
            chosen = tf.reduce_sum(tf.gather(scores, classes, batch_dims=1))
        grads = tape.gradient(chosen, maps)  # (B, h, w, C)
        return maps, grads, scores

    return cam_gradients


def cam_heatmap(maps: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM from one feature map and its gradient.

    Args:
        maps: (h, w, C) activations.
        grads: (h, w, C) gradients of the class score.

    Returns:
        (h, w) float32 in [0, 1] (all zeros when no location supports the class).
    """
    weights = grads.mean(axis=(0, 1))  # (C,)
    cam = np.maximum((maps * weights).sum(axis=-1), 0.0)  # (h, w)
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """Maps (H, W) values in [0, 1] to (H, W, 3) RGB in [0, 1] (blue -> green -> yellow -> red)."""
    h = np.clip(heatmap, 0.0, 1.0)
    return np.stack([np.interp(h, COLORMAP_STOPS, COLORMAP_RGB[:, c]) for c in range(3)], axis=-1)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Blends an upsampled heatmap onto an image.

    Args:
        image: (H, W, 3) pixels in [0, 255].
        heatmap: (h, w) in [0, 1].
        alpha: heatmap opacity where the heatmap is 1 (scaled by the heat). Defaults to 0.45.

    Returns:
        (H, W, 3) uint8.
    """
    if not 0 <= alpha <= 1:
        raise TransferLabError(f"Received `alpha={alpha}`; use 0 to 1.")
    height, width = image.shape[:2]
    big = tf.image.resize(heatmap[None, :, :, None], (height, width), method="bilinear")
    big = np.clip(big.numpy()[0, :, :, 0], 0.0, 1.0)  # (H, W)
    colour = colorize(big) * 255.0  # (H, W, 3)
    weight = (alpha * (0.3 + 0.7 * big))[..., None]  # (H, W, 1): cold areas stay mostly visible
    blended = (1.0 - weight) * np.asarray(image, np.float64) + weight * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def gradcam(
    probe: ModelProbe,
    image: np.ndarray,
    class_index: int | None = None,
    *,
    layer: str | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> GradCamResult:
    """Explains one prediction with Grad-CAM.

    Args:
        probe: the model.
        image: (S, S, 3) pixels in [0, 255] at the model's input size.
        class_index: the class to explain; defaults to the predicted class.
        layer: the feature-map layer; defaults to the last one (`top_activation` on Lite).
        alpha: overlay opacity. Defaults to 0.45.

    Returns:
        A `GradCamResult`.

    Raises:
        TransferLabError: wrong image shape, class out of range, no feature map, unknown layer.
    """
    x = np.asarray(image, np.float32)
    if x.shape != (probe.input_size, probe.input_size, 3):
        raise TransferLabError(
            f"Received an image of shape {x.shape}; the model takes ({probe.input_size}, "
            f"{probe.input_size}, 3)."
        )
    if class_index is not None and not 0 <= int(class_index) < probe.num_classes:
        raise TransferLabError(
            f"Received `class={class_index}`; the model has classes 0..{probe.num_classes - 1}."
        )
    step = probe.compiled(("gradcam", layer), lambda: make_cam_step(probe, layer))
    if class_index is None:
        class_index = int(np.argmax(probe.probabilities(x[None])[0]))
    maps, grads, scores = step(tf.constant(x[None]), tf.constant([int(class_index)], tf.int32))
    heatmap = cam_heatmap(maps.numpy()[0], grads.numpy()[0])
    probs = tf.nn.softmax(tf.cast(scores[0], tf.float64)).numpy()
    return GradCamResult(
        heatmap=heatmap,
        overlay=overlay_heatmap(x, heatmap, alpha),
        class_index=int(class_index),
        label=probe.labels[int(class_index)],
        prob=float(probs[int(class_index)]),
        top=top_k(probs, probe.labels, 5),
        layer=layer or default_feature_layer(probe.model),
    )
