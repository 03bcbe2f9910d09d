"""What every phase trains on: the backbone and data, their split, and the seeded batches.

Every path visits the training images in the same seeded order (`epoch_orders`), so the pixel path
and the feature-cache path see the same batches and end with the same head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from lib.backbones.registry import Backbone, get_spec, load_backbone
from lib.data.pipeline import make_dataset
from lib.data.sources import DatasetIndex, ImageRecord, load_dataset
from lib.data.split import Split, split_dataset
from lib.errors import TransferLabError
from lib.training.callbacks import TrainCallbacks
from lib.training.config import TrainConfig


def load_inputs(config: TrainConfig, backbone: Backbone | None, dataset: DatasetIndex | None,
                callbacks: TrainCallbacks, *, random_weights: bool = False
                ) -> tuple[Backbone, DatasetIndex, Split]:
    """Loads (or checks) the backbone and the data, and splits the data.

    Args:
        config: the run's settings.
        backbone: the loaded backbone, or None to load `config.backbone`.
        dataset: the loaded dataset, or None to load `config.data`.
        callbacks: where to say what is loading.
        random_weights: build the backbone's architecture from seeded random weights, every layer
            trainable (the from-scratch baseline); `backbone` must then be None. Defaults to False.

    Returns:
        `(backbone, dataset, split)`.

    Raises:
        TransferLabError: a backbone other than `config.backbone`, or a split without validation images.
    """
    if random_weights:
        backbone = build_random_backbone(config.backbone, config.seed)
    elif backbone is None:
        callbacks.message(f"Loading {config.backbone}…")
        backbone = load_backbone(config.backbone)
    elif backbone.spec.name != config.backbone:
        raise TransferLabError(
            f"Received backbone {backbone.spec.name} but `config.backbone={config.backbone}`."
        )
    if dataset is None:
        callbacks.message(f"Loading {config.data}…")
        dataset = load_dataset(config.data)
    return backbone, dataset, split_for(config, dataset)


def split_for(config: TrainConfig, dataset: DatasetIndex) -> Split:
    """The run's split of `dataset` (the same for the same data, fractions and seed)."""
    split = split_dataset(dataset, val_fraction=config.val_split, test_fraction=config.test_split,
                          seed=config.seed)
    if not split.val:
        raise TransferLabError(f"{dataset.name} left no validation images; raise `val_split`.")
    return split


def build_random_backbone(name: str, seed: int) -> Backbone:
    """A backbone's architecture with seeded random weights, not shared and every layer trainable."""
    spec = get_spec(name)
    # The builder's own initializers are unseeded; seed them so the baseline is reproducible.
    keras.utils.set_random_seed(seed)
    return Backbone(spec=spec, model=spec.builder(False), pretrained=False)


def model_id(backbone: Backbone) -> str:
    """Names the backbone's weights in the feature-cache key."""
    spec = backbone.spec
    return f"{spec.name}:{'pretrained' if backbone.pretrained else 'random'}:{spec.weights_source}"


def epoch_orders(n: int, epochs: int, seed: int) -> np.ndarray:
    """The order in which each epoch visits the training images, shared by every path.

    Returns:
        int64 `(epochs, n)`: row e is a permutation of range(n).
    """
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]) if epochs else np.zeros((0, n), int)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (a step group must not straddle two epochs)."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def one_hot(records: Sequence[ImageRecord], num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[[r.label for r in records]]


def feature_dataset(features: np.ndarray, labels: np.ndarray, orders: np.ndarray,
                    batch_size: int) -> tf.data.Dataset:
    """Batches of `(features, labels)` for all epochs, epoch e in the order `orders[e]`."""
    features_t, labels_t = tf.constant(features), tf.constant(labels)
    # Batching inside each epoch's row keeps the ragged last batch in its own epoch.
    indices = tf.data.Dataset.from_tensor_slices(orders.astype(np.int64)).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    )
    return indices.map(
        lambda idx: (tf.gather(features_t, idx), tf.gather(labels_t, idx)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)


def pixel_dataset(records: Sequence[ImageRecord], num_classes: int, image_size: int,
                  batch_size: int, orders: np.ndarray,
                  augmentation: keras.Sequential | None) -> tf.data.Dataset:
    """Batches of `(pixels, labels)` for all epochs, epoch e in the order `orders[e]`.

    Each epoch is its own batched dataset, so no batch mixes two epochs (and the fast path's
    batches hold exactly the same images).
    """
    dataset = None
    for order in orders:
        epoch = make_dataset([records[i] for i in order], num_classes, image_size, batch_size,
                             shuffle=False, augmentation=augmentation, cache=False)
        dataset = epoch if dataset is None else dataset.concatenate(epoch)
    return dataset
