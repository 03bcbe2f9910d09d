"""A tiny random backbone for fast logic tests and smoke runs. Hidden from the zoo and the UI.

It follows the registry contract exactly (pixels in [0, 255], `preprocess`, BatchNorm, cut points,
`logits`, `probabilities`), so every code path can run on it in milliseconds.
"""

from __future__ import annotations

from lib.backbones.spec import RANDOM, BackboneSpec
from lib.lazy import lazy_module

keras = lazy_module("keras")  # imported at first use (see lib.lazy)

TINY_INPUT = 32
TINY_CLASSES = 10
TINY_FEATURES = 16


def build_tiny(pretrained: bool = False, seed: int = 0) -> keras.Model:
    """Builds the tiny classifier (32x32 input, 3 conv blocks, 10 classes) with seeded weights."""
    init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
    inputs = keras.Input((TINY_INPUT, TINY_INPUT, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    for i, filters in enumerate((8, 12, TINY_FEATURES), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                                kernel_initializer=init(i), name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"block{i}_out")(x)
    x = keras.layers.Activation("linear", name="top_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(TINY_CLASSES, kernel_initializer=init(9), name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny_random")


SPEC = BackboneSpec(
    name="tiny_random",
    family="test",
    builder=build_tiny,
    input_size=TINY_INPUT,
    preprocessing="x / 127.5 - 1",
    feature_dim=TINY_FEATURES,
    cut_points=("block1_out", "block2_out", "block3_out", "top_activation"),
    weights_source="random",
    weights_status=lambda: RANDOM,
    num_classes=TINY_CLASSES,
    listed=False,
)
