"""Grad-CAM on flat backbones and on body + head classifiers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lib.errors import TransferLabError
from lib.inside.gradcam import gradcam, overlay_heatmap
from lib.inside.probe import ModelProbe, layer_names_with_maps

LABELS = [f"class{i}" for i in range(10)]


def image(seed: int = 0) -> np.ndarray:
    return np.rint(np.random.default_rng(seed).uniform(0, 255, (32, 32, 3))).astype(np.float32)


def test_heatmap_has_the_feature_map_shape_and_is_non_negative(tiny_backbone):
    probe = ModelProbe(tiny_backbone.model, LABELS)
    result = gradcam(probe, image())
    feature = tiny_backbone.model.get_layer("top_activation").output.shape  # (None, 4, 4, 16)
    assert result.heatmap.shape == tuple(feature[1:3])
    assert result.heatmap.min() >= 0.0 and result.heatmap.max() <= 1.0
    assert result.overlay.shape == (32, 32, 3) and result.overlay.dtype == np.uint8
    assert result.layer == "top_activation"
    assert result.class_index == result.top[0]["index"]


def test_chosen_class_and_earlier_layer(tiny_backbone):
    probe = ModelProbe(tiny_backbone.model, LABELS)
    result = gradcam(probe, image(1), 7, layer="block2_out")
    assert result.class_index == 7 and result.label == "class7"
    assert result.heatmap.shape == (8, 8)
    assert result.heatmap.min() >= 0.0


def test_body_and_head_classifier(tiny_backbone):
    from lib.models import build_body, build_classifier, build_head

    body = build_body(tiny_backbone, "block2_out")
    head = build_head(tuple(body.outputs[0].shape[1:]), 3)
    model = build_classifier(body, head, 32)
    probe = ModelProbe(model, ["a", "b", "c"])
    assert probe.are_logits  # the nested head's logits are reached, not log-probabilities
    probs = np.asarray(model(image()[None]))[0]
    result = gradcam(probe, image())
    assert result.heatmap.shape == (8, 8)
    assert result.heatmap.min() >= 0.0
    assert result.prob == pytest.approx(float(probs[result.class_index]), abs=1e-5)


def test_model_without_a_feature_map_is_a_user_error():
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(x))
    probe = ModelProbe(model, ["a", "b", "c"])
    with pytest.raises(TransferLabError, match="feature map"):
        gradcam(probe, np.zeros((8, 8, 3), np.float32))


def test_bad_inputs_are_user_errors(tiny_backbone):
    probe = ModelProbe(tiny_backbone.model, LABELS)
    with pytest.raises(TransferLabError, match="10"):
        gradcam(probe, image(), 10)
    with pytest.raises(TransferLabError, match="shape"):
        gradcam(probe, np.zeros((20, 20, 3), np.float32))
    with pytest.raises(TransferLabError, match="nope"):
        gradcam(probe, image(), layer="nope")


def test_overlay_keeps_the_image_size():
    out = overlay_heatmap(np.zeros((50, 70, 3)), np.eye(4, dtype=np.float32))
    assert out.shape == (50, 70, 3) and out.dtype == np.uint8


def logits_out_classifier(tiny_backbone, cut: str | None = None) -> keras.Model:
    """The layout of issue 12: the head ends at its logits, softmax is a top-level layer."""
    from lib.models import build_body, build_head

    body = build_body(tiny_backbone, cut)
    saved_head = build_head(tuple(body.outputs[0].shape[1:]), 3)
    head = keras.Model(saved_head.inputs, saved_head.get_layer("logits").output, name="head")
    pixels = keras.Input((32, 32, 3), name="pixels")
    logits = head(body(pixels, training=False))
    return keras.Model(pixels, keras.layers.Activation("softmax", name="probabilities")(logits),
                       name="classifier")


@pytest.mark.parametrize("layer,shape", [(None, (4, 4)), ("block2_out", (8, 8))])
def test_logits_out_classifier_and_a_layer_inside_its_body(tiny_backbone, layer, shape):
    model = logits_out_classifier(tiny_backbone)
    probe = ModelProbe(model, ["a", "b", "c"])
    assert probe.are_logits and probe.num_classes == 3
    probs = np.asarray(model(image(2)[None]))[0]
    assert np.allclose(probe.probabilities(image(2)[None])[0], probs, atol=1e-5)
    result = gradcam(probe, image(2), layer=layer)
    assert result.heatmap.shape == shape and result.heatmap.min() >= 0.0
    assert result.layer == (layer or "top_activation")
    assert result.prob == pytest.approx(float(probs[result.class_index]), abs=1e-5)


def test_layer_inside_the_body_of_an_old_layout_classifier(tiny_backbone):
    from lib.models import build_body, build_classifier, build_head

    body = build_body(tiny_backbone)
    model = build_classifier(body, build_head(tuple(body.outputs[0].shape[1:]), 3), 32)
    probe = ModelProbe(model, ["a", "b", "c"])
    result = gradcam(probe, image(3), 1, layer="block1_out")
    assert result.heatmap.shape == (16, 16) and result.class_index == 1
    assert "block1_out" in layer_names_with_maps(model)
    assert "top_activation" in layer_names_with_maps(model)


def test_a_probe_shared_by_threads_builds_each_view_once(tiny_backbone, monkeypatch):
    """A server shares one probe between sessions: concurrent first uses must agree."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import lib.inside.probe as probe_module

    slow_lookup = probe_module.get_map_layer
    first_calls = threading.Barrier(2, timeout=1.0)

    def get_map_layer(model, name):  # widens the window in which an unguarded cache would race
        try:
            first_calls.wait()
        except threading.BrokenBarrierError:
            pass
        return slow_lookup(model, name)

    monkeypatch.setattr(probe_module, "get_map_layer", get_map_layer)
    probe = ModelProbe(tiny_backbone.model, LABELS)
    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: probe.layer_model("block2_out"), range(16)))
        views = list(pool.map(lambda _: probe.map_and_scores(None), range(16)))
        cams = list(pool.map(lambda n: gradcam(probe, image(n % 2)).class_index, range(8)))
    assert all(m is models[0] for m in models) and all(v is views[0] for v in views)
    assert cams[0::2] == [cams[0]] * 4 and cams[1::2] == [cams[1]] * 4
