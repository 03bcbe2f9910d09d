"""TF Hub feature vectors in Keras 3: the one place that knows about `tensorflow_hub`.

`hub.KerasLayer` does not work inside Keras 3 models (tensorflow/hub#903), so a handle (a
tfhub.dev/Kaggle URL or a local SavedModel folder) is resolved with `tensorflow_hub.resolve` and
wrapped in `keras.layers.TFSMLayer`, which tracks the SavedModel's variables so they can be
fine-tuned. The wrapper follows the registry contract:

    pixels (B, S, S, 3) in [0, 255] -> `preprocess` (x / 255: hub image models take [0, 1])
        -> `hub` (TFSMLayer) -> `features` (B, D)

It is a feature-vector backbone: `num_classes=0`, `cut_points=("features",)`.

`export_hub` writes the other direction: any registry backbone as a hub-format image feature-vector
SavedModel (a Reusable SavedModel: `__call__(images, training)`, `variables`, `trainable_variables`,
`regularization_losses`, plus a `serving_default` signature `images -> {"feature_vector"}`), with
float32 [0, 1] images in and pooled features out.

A model that contains a TFSMLayer cannot be loaded by `keras.models.load_model` in safe mode (Keras
refuses to deserialise external SavedModels there), so runs built on hub backbones say so.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import keras

from lib.backbones.registry import (
    CACHED,
    DOWNLOAD_NEEDED,
    OFFLINE,
    BackboneSpec,
    get_spec,
    register_backbone,
)
from lib.errors import TransferLabError

FEATURES_LAYER = "features"
SERVING_ENDPOINT = "serving_default"
FALLBACK_ENDPOINT = "__call__"  # Reusable SavedModels without signatures still have this
EXPORT_OUTPUT_KEY = "feature_vector"
PROBE_TIMEOUT_S = 2.0


def is_url(handle: str) -> bool:
    """True for http(s) handles (tfhub.dev, kaggle.com, or any server)."""
    return urlparse(handle).scheme in ("http", "https")


def looks_like_handle(text: str) -> bool:
    """True when `text` is a hub handle rather than a registry name: a URL, `hub:...`, or a folder."""
    return text.startswith("hub:") or is_url(text) or Path(text).expanduser().is_dir()


def hub_cache_dir(handle: str) -> Path:
    """Where `tensorflow_hub` keeps (or would keep) the resolved copy of a URL handle."""
    from tensorflow_hub import resolver

    root = resolver.tfhub_cache_dir(use_temp=True)
    return Path(root) / hashlib.sha1(handle.encode("utf8")).hexdigest()


def handle_status(handle: str) -> str:
    """`offline` for a local folder, `cached` for a downloaded URL, else `download needed`."""
    if not is_url(handle):
        return OFFLINE
    return CACHED if (hub_cache_dir(handle) / "saved_model.pb").is_file() else DOWNLOAD_NEEDED


def _host_reachable(host: str) -> bool:
    from lib.backbones.applications import network_reachable

    return network_reachable(host, PROBE_TIMEOUT_S)


def resolve_handle(handle: str) -> str:
    """Returns a local SavedModel folder for `handle`, downloading a URL only when it can.

    Raises:
        TransferLabError: a folder that is not a SavedModel, or a URL that is neither cached nor
            reachable (offline), or a download that fails.
    """
    handle = handle.removeprefix("hub:")
    if not is_url(handle):
        path = Path(handle).expanduser()
        if not (path / "saved_model.pb").is_file():
            raise TransferLabError(
                f"Received hub handle `{handle}`: not a URL, and not a folder with a saved_model.pb."
            )
        return str(path)
    if handle_status(handle) != CACHED and not _host_reachable(urlparse(handle).hostname or ""):
        raise TransferLabError(
            f"The TF Hub model `{handle}` is not available offline: it is not in the hub cache "
            f"({hub_cache_dir(handle).parent}) and {urlparse(handle).hostname} cannot be reached. "
            "Run once with internet access, or download it and pass the local folder instead."
        )
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as e:  # noqa: BLE001  network and archive errors come in many types
        raise TransferLabError(f"Could not fetch the TF Hub model `{handle}`: {e}") from e


def _hub_layer(path: str) -> keras.layers.Layer:
    # Prefer the serving signature; fall back to the Reusable SavedModel's `__call__`.
    try:
        return keras.layers.TFSMLayer(path, call_endpoint=SERVING_ENDPOINT, trainable=True, name="hub")
    except ValueError:
        pass
    try:
        return keras.layers.TFSMLayer(path, call_endpoint=FALLBACK_ENDPOINT, trainable=True, name="hub")
    except ValueError as e:
        raise TransferLabError(
            f"The SavedModel at `{path}` has neither a `{SERVING_ENDPOINT}` signature nor `__call__`: {e}"
        ) from e


def build_hub_model(handle: str, input_size: int = 224) -> keras.Model:
    """Wraps a hub image feature-vector model to the registry contract.

    Args:
        handle: URL, `hub:URL`, or a local SavedModel folder.
        input_size: square input side in pixels the model expects. Defaults to 224.

    Returns:
        pixels (B, S, S, 3) in [0, 255] -> `features` (B, D); the TFSMLayer is trainable.

    Raises:
        TransferLabError: bad handle, offline, or a model whose output is not one feature vector.
    """
    if input_size < 8:
        raise TransferLabError(f"Received `input_size={input_size}`; a hub image model needs at least 8 px.")
    path = resolve_handle(handle)
    pixels = keras.Input((input_size, input_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess")(pixels)  # hub images are [0, 1]
    out = _hub_layer(path)(x)
    if isinstance(out, dict):
        if len(out) != 1:
            raise TransferLabError(
                f"The hub model `{handle}` returns several outputs ({', '.join(out)}); "
                "TransferLab needs an image feature vector."
            )
        out = next(iter(out.values()))
    if len(out.shape) != 2:
        raise TransferLabError(
            f"The hub model `{handle}` returns shape {tuple(out.shape)}; expected (batch, features)."
        )
    features = keras.layers.Activation("linear", name=FEATURES_LAYER)(out)
    return keras.Model(pixels, features, name="hub_feature_vector")


def default_name(handle: str) -> str:
    """A registry name from a handle, e.g. `hub_mobilenet_v2_100_224_feature_vector_5`."""
    handle = handle.removeprefix("hub:").rstrip("/")
    parts = [p for p in re.split(r"[/\\]", urlparse(handle).path if is_url(handle) else handle) if p]
    tail = "_".join(parts[-3:]) if is_url(handle) else (parts[-1] if parts else "model")
    slug = re.sub(r"[^a-z0-9]+", "_", tail.lower()).strip("_")
    return f"hub_{slug or 'model'}"


def _hub_builder(handle: str, input_size: int):
    def builder(pretrained: bool) -> keras.Model:
        if not pretrained:
            raise TransferLabError(
                f"The hub model `{handle}` has no random-weights variant: its graph comes with its weights."
            )
        return build_hub_model(handle, input_size)

    return builder


def register_hub_backbone(
    handle: str,
    name: str | None = None,
    input_size: int = 224,
    *,
    top1: float | None = None,
    top5: float | None = None,
    accuracy_source: str = "",
    replace: bool = True,
) -> BackboneSpec:
    """Adds a TF Hub image feature-vector model to the registry at runtime.

    The handle is resolved now (so a bad or offline handle fails here, with a message), and the
    feature dimension is read from one build.

    Args:
        handle: URL, `hub:URL`, or a local SavedModel folder.
        name: registry key. Defaults to one derived from the handle.
        input_size: square input side in pixels. Defaults to 224.
        top1, top5, accuracy_source: published accuracy, when known.
        replace: overwrite an entry of the same name (re-registering a handle). Defaults to True.

    Returns:
        The new spec.

    Raises:
        TransferLabError: bad handle, offline with an uncached URL, or not a feature-vector model.
    """
    handle = handle.removeprefix("hub:")
    name = name or default_name(handle)
    model = build_hub_model(handle, input_size)
    feature_dim = int(model.output.shape[-1])
    spec = BackboneSpec(
        name=name,
        family="TF Hub",
        builder=_hub_builder(handle, input_size),
        input_size=input_size,
        preprocessing="x / 255",
        feature_dim=feature_dim,
        cut_points=(FEATURES_LAYER,),
        weights_source=f"hub:{handle}",
        weights_status=lambda: handle_status(handle),
        top1=top1,
        top5=top5,
        accuracy_source=accuracy_source,
        num_classes=0,
    )
    return register_backbone(spec, replace=replace)


def ensure_backbone(name_or_handle: str, input_size: int = 224) -> str:
    """Returns a registry name: itself, or, for a hub handle, the name it was registered under."""
    if looks_like_handle(name_or_handle):
        return register_hub_backbone(name_or_handle, input_size=input_size).name
    return get_spec(name_or_handle).name


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
