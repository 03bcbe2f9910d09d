"""Writes any registry backbone as a hub-format image feature-vector SavedModel (`export-hub`).

The SavedModel is a Reusable SavedModel: `__call__(images, training)`, `variables`,
`trainable_variables`, `regularization_losses`, plus a `serving_default` signature
`images -> {"feature_vector"}`, with float32 [0, 1] images in and pooled features out.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from lib.backbones.hub_compat import EXPORT_OUTPUT_KEY, SERVING_ENDPOINT
from lib.backbones.registry import get_spec
from lib.errors import TransferLabError


def _pooled_feature_model(model: keras.Model, cut: str) -> keras.Model:
    """pixels -> the cut layer's output, average-pooled when it is a map."""
    out = model.get_layer(cut).output
    if len(out.shape) == 4:
        out = keras.layers.GlobalAveragePooling2D(name="export_pool")(out)
    return keras.Model(model.inputs, out, name=f"{model.name}_features")


def export_hub(backbone: str, out_dir: str | os.PathLike, cut: str | None = None) -> dict:
    """Writes a registry backbone as a hub-format image feature-vector SavedModel.

    The SavedModel takes float32 images in [0, 1], shape (B, S, S, 3), and returns pooled features
    (B, D). It is built from a fresh, trainable copy of the backbone (the shared one stays frozen),
    so `trainable_variables` lists what a consumer may fine-tune.

    Args:
        backbone: registry name, e.g. `efficientnet_lite0`.
        out_dir: folder to write; must not exist or be empty.
        cut: cut point to export. Defaults to the backbone's feature layer (pooled).

    Returns:
        `{"out", "backbone", "cut", "input_size", "feature_dim", "signature", "pretrained"}`.

    Raises:
        TransferLabError: unknown backbone or cut, unavailable weights, or a non-empty `out_dir`.
    """
    import tensorflow as tf

    spec = get_spec(backbone)
    cut = cut or spec.feature_layer
    if cut not in spec.cut_points:
        raise TransferLabError(f"Received `cut={cut}`; {spec.name} can be cut at: {', '.join(spec.cut_points)}.")
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise TransferLabError(f"Received `out={out}`, which is not empty; choose a new folder.")
    features = _pooled_feature_model(spec.builder(True), cut)
    size = spec.input_size
    image_spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")

    @tf.function
    def call(images, training=False):
        # images: (B, S, S, 3) in [0, 1]; the backbone takes pixels in [0, 255].
        return features(images * 255.0, training=training)

    call.get_concrete_function(image_spec, training=False)
    call.get_concrete_function(image_spec, training=True)
    serving = tf.function(lambda images: {EXPORT_OUTPUT_KEY: call(images, training=False)},
                          input_signature=[image_spec])
    root = tf.__internal__.tracking.AutoTrackable()
    root.keras_model = features  # tracked, so its variables are saved
    root.variables = [v.value for v in features.weights]
    root.trainable_variables = [v.value for v in features.trainable_weights]
    root.regularization_losses = []
    root.__call__ = call
    tf.saved_model.save(root, str(out), signatures={SERVING_ENDPOINT: serving.get_concrete_function()})
    return {
        "out": str(out),
        "backbone": spec.name,
        "cut": cut,
        "input_size": size,
        "feature_dim": int(features.output.shape[-1]),
        "signature": f"{SERVING_ENDPOINT}: images float32 (B,{size},{size},3) in [0,1] -> {EXPORT_OUTPUT_KEY} (B,D)",
        "pretrained": True,
    }
