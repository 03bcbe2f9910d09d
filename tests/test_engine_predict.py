"""Forward-only passes beyond feature extraction run on the engine too: prediction, evaluation,
ImageNet classifiers; and the LiteRT path's own decoding gives the pixels tf.data gives."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_image_folder
from PIL import Image

from lib.data.pipeline import decode_and_resize, load_pixels
from lib.data.sources import load_dataset
from lib.engine import ENGINE_ENV, LITERT, TF, open_forward
from lib.engine.litert import LiteRTPool
from lib.evaluate import evaluate_model, predict_records_run
from lib.models import HeadConfig, build_body, build_classifier, build_head
from lib.predict import classify_batches, predict_each, split_for_engine

# Probabilities of the two engines differ by float32 summation order only (measured ~1e-7).
PROB_ATOL = 1e-5


@pytest.fixture
def auto_engine(monkeypatch):
    monkeypatch.delenv(ENGINE_ENV, raising=False)


def tiny_classifier(backbone, hidden: int = 0):
    body = build_body(backbone)
    head = build_head(tuple(body.outputs[0].shape[1:]), 3, HeadConfig(hidden_units=hidden, dropout=0.3))
    return build_classifier(body, head, backbone.spec.input_size)


@pytest.mark.parametrize("side", [(40, 40), (50, 70), (300, 220), (9, 12)])
def test_load_pixels_gives_the_pixels_of_the_tf_pipeline(tmp_path, side):
    rng = np.random.default_rng(1)
    path = tmp_path / "x.jpg"
    Image.fromarray(rng.integers(0, 256, (*side, 3), dtype=np.uint8)).save(path, quality=90)
    for size in (32, 224, 17):
        ours = load_pixels(str(path), size)
        ref = decode_and_resize(tf.constant(str(path)), size).numpy()
        assert ours.shape == ref.shape == (size, size, 3) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=0.01)  # float rounding only (0..255 scale)


def test_the_crop_inside_the_resize_matrix_is_the_crop_before_it():
    from lib.data.pipeline import build_resize_matrix

    values = np.random.default_rng(0).uniform(0, 255, 30).astype(np.float32)
    inside = build_resize_matrix(20, 7, offset=6, n_total=30) @ values
    np.testing.assert_allclose(inside, build_resize_matrix(20, 7) @ values[6:26], rtol=1e-6)
    with pytest.raises(ValueError, match="offset=11"):
        build_resize_matrix(20, 7, offset=11, n_total=30)


@pytest.mark.parametrize("hidden", [0, 8])
def test_a_trained_classifier_predicts_alike_on_both_engines(tiny_backbone, auto_engine, hidden):
    model = tiny_classifier(tiny_backbone, hidden)
    parts = split_for_engine(model)
    assert parts.core.name == "body" and parts.pool  # the body runs on the engine, pooled there
    pixels = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    lite = classify_batches(model, pixels, batch_size=2)
    tf_ = classify_batches(model, pixels, engine=TF)
    assert (lite.engine, tf_.engine) == (LITERT, TF) and lite.features.shape == (5, 3)
    np.testing.assert_allclose(lite.features, np.asarray(model(pixels)), atol=PROB_ATOL)
    np.testing.assert_allclose(lite.features, tf_.features, atol=PROB_ATOL)
    np.testing.assert_allclose(lite.features.sum(axis=1), 1.0, atol=1e-5)


def test_a_model_that_is_not_body_and_head_runs_whole(tiny_backbone, auto_engine):
    model = tiny_backbone.model  # an "ImageNet classifier": no body/head parts
    parts = split_for_engine(model)
    assert parts.core is model and not parts.pool
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    lite = classify_batches(model, pixels)
    assert lite.engine == LITERT
    np.testing.assert_allclose(lite.features, np.asarray(model(pixels)), atol=PROB_ATOL)


def test_evaluation_runs_on_litert_and_matches_tensorflow(tiny_backbone, tmp_path, auto_engine):
    folder = make_image_folder(tmp_path / "d", {"a": 4, "b": 3, "c": 3}, size=45)
    records = load_dataset(str(folder)).records
    model = tiny_classifier(tiny_backbone)
    lite = predict_records_run(model, records, 3, batch_size=4)
    tf_ = predict_records_run(model, records, 3, batch_size=4, engine=TF)
    assert (lite.engine, tf_.engine) == (LITERT, TF) and lite.features.shape == (10, 3)
    np.testing.assert_allclose(lite.features, tf_.features, atol=PROB_ATOL)
    report = evaluate_model(model, records, ["a", "b", "c"])
    assert report["engine"] == LITERT and report["n"] == 10
    assert evaluate_model(model, records, ["a", "b", "c"], engine=TF)["engine"] == TF


def test_prediction_says_which_engine_ran(tiny_backbone, tmp_path, monkeypatch, auto_engine):
    folder = make_image_folder(tmp_path / "d", {"a": 2}, size=40)
    paths = sorted(str(p) for p in (folder / "a").iterdir()) + [str(tmp_path / "missing.jpg")]
    model = tiny_classifier(tiny_backbone)
    results = predict_each(model, ["x", "y", "z"], paths, k=2)
    assert [r.engine for r in results] == [LITERT, LITERT, ""] and results[2].error
    monkeypatch.setenv(ENGINE_ENV, TF)
    forced = predict_each(model, ["x", "y", "z"], paths, k=2)
    assert [r.engine for r in forced[:2]] == [TF, TF]
    for a, b in zip(results[:2], forced[:2], strict=True):
        assert [t["index"] for t in a.top] == [t["index"] for t in b.top]
        np.testing.assert_allclose([t["prob"] for t in a.top], [t["prob"] for t in b.top], atol=PROB_ATOL)


def test_pool_map_keeps_order_reports_progress_and_stops(tiny_backbone, auto_engine):
    body = build_body(tiny_backbone)
    pixels = np.random.default_rng(0).uniform(0, 255, (21, 32, 32, 3)).astype(np.float32)
    with open_forward(body, engine=LITERT, threads=2) as forward:
        assert isinstance(forward._fn, LiteRTPool) and forward._fn.workers == 2
        done = []
        out = forward.map(list(range(21)), lambda i: pixels[i], done.append)
        assert sum(done) == 21
        np.testing.assert_allclose(out, forward(pixels), atol=1e-5)  # batch path, same rows
        np.testing.assert_allclose(out[3:4], forward(pixels[3:4]), atol=1e-5)  # latency path

        def stop(n):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            forward.map(list(range(21)), lambda i: pixels[i], stop)


@pytest.mark.large
def test_lite0_imagenet_prediction_on_litert_matches_tensorflow(lite0, auto_engine):
    from test_engine import real_photos

    photos = real_photos(lite0.spec.input_size)
    lite = classify_batches(lite0.model, photos)
    tf_ = classify_batches(lite0.model, photos, engine=TF)
    assert (lite.engine, tf_.engine) == (LITERT, TF)
    np.testing.assert_allclose(lite.features, tf_.features, atol=1e-4)
    assert (lite.features.argmax(1) == tf_.features.argmax(1)).all()


def test_a_big_model_gets_fewer_interpreters_with_more_threads(tiny_backbone, monkeypatch, auto_engine):
    from lib.engine import litert

    body = build_body(tiny_backbone)
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    with open_forward(body, engine=LITERT, threads=2) as forward:
        expected = forward(pixels)
        path = forward._fn.model_path
    monkeypatch.setattr(litert, "POOL_MODEL_BYTES", path.stat().st_size)  # room for one copy
    pool = LiteRTPool(path, 2)
    try:
        assert pool.workers == 1 and pool.threads == 2
        np.testing.assert_allclose(pool(pixels), expected, atol=1e-5)
    finally:
        pool.close()


def test_map_on_tensorflow_matches_litert(tiny_backbone, auto_engine):
    body = build_body(tiny_backbone)
    pixels = np.random.default_rng(0).uniform(0, 255, (35, 32, 32, 3)).astype(np.float32)
    outs, done = {}, {}
    for engine in (TF, LITERT):
        done[engine] = []
        with open_forward(body, engine=engine) as forward:
            outs[engine] = forward.map(list(range(35)), lambda i: pixels[i], done[engine].append)
    assert sum(done[TF]) == sum(done[LITERT]) == 35 and outs[TF].shape == (35, 16)
    np.testing.assert_allclose(outs[LITERT], outs[TF], atol=1e-4 * float(np.abs(outs[TF]).max()))

