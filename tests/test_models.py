"""Body + head: shapes, names, seeding, safe-mode saving, private copies and unfreezing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lib.errors import TransferLabError
from lib.models import (
    HeadConfig,
    build_body,
    build_classifier,
    build_head,
    copy_body,
    count_params,
    get_body,
    get_head,
    layer_table,
    unfreeze_top,
)


def _pixels(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_head_pools_maps_and_names_its_layers(tiny_backbone):
    head = build_head((4, 4, 16), 3, HeadConfig(hidden_units=8, dropout=0.3))
    names = [layer.name for layer in head.layers]
    assert head.name == "head"
    # The head ends at its logits; the classifier adds the softmax `probabilities` on top.
    assert names[1:] == ["pool", "hidden", "dropout", "logits"]
    out = head(np.ones((2, 4, 4, 16), "float32"))
    assert out.shape == (2, 3)
    body = build_body(tiny_backbone)
    model = build_classifier(body, build_head(body.output.shape[1:], 3), 32)
    assert [layer.name for layer in model.layers][-3:] == ["body", "head", "probabilities"]
    probs = np.asarray(model(_pixels()))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    vector_head = build_head((16,), 3)
    assert "pool" not in [layer.name for layer in vector_head.layers]
    assert "hidden" not in [layer.name for layer in vector_head.layers]


def test_heads_from_one_seed_start_equal():
    a = build_head((4, 4, 16), 3, HeadConfig(hidden_units=8), seed=5)
    b = build_head((16,), 3, HeadConfig(hidden_units=8), seed=5)
    c = build_head((16,), 3, HeadConfig(hidden_units=8), seed=6)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize(
    ("config", "message"),
    [(HeadConfig(hidden_units=-1), "hidden_units=-1"), (HeadConfig(dropout=1.5), "dropout=1.5")],
)
def test_bad_head_config_is_echoed(config, message):
    with pytest.raises(TransferLabError, match=message):
        build_head((16,), 2, config)


def test_bad_cut_is_echoed(tiny_backbone):
    with pytest.raises(TransferLabError, match="cut=nowhere"):
        build_body(tiny_backbone, "nowhere")


def test_classifier_saves_and_loads_in_safe_mode(tiny_backbone, tmp_path):
    body = build_body(tiny_backbone, "block2_out")
    model = build_classifier(body, build_head(body.output.shape[1:], 2), 32)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = _pixels()
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    assert get_head(loaded).get_layer("logits").units == 2


def test_counts_split_trainable_from_frozen(tiny_backbone):
    body = build_body(tiny_backbone)
    model = build_classifier(body, build_head(body.output.shape[1:], 3), 32)
    counts = count_params(model)
    assert counts["trainable"] == 16 * 3 + 3
    assert counts["non_trainable"] == count_params(body)["non_trainable"] > 0


def _snapshot(model: keras.Model) -> tuple[list[np.ndarray], list[bool]]:
    return [np.array(w) for w in model.get_weights()], [layer.trainable for layer in model.layers]


def test_unfreeze_works_on_a_copy_and_keeps_batchnorm_frozen(tiny_backbone):
    weights, flags = _snapshot(tiny_backbone.model)
    body = copy_body(build_body(tiny_backbone))
    names = unfreeze_top(body, n_layers=4)
    assert names == ["block3_conv"]  # the top 4 are conv, bn, relu, linear; only conv has weights
    table = {row["name"]: row for row in layer_table(body)}
    assert table["block3_conv"]["trainable"]
    assert all(not row["trainable"] for row in table.values() if row["is_batchnorm"])
    assert not table["block1_conv"]["trainable"]
    assert unfreeze_top(body, from_layer="block2_conv") == ["block2_conv", "block3_conv"]
    after_weights, after_flags = _snapshot(tiny_backbone.model)
    assert after_flags == flags and not any(after_flags[1:])
    for before, after in zip(weights, after_weights, strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"n_layers": 2, "from_layer": "block2_conv"}, "exactly one"),
        ({"n_layers": 0}, "unfreeze=0"),
        ({"n_layers": 999}, "unfreeze=999"),
        ({"from_layer": "nope"}, "from_layer=nope"),
    ],
)
def test_bad_unfreeze_is_echoed(tiny_backbone, kwargs, message):
    body = copy_body(build_body(tiny_backbone))
    with pytest.raises(TransferLabError, match=message):
        unfreeze_top(body, **kwargs)


def test_get_body_finds_the_body(tiny_backbone):
    body = build_body(tiny_backbone)
    model = build_classifier(body, build_head(body.output.shape[1:], 2), 32)
    assert get_body(model) is body
