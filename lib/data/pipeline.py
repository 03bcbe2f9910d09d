"""The tf.data input pipeline: decode, centre-crop and resize, cache, shuffle, augment, prefetch.

Images come out as float32 pixels in [0, 255] (models hold their own preprocessing) with the same
geometry as `lib.images.resize_center_crop`: the centre square of the shorter side, resized to
`image_size`. `load_arrays` runs the very same decode function, so the feature-cache path and the
streaming path see identical pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import keras
import numpy as np
import tensorflow as tf

from lib.data.records import ImageRecord
from lib.errors import TransferLabError

# Decoding 600 cats/dogs JPEGs to 224 px on 2 busy CPU cores took 3.7 s with 1 parallel call,
# 2.7 s with 2, 2.8 s with 4 and 2.0 s with AUTOTUNE, which also adapts to bigger machines.
DECODE_PARALLEL = tf.data.AUTOTUNE
# Batches per load_arrays step (bigger batches amortise the Python overhead).
ARRAY_BATCH = 64
# Resampling matrices kept per (input side, output side): a dataset has a few dozen distinct sides.
RESIZE_MATRICES = 512


def decode_and_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Reads one image file and returns its centre square resized to `image_size`.

    Cropping before resizing matches `PIL.ImageOps.fit` (what `resize_center_crop` uses) and
    resizes fewer pixels.

    Args:
        path: a scalar string tensor; the file is RGB JPEG/PNG (odd files were converted).
        image_size: the output side S.

    Returns:
        A float32 tensor (S, S, 3) of pixels in [0, 255].
    """
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side, :]  # (side, side, 3) uint8
    resized = tf.image.resize(
        tf.cast(square, tf.float32), (image_size, image_size), method="bilinear", antialias=True
    )
    return tf.clip_by_value(resized, 0.0, 255.0)  # antialias kernels can overshoot by a hair


def validate_arguments(
    records: Sequence[ImageRecord], num_classes: int, image_size: int, batch_size: int
) -> None:
    """Checks the pipeline arguments, echoing bad values.

    Raises:
        TransferLabError: no records, or a size, batch size or label out of range.
    """
    if not records:
        raise TransferLabError("No images to feed the model: this split is empty.")
    if num_classes < 2:
        raise TransferLabError(
            f"Received `num_classes={num_classes}`; a classifier needs 2 or more."
        )
    if image_size < 1:
        raise TransferLabError(
            f"Received `image_size={image_size}`; it must be a positive pixel count."
        )
    if batch_size < 1:
        raise TransferLabError(f"Received `batch_size={batch_size}`; it must be 1 or more.")
    bad = [r.label for r in records if not 0 <= r.label < num_classes]
    if bad:
        raise TransferLabError(
            f"Received a label {bad[0]} outside 0..{num_classes - 1} (`num_classes={num_classes}`)."
        )


def decoded_dataset(
    records: Sequence[ImageRecord], num_classes: int, image_size: int
) -> tf.data.Dataset:
    """Returns an unbatched dataset of `(image (S, S, 3) float32, one-hot label float32)` in order."""
    paths = tf.constant([r.path for r in records], dtype=tf.string)
    labels = tf.constant([r.label for r in records], dtype=tf.int32)

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return decode_and_resize(path, image_size), tf.one_hot(label, num_classes, dtype=tf.float32)

    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
        load, num_parallel_calls=DECODE_PARALLEL, deterministic=True
    )


def deterministic_options() -> tf.data.Options:
    """tf.data options that keep element order fixed (parallel maps still run in parallel)."""
    options = tf.data.Options()
    options.deterministic = True
    return options


def make_dataset(
    records: Sequence[ImageRecord],
    num_classes: int,
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    augmentation: keras.Sequential | None = None,
    cache: bool = True,
) -> tf.data.Dataset:
    """Builds the input pipeline for training or evaluation.

    Args:
        records: the images (e.g. `split.train`).
        num_classes: the number of classes (width of the one-hot labels).
        image_size: the model's input side S.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch, in a sequence of orders fixed by `seed` (and by the global
            TensorFlow seed, which `keras.utils.set_random_seed` sets). Defaults to False.
        seed: the shuffle seed. Defaults to 0.
        augmentation: Keras random layers applied to each batch after the cache, so every epoch
            sees new variations. Defaults to None.
        cache: keep decoded, resized images in memory after the first epoch. Defaults to True.

    Returns:
        A dataset of `(images float32 (B, S, S, 3) in [0, 255], labels float32 one-hot (B, C))`.

    Raises:
        TransferLabError: empty records or invalid sizes.
    """
    validate_arguments(records, num_classes, image_size, batch_size)
    dataset = decoded_dataset(records, num_classes, image_size)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        # An op-level seed makes the sequence of per-epoch orders reproducible.
        dataset = dataset.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmentation is not None:
        dataset = dataset.map(
            lambda images, labels: (augmentation(images, training=True), labels),
            num_parallel_calls=1,  # one call at a time keeps the random stream in a fixed order
        )
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(deterministic_options())


def load_arrays(
    records: Sequence[ImageRecord], num_classes: int, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Loads every image into memory with the same decode and geometry as `make_dataset`.

    Args:
        records: the images, in the order wanted.
        num_classes: the number of classes.
        image_size: the output side S.

    Returns:
        `(images float32 (N, S, S, 3) in [0, 255], labels float32 one-hot (N, C))`.
    """
    validate_arguments(records, num_classes, image_size, 1)
    dataset = decoded_dataset(records, num_classes, image_size).batch(ARRAY_BATCH)
    dataset = dataset.with_options(deterministic_options())
    images, labels = [], []
    for batch_images, batch_labels in dataset.as_numpy_iterator():
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.float32)


@lru_cache(maxsize=RESIZE_MATRICES)
def build_resize_matrix(n_in: int, n_out: int, channels: int = 1, offset: int = 0,
                        n_total: int | None = None):
    """The sparse weights of `tf.image.resize(bilinear, antialias=True)` along one axis.

    The same spans and weights as TensorFlow's ScaleAndTranslate kernel (triangle kernel widened
    by the downscale factor, clamped at the edges, each row normalised to 1), in float32.

    Args:
        n_in: input length (pixels along the axis).
        n_out: output length.
        channels: interleaved channels per pixel: the matrix is then `(n_out*channels,
            n_total*channels)` and resamples rows of `(n_total*channels,)` values. Defaults to 1.
        offset: where the `n_in` pixels start in a longer axis of `n_total`: the crop happens
            inside the product, with no copy of the cropped pixels. Defaults to 0.
        n_total: the length of that longer axis. Defaults to None (`n_in`: no crop).

    Returns:
        A float32 `scipy.sparse.csr_matrix`; `matrix @ values` resamples the axis.
    """
    from scipy import sparse  # scikit-image's dependency; only this path needs it

    n_total = n_in if n_total is None else n_total
    if not 0 <= offset <= n_total - n_in:
        raise ValueError(f"Received `offset={offset}`: {n_in} pixels do not fit in {n_total}.")
    inv_scale = np.float32(n_in / n_out)
    kernel_scale = max(inv_scale, np.float32(1.0))
    sample = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * inv_scale  # (n_out,)
    start = np.clip(np.ceil(sample - kernel_scale - 0.5), 0, n_in - 1).astype(np.int64)
    end = np.clip(np.floor(sample + kernel_scale - 0.5), 0, n_in - 1).astype(np.int64) + 1
    source = start[:, None] + np.arange(int((end - start).max()))[None, :]  # (n_out, taps)
    distance = np.abs((source.astype(np.float32) + np.float32(0.5) - sample[:, None]) / kernel_scale)
    weights = np.where(source < end[:, None], np.maximum(0.0, 1.0 - distance), 0.0).astype(np.float32)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), source.shape[1])
    columns = offset + np.minimum(source, n_in - 1).ravel()
    matrix = sparse.csr_matrix((weights.ravel(), (rows, columns)), shape=(n_out, n_total),
                               dtype=np.float32)
    if channels > 1:
        matrix = sparse.kron(matrix, sparse.identity(channels, np.float32), format="csr")
    return matrix


def decode_pixels(data: bytes) -> np.ndarray:
    """Decodes an RGB JPEG/PNG file's bytes with TensorFlow's decoder (the one `make_dataset` uses).

    Returns:
        uint8 `(H, W, 3)`.
    """
    return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8).numpy()


def crop_and_resize(image: np.ndarray, image_size: int) -> np.ndarray:
    """The centre square of a decoded image, resized as `decode_and_resize` does, in numpy.

    Two sparse products, the crop inside them: the height first on the image as decoded (its
    rows are contiguous, so it needs no copy), then the width with the crop's offset.

    Args:
        image: uint8 `(H, W, 3)`, C-contiguous as decoded.
        image_size: the output side S.

    Returns:
        float32 `(S, S, 3)` in [0, 255], equal to TensorFlow's result up to float rounding
        (measured at most 0.005 on 200 cats/dogs photos). A transposed view, not C-contiguous:
        the engine's copy into its input buffer does the transpose (one copy instead of two).
    """
    height, width, channels = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    band = np.ascontiguousarray(image[top : top + side]).reshape(side, width * channels)
    rows = build_resize_matrix(side, image_size) @ band  # (S, W*3) float32
    across = build_resize_matrix(side, image_size, channels, left, width)  # (S*3, W*3)
    out = across @ rows.T  # (S*3, S): out[j*3 + c, i] is pixel (i, j, c)
    np.clip(out, 0.0, 255.0, out=out)  # antialias kernels can overshoot by a hair
    return out.T.reshape(image_size, image_size, channels)  # a view


def load_pixels(path: str, image_size: int) -> np.ndarray:
    """One image as `decode_and_resize` makes it, for engines that run outside TensorFlow.

    TensorFlow decodes (so the JPEG decoder and its settings are the very ones `make_dataset`
    uses: PIL's decoder differs by up to 9 levels), eagerly on the calling thread; the crop and the
    antialiased resize run in numpy. So LiteRT workers can decode in parallel without tf.data's
    thread pools competing with the interpreters for the cores.

    Args:
        path: an RGB JPEG/PNG file (odd files were converted when the folder was scanned).
        image_size: the output side S.

    Returns:
        float32 `(S, S, 3)` pixels in [0, 255].
    """
    with open(path, "rb") as f:
        data = f.read()
    return crop_and_resize(decode_pixels(data), image_size)
