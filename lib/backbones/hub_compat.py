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

A handle is never added to the registry: `hub_spec(handle)` gives its spec, memoised per process
(specs are immutable), and `lib.backbones.get_spec` calls it for any handle, so a run's config keeps
the handle itself. A trailing `@SIZE` sets the input side (default: the SavedModel signature's
fixed size, else 224).

A SavedModel is a program: before any graph of it is loaded, `lib.backbones.hub_safety` checks where
it lives (`TRANSFERLAB_HUB_ROOTS`, never a visitor's upload) and every op it holds.

A model that contains a TFSMLayer cannot be loaded by `keras.models.load_model` in safe mode (Keras
refuses to deserialise external SavedModels there), so runs built on hub backbones say so.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from lib.backbones.hub_safety import check_model_folder, check_saved_model, hub_download_root
from lib.backbones.spec import CACHED, DOWNLOAD_NEEDED, OFFLINE, BackboneSpec
from lib.errors import TransferLabError
from lib.lazy import lazy_module
from lib.net import reachable

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

FEATURES_LAYER = "features"
SERVING_ENDPOINT = "serving_default"
FALLBACK_ENDPOINT = "__call__"  # Reusable SavedModels without signatures still have this
EXPORT_OUTPUT_KEY = "feature_vector"
PROBE_TIMEOUT_S = 2.0
DEFAULT_INPUT_SIZE = 224
MIN_INPUT_SIZE = 8
MAX_INPUT_SIZE = 1024
SIZE_SUFFIX = re.compile(r"@(\d+)$")


def is_url(handle: str) -> bool:
    """True for http(s) handles (tfhub.dev, kaggle.com, or any server)."""
    return urlparse(handle).scheme in ("http", "https")


def looks_like_handle(text: str) -> bool:
    """True when `text` is a hub handle rather than a registry name: a URL, `hub:...`, or a path."""
    text = SIZE_SUFFIX.sub("", text)
    return (text.startswith(("hub:", "/", "~", "./", "../")) or is_url(text)
            or Path(text).expanduser().is_dir())


def split_handle(text: str) -> tuple[str, int | None]:
    """`"hub:URL@160"` -> `("URL", 160)`; no `@SIZE` gives None."""
    text = text.strip().removeprefix("hub:")
    match = SIZE_SUFFIX.search(text)
    if match is None:
        return text, None
    return text[: match.start()], int(match.group(1))


def hub_cache_dir(handle: str) -> Path:
    """Where `tensorflow_hub` keeps (or would keep) the resolved copy of a URL handle."""
    return hub_download_root() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def handle_status(handle: str) -> str:
    """`offline` for a local folder, `cached` for a downloaded URL, else `download needed`."""
    if not is_url(handle):
        return OFFLINE
    return CACHED if (hub_cache_dir(handle) / "saved_model.pb").is_file() else DOWNLOAD_NEEDED


def resolve_handle(handle: str) -> str:
    """Returns a checked local SavedModel folder for `handle`, downloading a URL only when it can.

    Every folder returned has passed `hub_safety`: a local folder must sit under
    `TRANSFERLAB_HUB_ROOTS` (never in visitors' uploads), and the SavedModel must hold only pure
    tensor ops. Nothing of the model has run when this returns.

    Raises:
        TransferLabError: a folder outside the allowed roots, a folder that is not a SavedModel, a
            URL that is neither cached nor reachable (offline), a failed download, or a model that
            holds an op outside the allow-list.
    """
    handle = handle.removeprefix("hub:")
    if not is_url(handle):
        path = check_model_folder(handle)
        if not (path / "saved_model.pb").is_file():
            raise TransferLabError(
                f"Received hub handle `{handle}`: not a URL, and not a folder with a saved_model.pb."
            )
        check_saved_model(path)
        return str(path)
    folder = _download(handle)
    check_saved_model(folder)
    return folder


def _download(handle: str) -> str:
    if handle_status(handle) != CACHED and not reachable(urlparse(handle).hostname or "", PROBE_TIMEOUT_S):
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
    if not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise TransferLabError(
            f"Received `input_size={input_size}`; a hub image model takes {MIN_INPUT_SIZE} to "
            f"{MAX_INPUT_SIZE} px."
        )
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


def hub_spec(handle: str, input_size: int | None = None) -> BackboneSpec:
    """Resolves a TF Hub image feature-vector model to a spec, without registering anything.

    The handle is resolved and checked now (so a bad, refused or offline handle fails here, with a
    message), and the feature dimension is read from one build. Specs are memoised per process.

    Args:
        handle: URL, `hub:URL`, or a local SavedModel folder, optionally ending in `@SIZE`.
        input_size: square input side in pixels. Defaults to the `@SIZE` suffix, else the
            SavedModel signature's fixed size, else 224.

    Returns:
        The spec; its `name` is the handle (with `@SIZE` when the size is not the default), so
        `get_spec(spec.name)` gives it back in any process.

    Raises:
        TransferLabError: bad or refused handle, offline with an uncached URL, or not a
            feature-vector model.
    """
    bare, suffix_size = split_handle(handle)
    return _hub_spec(bare, input_size or suffix_size)


@lru_cache(maxsize=32)
def _hub_spec(handle: str, input_size: int | None) -> BackboneSpec:
    default = signature_input_size(resolve_handle(handle)) or DEFAULT_INPUT_SIZE
    size = input_size or default
    model = build_hub_model(handle, size)
    return BackboneSpec(
        name=handle if size == default else f"{handle}@{size}",
        family="TF Hub",
        builder=_hub_builder(handle, size),
        input_size=size,
        preprocessing="x / 255",
        feature_dim=int(model.output.shape[-1]),
        cut_points=(FEATURES_LAYER,),
        weights_source=f"hub:{handle}",
        weights_status=lambda: handle_status(handle),
        num_classes=0,
    )


def signature_input_size(folder: str) -> int | None:
    """The fixed square image side of a SavedModel's serving signature, or None (read from the proto)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(folder) / "saved_model.pb").read_bytes())
    for meta in saved.meta_graphs:
        signature = meta.signature_def.get(SERVING_ENDPOINT)
        for tensor in (signature.inputs.values() if signature else ()):
            dims = [d.size for d in tensor.tensor_shape.dim]
            if len(dims) == 4 and dims[1] == dims[2] and dims[1] > 0:
                return int(dims[1])
    return None
