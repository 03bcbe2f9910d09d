"""Splits, the tf.data pipeline, augmentation and the data figures."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import make_image_folder
from PIL import Image

from lib.data.augment import AugmentConfig, augment_preview, build_augmentation
from lib.data.pipeline import load_arrays, make_dataset
from lib.data.sources import load_dataset, sample_images
from lib.data.split import split_dataset
from lib.errors import TransferLabError
from lib.images import load_image
from lib.plots.data import (
    make_class_count_figure,
    make_sample_grid_figure,
    make_split_count_figure,
)

SIZE = 16


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """Three classes of 10, 8 and 6 tiny JPEGs of different shapes."""
    root = make_image_folder(
        tmp_path_factory.mktemp("data") / "toy", {"a": 10, "b": 8, "c": 6}, size=24
    )
    Image.new("RGB", (40, 20), (250, 10, 10)).save(root / "a" / "wide.png")
    Image.new("L", (10, 30), 128).save(root / "b" / "tall_grey.png")
    return load_dataset(str(root))


def names(records) -> list[str]:
    return [r.source for r in records]


# --- split -----------------------------------------------------------------------------------


def test_split_is_stratified_and_complete(index):
    split = split_dataset(index, val_fraction=0.25, test_fraction=0.2, seed=0)
    table = split.counts(index.class_names)
    for name in index.class_names:
        assert table["train"][name] >= 1 and table["val"][name] >= 1 and table["test"][name] >= 1
    assert table["val"] == {"a": 3, "b": 2, "c": 2}  # round(11 * .25), round(9 * .25), 1.5 -> 2
    every = names(split.train) + names(split.val) + names(split.test)
    assert sorted(every) == sorted(names(index.records))


def test_split_is_deterministic_for_a_seed(index):
    first, again = split_dataset(index, 0.3, seed=7), split_dataset(index, 0.3, seed=7)
    assert first == again
    assert first.test == ()
    others = {names(split_dataset(index, 0.3, seed=s).val).__repr__() for s in range(5)}
    assert len(others) > 1


def test_every_class_gets_a_validation_image(tmp_path):
    index = load_dataset(str(make_image_folder(tmp_path / "d", {"a": 2, "b": 30})))
    split = split_dataset(index, 0.01)
    assert split.counts(index.class_names)["val"] == {"a": 1, "b": 1}


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [
        (1.0, 0.0, "val_fraction=1.0"),
        (-0.1, 0.0, "val_fraction=-0.1"),
        (0.2, float("nan"), "test_fraction=nan"),
        (0.5, 0.45, "val_fraction=0.5` and `test_fraction=0.45"),
    ],
)
def test_bad_fractions_are_echoed(index, val, test, message):
    with pytest.raises(TransferLabError, match=message):
        split_dataset(index, val, test)


def test_class_too_small_for_three_splits(tmp_path):
    index = load_dataset(str(make_image_folder(tmp_path / "d", {"a": 2, "b": 5})))
    with pytest.raises(TransferLabError, match="Class 'a' has only 2 distinct images"):
        split_dataset(index, 0.2, 0.2)


# --- pipeline --------------------------------------------------------------------------------


def test_make_dataset_shapes_types_and_range(index):
    dataset = make_dataset(index.records, index.num_classes, SIZE, batch_size=8)
    batches = list(dataset.as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [8, 8, 8, 2]
    images, labels = batches[0]
    assert images.shape == (8, SIZE, SIZE, 3) and images.dtype == np.float32
    assert labels.shape == (8, 3) and labels.dtype == np.float32
    every = np.concatenate([x for x, _ in batches])
    assert 0.0 <= every.min() and every.max() <= 255.0 and every.max() > 100.0
    one_hot = np.concatenate([y for _, y in batches])
    np.testing.assert_array_equal(one_hot.argmax(1), [r.label for r in index.records])
    np.testing.assert_array_equal(one_hot.sum(1), 1.0)


def test_pipeline_matches_pil_geometry(index):
    images, _ = load_arrays(index.records, index.num_classes, SIZE)
    for i, record in enumerate(index.records):
        reference = load_image(record.source, SIZE)
        assert np.abs(images[i] - reference).mean() < 8.0, record.source
    wide = next(i for i, r in enumerate(index.records) if r.source.endswith("wide.png"))
    np.testing.assert_allclose(
        images[wide], np.broadcast_to([250, 10, 10], (SIZE, SIZE, 3)), atol=1
    )
    grey = next(i for i, r in enumerate(index.records) if r.source.endswith("tall_grey.png"))
    np.testing.assert_allclose(images[grey], 128.0, atol=1)


def test_load_arrays_equals_unshuffled_dataset(index):
    images, labels = load_arrays(index.records, index.num_classes, SIZE)
    streamed = list(make_dataset(index.records, index.num_classes, SIZE, 5).as_numpy_iterator())
    np.testing.assert_array_equal(images, np.concatenate([x for x, _ in streamed]))
    np.testing.assert_array_equal(labels, np.concatenate([y for _, y in streamed]))


def epoch_orders(dataset, epochs: int = 2) -> list[list[float]]:
    """Per epoch, a fingerprint of each image in the order it came (its pixel sum)."""
    return [
        [float(x.sum()) for images, _ in dataset.as_numpy_iterator() for x in images]
        for _ in range(epochs)
    ]


def test_shuffle_is_reproducible_and_reshuffles(index):
    build = lambda seed: make_dataset(  # noqa: E731
        index.records, index.num_classes, SIZE, 4, shuffle=True, seed=seed
    )
    first = epoch_orders(build(3))
    assert first == epoch_orders(build(3))
    assert first[0] != first[1]  # a new order each epoch
    assert sorted(first[0]) == sorted(first[1])
    assert first != epoch_orders(build(4))


def test_augmentation_in_pipeline_keeps_shape_and_range(index):
    augmentation = build_augmentation(AugmentConfig(rotation=0.2, contrast=0.5), seed=1)
    dataset = make_dataset(
        index.records, index.num_classes, SIZE, 8, shuffle=True, augmentation=augmentation
    )
    plain = load_arrays(index.records, index.num_classes, SIZE)[0]
    images = np.concatenate([x for x, _ in dataset.as_numpy_iterator()])
    assert images.shape == plain.shape and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0
    assert not np.allclose(np.sort(images.sum(axis=(1, 2, 3))), np.sort(plain.sum(axis=(1, 2, 3))))


def test_make_dataset_rejects_bad_arguments(index):
    with pytest.raises(TransferLabError, match="split is empty"):
        make_dataset((), 2, SIZE, 4)
    with pytest.raises(TransferLabError, match="batch_size=0"):
        make_dataset(index.records, 3, SIZE, 0)
    with pytest.raises(TransferLabError, match="label 2 outside 0..1"):
        make_dataset(index.records, 2, SIZE, 4)


# --- augmentation ----------------------------------------------------------------------------


def test_augment_preview_gives_distinct_images_in_range():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    previews = augment_preview(image, AugmentConfig(contrast=0.5), n=6, seed=2)
    assert len(previews) == 6
    assert all(p.shape == image.shape and p.dtype == np.float32 for p in previews)
    assert all(0.0 <= p.min() and p.max() <= 255.0 for p in previews)
    assert len({float(p.sum()) for p in previews}) == 6
    again = augment_preview(image, AugmentConfig(contrast=0.5), n=6, seed=2)
    np.testing.assert_allclose(previews, again)


def test_all_off_is_identity():
    config = AugmentConfig(flip=False, rotation=0, zoom=0, translation=0, contrast=0)
    assert not config.enabled
    image = np.full((SIZE, SIZE, 3), 42.0, np.float32)
    np.testing.assert_array_equal(augment_preview(image, config, n=2)[1], image)


def test_bad_augmentation_values_are_echoed():
    with pytest.raises(TransferLabError, match="rotation=0.8"):
        build_augmentation(AugmentConfig(rotation=0.8))
    with pytest.raises(TransferLabError, match="contrast=-0.1"):
        build_augmentation(AugmentConfig(contrast=-0.1))


# --- figures ---------------------------------------------------------------------------------


def test_figures_have_data(index):
    counts = make_class_count_figure(index.report.counts)
    assert isinstance(counts, go.Figure) and list(counts.data[0].y) == [11, 9, 6]
    grid = make_sample_grid_figure(index, per_class=3)
    assert isinstance(grid, go.Figure) and len(grid.data) == 9
    assert grid.data[0].source.startswith("data:image/png;base64,")
    plain = make_sample_grid_figure(sample_images(index, per_class=2, size=8))
    assert len(plain.data) == 6
    table = split_dataset(index, 0.25).counts(index.class_names)
    split_figure = make_split_count_figure(table)
    assert [trace.name for trace in split_figure.data] == ["train", "val"]


def test_thumbnail_decodes(index):
    import base64

    grid = make_sample_grid_figure(index, per_class=1, size=12)
    png = base64.b64decode(grid.data[0].source.split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (12, 12)
