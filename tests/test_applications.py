"""keras.applications entries: registry contract, offline behaviour, and the weight-loading path.

No weights can be downloaded here, so the loading path is checked with a stand-in `.h5` file written
in the legacy format Keras reads, from a reference application with seeded random weights.
"""

from __future__ import annotations

import time

import h5py
import keras
import numpy as np
import pytest

from lib.backbones import DOWNLOAD_NEEDED, get_spec, list_specs, load_backbone
from lib.backbones import applications as apps
from lib.errors import TransferLabError

EXPECTED_FAMILIES = {
    "MobileNet": 4, "EfficientNet": 8, "EfficientNetV2": 7, "ResNet": 3, "ResNetV2": 3,
    "Inception": 2, "Xception": 1, "VGG": 2, "DenseNet": 3, "NASNet": 2, "ConvNeXt": 5,
}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache and no network."""
    from keras.src.backend import config

    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))  # what `get_file` reads
    monkeypatch.setattr(apps, "keras_models_dirs", lambda: [home / "models"])
    monkeypatch.setenv(apps.OFFLINE_ENV, "1")
    return home / "models"


def test_every_family_of_the_keras_table_is_registered():
    families: dict[str, int] = {}
    for spec in list_specs():
        if spec.weights_source == "keras:imagenet":
            families[spec.family] = families.get(spec.family, 0) + 1
            assert spec.top1 is not None and spec.accuracy_source
    assert families == EXPECTED_FAMILIES


def test_registry_import_builds_nothing():
    start = time.perf_counter()
    specs = [s for s in list_specs() if s.weights_source == "keras:imagenet"]
    assert len(specs) == 40
    assert time.perf_counter() - start < 0.5


def test_uncached_weights_say_download_needed_and_fail_fast_offline(offline):
    spec = get_spec("mobilenet_v2")
    assert spec.weights_status() == DOWNLOAD_NEEDED
    start = time.perf_counter()
    with pytest.raises(TransferLabError, match="not available offline.*mobilenet_v2"):
        load_backbone("mobilenet_v2")
    assert time.perf_counter() - start < 5


def test_random_fallback_follows_the_contract(offline):
    backbone = load_backbone("mobilenet_v3_small", allow_random=True)
    model = backbone.model
    assert backbone.pretrained is False
    assert model.get_layer("logits").__class__.__name__ == "Dense"
    assert model.get_layer("probabilities").output.shape == (None, 1000)
    for cut in backbone.spec.cut_points:
        model.get_layer(cut)
    assert model.get_layer(backbone.spec.feature_layer).output.shape[-1] == backbone.spec.feature_dim
    # Depth as the Keras docs count it: layers with weights (88 for MobileNetV3Small).
    assert sum(1 for layer in model.layers if layer.weights) == 88
    assert all(not layer.trainable for layer in model.layers)


def _write_legacy_h5(model: keras.Model, path) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize(
    ("key", "constructor", "preprocess_input"),
    [
        ("mobilenet_v2", keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input),
        ("resnet50", keras.applications.ResNet50, keras.applications.resnet50.preprocess_input),
    ],
)
def test_cached_weights_load_and_match_keras_preprocess_input(offline, monkeypatch, key, constructor, preprocess_input):
    """Our model on raw pixels == the Keras application on `preprocess_input(pixels)` ('tf' and 'caffe')."""
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "validate_file", lambda *a, **k: True)  # stand-in file, no real hash
    keras.utils.set_random_seed(1)
    reference = constructor(weights=None, classifier_activation=None)
    for layer in reference.layers:  # random BN statistics, so a wrong channel order would show
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([g, b, np.random.normal(0, 0.1, m.shape), np.random.uniform(0.5, 2, v.shape)])
    app = apps.APPS_BY_KEY[key]
    _write_legacy_h5(reference, offline / app.weights_file)
    assert get_spec(key).weights_status() == "cached"

    backbone = load_backbone(key)
    assert backbone.pretrained
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    expected = reference.predict(preprocess_input(pixels.copy()), verbose=0)
    logits = keras.Model(backbone.model.inputs, backbone.model.get_layer("logits").output)
    np.testing.assert_allclose(logits.predict(pixels, verbose=0), expected, rtol=1e-3, atol=1e-3)


def test_saved_model_loads_in_safe_mode(offline, tmp_path):
    model = load_backbone("mobilenet", allow_random=True).model
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_unknown_application_echoes_the_key():
    with pytest.raises(TransferLabError, match="nope"):
        apps.build_application("nope", pretrained=False)
