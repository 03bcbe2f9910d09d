"""The inference engine: LiteRT and TensorFlow agree, conversion is cached, fallback says why."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from lib.cli import main
from lib.data.sources import load_dataset
from lib.engine import (
    ENGINE_ENV,
    LITERT,
    TF,
    ThreadBudget,
    cached_tflite,
    engine_key,
    forward_batches,
    open_forward,
    resolve_engine,
    time_forward,
)
from lib.errors import TransferLabError
from lib.evaluate import evaluate_model
from lib.features import cached_features, extract_features
from lib.images import resize_center_crop
from lib.models import HeadConfig, build_body, get_head
from lib.training import TrainConfig, train
from lib.training.engine import trained_body_engine

# Stated tolerance: features from the two engines differ by at most this much, relative to the
# largest feature magnitude (float32 kernels that sum in a different order; measured ~1e-6).
FEATURE_RTOL = 1e-4


def _assert_features_agree(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    scale = float(np.abs(b).max())
    assert scale > 0
    np.testing.assert_allclose(a, b, rtol=0, atol=FEATURE_RTOL * scale)


def real_photos(size: int) -> np.ndarray:
    """skimage's chelsea (a cat) and coffee (an espresso), centre-cropped: float32 (2, S, S, 3)."""
    from skimage import data

    photos = [resize_center_crop(Image.fromarray(data.chelsea()), size),
              resize_center_crop(Image.fromarray(data.coffee()), size)]
    return np.stack([np.asarray(p, np.float32) for p in photos])


@pytest.fixture
def tiny_body(tiny_backbone) -> keras.Model:
    return build_body(tiny_backbone)


@pytest.fixture
def auto_engine(monkeypatch):
    """No engine forced from outside the test."""
    monkeypatch.delenv(ENGINE_ENV, raising=False)


def test_engines_agree_on_real_photos_tiny(tiny_body, auto_engine):
    photos = real_photos(32)
    lite = forward_batches(tiny_body, [photos[:1], photos[1:]])
    tf_ = forward_batches(tiny_body, [photos], engine=TF)
    assert (lite.engine, tf_.engine) == (LITERT, TF)
    assert lite.fallback_reason == "" and lite.threads >= 1 and tf_.threads is None
    assert lite.features.shape == (2, 16)  # pooled feature map
    _assert_features_agree(lite.features, tf_.features)


def test_unpooled_maps_agree_too(tiny_backbone, auto_engine):
    body = build_body(tiny_backbone, "block2_out")
    photos = real_photos(32)
    lite = forward_batches(body, [photos], pool=False, engine=LITERT)
    tf_ = forward_batches(body, [photos], pool=False, engine=TF)
    assert lite.features.shape == (2, 8, 8, 12)
    _assert_features_agree(lite.features, tf_.features)


def test_conversion_is_cached_on_disk_and_keyed_by_weights(tiny_body, cache_root, auto_engine):
    path = cached_tflite(tiny_body, name="tiny")
    assert path.parent == cache_root / "engines" and path.suffix == ".tflite"
    stamp = path.stat().st_mtime_ns
    assert cached_tflite(tiny_body, name="tiny") == path and path.stat().st_mtime_ns == stamp
    assert not list(path.parent.glob(".*.tmp"))  # written atomically
    changed = keras.models.clone_model(tiny_body)
    changed.set_weights([w + 0.01 for w in tiny_body.get_weights()])
    assert engine_key(changed) != engine_key(tiny_body)
    assert engine_key(tiny_body, pool=False) != engine_key(tiny_body)


def test_a_failed_conversion_falls_back_to_tensorflow_and_says_why(tiny_backbone, monkeypatch,
                                                                    auto_engine):
    import lib.engine.litert as litert

    def broken(model):
        raise RuntimeError("op FancyOp is not supported")

    monkeypatch.setattr(litert, "convert_to_tflite", broken)
    body = build_body(tiny_backbone, "block1_out")  # a body not converted by another test
    photos = real_photos(32)
    result = forward_batches(body, [photos])
    assert result.engine == TF and "FancyOp" in result.fallback_reason
    expected = forward_batches(body, [photos], engine=TF).features
    np.testing.assert_array_equal(result.features, expected)
    with pytest.raises(TransferLabError, match="LiteRT engine was asked for.*FancyOp"):
        forward_batches(body, [photos], engine=LITERT)


def test_the_environment_forces_an_engine(tiny_body, monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "tf")
    assert resolve_engine() == TF and resolve_engine(LITERT) == LITERT
    assert forward_batches(tiny_body, [real_photos(32)]).engine == TF
    monkeypatch.setenv(ENGINE_ENV, "openvino")
    with pytest.raises(TransferLabError, match="TRANSFERLAB_ENGINE=openvino"):
        forward_batches(tiny_body, [real_photos(32)])
    with pytest.raises(TransferLabError, match="engine=xla"):
        resolve_engine("xla")


def test_the_thread_budget_never_hands_out_more_than_its_cores():
    budget = ThreadBudget(4)
    with budget.lease() as first:
        assert first == 4
        with budget.lease() as second, budget.lease(2) as third:
            assert second == third == 1  # at least one thread each, never waiting
        with pytest.raises(ValueError, match="cores=0"):
            ThreadBudget(0)
    assert budget.leased == 0
    with budget.lease(3) as capped, budget.lease() as rest:
        assert (capped, rest) == (3, 1)


def test_a_pass_leases_its_threads_and_gives_them_back(tiny_body, auto_engine):
    from lib.engine import thread_budget

    budget = thread_budget()
    with open_forward(tiny_body) as forward:
        assert forward.engine == LITERT and budget.leased == forward.threads == budget.cores
    assert budget.leased == 0


def test_a_callback_can_stop_a_pass(tiny_body, auto_engine):
    seen = []

    class Stop(Exception):
        pass

    def on_batch(n):
        seen.append(n)
        raise Stop()

    photos = real_photos(32)
    with pytest.raises(Stop):
        forward_batches(tiny_body, [photos, photos], on_batch=on_batch)
    assert seen == [2]


def test_feature_cache_records_the_engine_and_matches_tensorflow(tiny_body, tmp_path, auto_engine):
    folder = make_image_folder(tmp_path / "d", {"a": 5, "b": 4})
    records = load_dataset(str(folder)).records
    first = cached_features(tiny_body, records, model_id="tiny:test-engine", cut="top_activation",
                            image_size=32)
    assert not first.hit and first.engine == LITERT
    again = cached_features(tiny_body, records, model_id="tiny:test-engine", cut="top_activation",
                            image_size=32)
    assert again.hit and again.engine == LITERT
    on_tf = extract_features(tiny_body, records, 32, engine=TF, batch_size=4)
    _assert_features_agree(first.features, on_tf)


def test_feature_cache_path_gives_the_same_head_on_either_engine(tiny_backbone, tmp_path,
                                                                 monkeypatch):
    """The head trained on LiteRT features equals the head trained on pixels through TensorFlow."""
    dataset = load_dataset(str(make_image_folder(tmp_path / "toy", {"r": 10, "g": 10, "b": 10})))
    config = TrainConfig(backbone="tiny_random", data="toy", epochs=3, batch_size=8,
                         learning_rate=0.01, early_stopping_patience=None, test_split=0.0,
                         head=HeadConfig(hidden_units=8, dropout=0.25))
    monkeypatch.setenv(ENGINE_ENV, LITERT)
    fast = train(config, backbone=tiny_backbone, dataset=dataset, run_dir=tmp_path / "fast")
    monkeypatch.setenv(ENGINE_ENV, TF)
    slow = train(replace(config, use_feature_cache=False), backbone=tiny_backbone, dataset=dataset,
                 run_dir=tmp_path / "slow")
    assert fast.used_feature_cache and not slow.used_feature_cache
    for a, b in zip(get_head(fast.model).get_weights(), get_head(slow.model).get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(fast.history["val_loss"], slow.history["val_loss"], atol=1e-5)
    # End-of-run evaluation says its engine (run metrics and config.json); the pixel path's
    # numbers are the same on LiteRT (body) + Keras (head): accuracy exactly, probabilities
    # within float rounding.
    assert fast.metrics["evaluation"]["engine"] == LITERT
    slow_eval = slow.metrics["evaluation"]
    assert slow_eval["engine"] == TF and "engine_fallback" not in slow_eval
    assert json.loads((slow.run_dir / "config.json").read_text())["eval_engine"] == TF
    on_lite = evaluate_model(slow.model, getattr(slow.split, slow_eval["split"]), slow.class_names,
                             engine=LITERT)
    assert on_lite["engine"] == LITERT and on_lite["accuracy"] == slow_eval["accuracy"]
    assert on_lite["confusion"] == slow_eval["confusion"]
    np.testing.assert_allclose(sorted(t["prob"] for t in on_lite["top_losses"]),
                               sorted(t["prob"] for t in slow_eval["top_losses"]), atol=1e-5)
    # A body trained in the run (fine-tuned, scratch) is evaluated on TensorFlow unless LiteRT is
    # forced: converting new weights costs more than LiteRT saves on one split.
    monkeypatch.setenv(ENGINE_ENV, LITERT)
    assert trained_body_engine() == LITERT
    monkeypatch.delenv(ENGINE_ENV)
    assert trained_body_engine() == TF


def test_time_forward_reports_the_engine(tiny_backbone, auto_engine):
    for engine in (TF, LITERT):
        row = time_forward(tiny_backbone.model, 32, 2, engine=engine, min_runs=2, budget_s=0.0)
        assert row["engine"] == engine and row["runs"] >= 2
        assert row["median_ms_per_image"] > 0 and row["throughput_ips"] > 0
    with pytest.raises(TransferLabError, match="batch=0"):
        time_forward(tiny_backbone.model, 32, 0)


def _features_cli(capsys, argv):
    code = main(["features", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_features_cli_prints_json_and_writes_the_npz(tmp_path, capsys, auto_engine):
    folder = make_image_folder(tmp_path / "d", {"cat": 4, "dog": 3})
    outs = {}
    for engine in (LITERT, TF):
        out = tmp_path / f"{engine}.npz"
        code, value, err = _features_cli(capsys, ["--data", str(folder), "--backbone", "tiny_random",
                                                  "--engine", engine, "--out", str(out)])
        assert code == 0, err
        assert set(value) == {"n", "seconds", "img_per_s", "engine", "backbone", "cut"}
        assert value["n"] == 7 and value["engine"] == engine and value["cut"] == "top_activation"
        assert value["backbone"] == "tiny_random" and value["img_per_s"] > 0
        with np.load(out) as data:
            assert data["features"].shape == (7, 16)
            assert sorted(data["labels"].tolist()) == [0, 0, 0, 0, 1, 1, 1]  # 4 cats, 3 dogs
            assert data["class_names"].tolist() == ["cat", "dog"] and str(data["engine"]) == engine
            outs[engine] = data["features"]
    _assert_features_agree(outs[LITERT], outs[TF])
    code, value, err = _features_cli(capsys, ["--data", str(folder), "--backbone", "tiny_random",
                                              "--cut", "block2_out", "--out", str(tmp_path / "c.npz")])
    assert code == 0 and value["cut"] == "block2_out" and value["engine"] == LITERT
    code, value, err = _features_cli(capsys, ["--data", str(folder), "--backbone", "tiny_random",
                                              "--out", str(tmp_path / "f.csv")])
    assert code == 2 and value is None and ".npz" in err


@pytest.mark.large
def test_lite0_engines_agree_on_real_photos(lite0, auto_engine):
    photos = real_photos(lite0.spec.input_size)
    body = build_body(lite0)
    lite = forward_batches(body, [photos])
    tf_ = forward_batches(body, [photos], engine=TF)
    assert lite.engine == LITERT and lite.features.shape == (2, 1280)
    _assert_features_agree(lite.features, tf_.features)
    # The whole ImageNet classifier: same top-1, and it is a cat and an espresso-like drink.
    lite_p = forward_batches(lite0.model, [photos], pool=False).features
    tf_p = forward_batches(lite0.model, [photos], pool=False, engine=TF).features
    np.testing.assert_allclose(lite_p, tf_p, atol=1e-4)
    assert (lite_p.argmax(1) == tf_p.argmax(1)).all()
    assert lite_p[0].argmax() in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert 967 in np.argsort(lite_p[1])[-3:] or 504 in np.argsort(lite_p[1])[-3:]  # espresso/cup


@pytest.mark.large
@pytest.mark.shared_data
def test_lite0_engines_agree_on_cats_and_dogs(lite0, shared_datasets, auto_engine):
    from lib.data.sources import ImageRecord

    folder = shared_datasets / "cats_vs_dogs"
    paths = sorted((folder / "cats").glob("*"))[:6] + sorted((folder / "dogs").glob("*"))[:6]
    records = [ImageRecord(str(p), 0, "test", str(i)) for i, p in enumerate(paths)]
    body = build_body(lite0)
    lite = extract_features(body, records, lite0.spec.input_size, engine=LITERT)
    tf_ = extract_features(body, records, lite0.spec.input_size, engine=TF)
    _assert_features_agree(lite, tf_)


def test_no_stray_files_in_the_engine_cache(cache_root):
    folder = Path(cache_root) / "engines"
    if folder.is_dir():
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_passes_convert_a_body_once(monkeypatch):
    """Jobs of several sessions that need the same body share one conversion."""
    import threading

    import keras
    import numpy as np

    from lib.engine import litert

    pixels = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")
    body = keras.Model(pixels, conv(pixels), name="race_body")
    # Weights no other test has, so this body has never been converted.
    conv.set_weights([np.random.default_rng().normal(size=w.shape).astype("float32") for w in conv.get_weights()])
    calls = []
    real = litert.convert_to_tflite

    def counting(model):
        calls.append(1)
        return real(model)

    monkeypatch.setattr(litert, "convert_to_tflite", counting)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(litert.cached_tflite(body, name="race")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(paths) == 3 and len(set(paths)) == 1 and paths[0].is_file()
    assert len(calls) == 1
