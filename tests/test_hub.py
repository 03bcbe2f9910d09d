"""TF Hub path, offline: export a backbone in hub format and load it back through the hub wrapper."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from lib.backbones import get_spec, list_specs, load_backbone
from lib.backbones import hub_compat as hub
from lib.backbones.export import export_hub
from lib.errors import TransferLabError
from tests.conftest import run_lib_in_process


@pytest.fixture(autouse=True)
def trusted_test_folders(tmp_path_factory, monkeypatch):
    """The operator trusts the test's temporary folders for SavedModels (nothing else is trusted)."""
    monkeypatch.setenv("TRANSFERLAB_HUB_ROOTS", str(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def tiny_hub_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "tiny"
    export_hub("tiny_random", out)
    return out


def test_tiny_export_round_trip_matches_pooled_features(tiny_hub_dir):
    spec = hub.hub_spec(str(tiny_hub_dir), input_size=32)
    assert spec.num_classes == 0 and spec.cut_points == ("features",) and spec.feature_dim == 16
    assert spec.weights_status() == "offline"
    assert spec.input_size == 32  # read off the SavedModel's serving signature
    loaded = load_backbone(spec.name)
    assert loaded.pretrained
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    tiny = load_backbone("tiny_random").model
    pooled = keras.Model(tiny.inputs, tiny.get_layer("avg_pool").output).predict(pixels, verbose=0)
    np.testing.assert_allclose(loaded.model.predict(pixels, verbose=0), pooled, atol=1e-5)


def test_wrapper_tracks_trainable_weights_when_made_trainable(tiny_hub_dir):
    model = hub.build_hub_model(str(tiny_hub_dir), input_size=32)
    assert model.get_layer("hub").trainable_weights  # fine-tuning can reach the hub variables
    import tensorflow as tf

    x = tf.random.uniform((2, 32, 32, 3), 0, 255)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x))
    grads = tape.gradient(loss, model.trainable_weights)
    assert any(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_bad_handles_get_a_message(tmp_path, monkeypatch):
    with pytest.raises(TransferLabError, match="not a URL, and not a folder with a saved_model.pb"):
        hub.build_hub_model(str(tmp_path / "nowhere"))
    monkeypatch.setenv("TRANSFERLAB_OFFLINE", "1")
    url = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    with pytest.raises(TransferLabError, match="not available offline"):
        hub.hub_spec(url)
    assert hub.default_name(url) == "hub_mobilenet_v2_100_224_feature_vector_5"


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(TransferLabError, match="not empty"):
        export_hub("tiny_random", tmp_path)


@pytest.mark.large
def test_lite0_hub_export_gives_the_converted_features(tmp_path, lite0):
    """`python -m lib export-hub` on Lite0 (its `main`, in this process), loaded back through the hub
    path: same features to 1e-4."""
    out = tmp_path / "lite0_hub"
    proc = run_lib_in_process(["export-hub", "--backbone", "efficientnet_lite0", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["feature_dim"] == 1280 and info["input_size"] == 224
    name = hub.hub_spec(str(out)).name
    assert get_spec(name).feature_dim == 1280
    pixels = np.random.default_rng(1).uniform(0, 255, (4, 224, 224, 3)).astype("float32")
    model = lite0.model
    pooled = keras.Model(model.inputs, model.get_layer("avg_pool").output).predict(pixels, verbose=0)
    np.testing.assert_allclose(load_backbone(name).model.predict(pixels, verbose=0), pooled, atol=1e-4)


def test_a_handle_works_wherever_a_backbone_name_does(tiny_hub_dir, monkeypatch):
    handle = str(tiny_hub_dir)
    spec = get_spec(handle)
    assert spec.weights_source == f"hub:{handle}" and spec.num_classes == 0
    assert get_spec(spec.name) is spec  # resolved once per process, and the name round-trips

    def no_second_build(*args, **kwargs):
        raise AssertionError("the handle was resolved twice")

    monkeypatch.setattr(hub, "build_hub_model", no_second_build)
    assert get_spec(handle) is spec
    assert handle not in {s.name for s in list_specs(include_hidden=True)}  # nothing registered
