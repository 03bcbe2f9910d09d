"""Ideal class images on the tiny random backbone: the objective rises, TV smooths, callbacks."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from lib.errors import TransferLabError
from lib.inside.ideal import (
    UNREGULARISED,
    IdealSettings,
    compare_tv,
    initial_param,
    render,
    spectrum_scale,
    total_variation,
    transfer_probabilities,
)
from lib.inside.ideal import ideal_image as make_ideal
from lib.inside.probe import ModelProbe

FAST = IdealSettings(steps=25, frame_every=5)


@pytest.fixture(scope="module")
def probe(tiny_backbone) -> ModelProbe:
    """One probe per module, so its compiled steps are traced once (as the page and CLI do)."""
    return ModelProbe(tiny_backbone.model, [f"class{i}" for i in range(10)])


def tv(image: np.ndarray) -> float:
    return float(total_variation(tf.constant(image)))


@pytest.mark.parametrize("settings", [replace(UNREGULARISED, steps=25), FAST])
def test_gradient_ascent_raises_the_objective(probe, settings):
    result = make_ideal(probe, 3, settings)
    assert len(result.objective) == len(result.probs) == 25
    assert np.mean(result.objective[-5:]) > np.mean(result.objective[:5])
    assert np.mean(result.probs[-5:]) > np.mean(result.probs[:5])
    assert result.image.shape == (32, 32, 3)
    assert result.image.min() >= 0.0 and result.image.max() <= 255.0


def test_channel_objective_raises_the_activation(probe):
    result = make_ideal(probe, None, FAST, layer="block2_out", channel=4)
    assert np.mean(result.objective[-5:]) > np.mean(result.objective[:5])
    assert result.class_index is None


@pytest.mark.parametrize("parameterization", ["pixels", "fft"])
def test_higher_tv_weight_gives_lower_total_variation(probe, parameterization):
    base = IdealSettings(steps=40, parameterization=parameterization,
                         learning_rate=0.01 if parameterization == "pixels" else 0.05)
    low = make_ideal(probe, 5, replace(base, tv_weight=0.0))
    high = make_ideal(probe, 5, replace(base, tv_weight=50.0))
    assert tv(high.image) < tv(low.image)


def test_pixels_stay_valid_at_every_step(probe):
    frames = []
    settings = replace(UNREGULARISED, steps=12, frame_every=1, learning_rate=0.5)
    make_ideal(probe, 1, settings, on_frame=lambda f: frames.append(f["image"]))
    assert len(frames) == 12
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3)


def test_frames_callbacks_and_canvas_size(probe):
    steps, frames = [], []
    result = make_ideal(probe, 2, replace(FAST, size=48), on_step=steps.append,
                        on_frame=frames.append)
    assert [s["step"] for s in steps] == list(range(1, 26))
    assert set(steps[0]) >= {"step", "steps", "objective", "prob"}
    assert [f["step"] for f in frames] == [5, 10, 15, 20, 25]
    assert [s for s, _ in result.frames] == [5, 10, 15, 20, 25]
    assert result.image.shape == (48, 48, 3)
    assert 0.0 <= result.prob <= 1.0


def test_stop_event_ends_the_loop_early(probe):
    stop = threading.Event()

    def on_step(info):
        if info["step"] == 3:
            stop.set()

    result = make_ideal(probe, 0, FAST, on_step=on_step, stop_event=stop)
    assert result.steps == 3
    assert result.frames[-1][0] == 3


def test_fft_start_image_round_trips():
    image = np.rint(np.random.default_rng(0).uniform(20, 235, (32, 32, 3))).astype(np.float32)
    param = initial_param(32, IdealSettings(), image, np.random.default_rng(0))
    back = render(tf.constant(param), tf.constant(spectrum_scale(32)), "fft").numpy()
    assert np.abs(back - image).max() < 1.0


def test_start_from_an_image(probe):
    start = np.full((32, 32, 3), 128.0, np.float32)
    result = make_ideal(probe, 4, replace(FAST, steps=1, learning_rate=1e-6), start_image=start)
    assert np.abs(result.image - start).max() < 2.0


@pytest.mark.parametrize("shape", [(20, 30, 3), (2, 17, 16, 3)])
def test_total_variation_is_the_mean_neighbour_difference(shape):
    x = np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)
    expected = (np.abs(np.diff(x / 255, axis=-3)).mean() + np.abs(np.diff(x / 255, axis=-2)).mean())
    assert tv(x) == pytest.approx(float(expected), rel=1e-5)


def test_total_variation_of_a_flat_image_is_zero():
    assert tv(np.full((8, 8, 3), 77.0, np.float32)) == 0.0
    assert tv(np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)) > 0.1


def test_compare_tv_and_transfer(probe):
    out = compare_tv(probe, 6, replace(FAST, steps=10, tv_weight=50.0), others={"same": probe})
    assert list(out) == ["plain", "tv0", "tv"]
    assert out["tv0"]["tv"] == 0.0 and out["tv"]["tv"] == 50.0
    assert out["plain"]["result"].settings.parameterization == "pixels"
    for key in out:
        assert 0.0 <= out[key]["transfer"]["same"] <= 1.0
    probs = transfer_probabilities(out["tv"]["result"].image, 6, {"same": probe})
    assert probs["same"] == pytest.approx(out["tv"]["result"].prob, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0), dict(size=4), dict(tv_weight=-1.0), dict(parameterization="wavelet"),
     dict(scale=1.5), dict(batch=0)],
)
def test_bad_settings_are_user_errors(probe, kwargs):
    with pytest.raises(TransferLabError):
        make_ideal(probe, 1, replace(FAST, **kwargs))


def test_bad_class_or_channel_is_a_user_error(probe):
    with pytest.raises(TransferLabError, match="10"):
        make_ideal(probe, 10, FAST)
    with pytest.raises(TransferLabError, match="channel"):
        make_ideal(probe, None, FAST, layer="block1_out", channel=99)
    with pytest.raises(TransferLabError, match="no_such_layer"):
        make_ideal(probe, None, FAST, layer="no_such_layer", channel=0)
