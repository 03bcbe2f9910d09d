"""Look-inside figures and display helpers take plain data and return what the page shows."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from lib.errors import TransferLabError
from lib.inside.display import amplify_perturbation, png_bytes, sample_image
from lib.plots.inside import (
    make_ideal_curve_figure,
    make_min_eps_figure,
    make_robustness_figure,
    make_topk_comparison_figure,
    make_transfer_figure,
)

TOP = [{"index": 3, "label": "cat", "prob": 0.7}, {"index": 5, "label": "dog", "prob": 0.2}]


def test_figures_are_plotly_figures_with_the_data():
    fig = make_topk_comparison_figure(TOP, TOP[::-1], target=5)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    fig = make_robustness_figure([1, 2, 4], [0.9, 0.5, 0.1], [0.1, 0.5, 0.9])
    assert list(fig.data[0].y) == pytest.approx([90, 50, 10])
    fig = make_min_eps_figure([1.0, None, 4.0, 1.0], [1.0, 2.0, 4.0])
    assert list(fig.data[0].y) == [2, 0, 1, 1]
    fig = make_ideal_curve_figure([0.1, 0.5, 0.9], [1.0, 2.0, 3.0])
    assert len(fig.data) == 2
    rows = [{"setting": s, "model": m, "prob": 0.5} for s in ("TV 0", "TV 100")
            for m in ("lite1", "lite2")]
    fig = make_transfer_figure(rows)
    assert len(fig.data) == 2 and list(fig.data[0].x) == ["lite1", "lite2"]


def test_amplified_perturbation_states_its_gain():
    delta = np.zeros((4, 4, 3))
    delta[0, 0, 0] = 2.0
    delta[1, 1, 1] = -1.0
    image, gain = amplify_perturbation(delta)
    assert gain == pytest.approx(63.5)
    assert image.dtype == np.uint8 and image[0, 0, 0] == 255 and image[2, 2, 2] == 128
    assert amplify_perturbation(np.zeros((2, 2, 3)))[1] == 1.0


def test_png_bytes_and_samples():
    sample = sample_image("chelsea", 64)
    assert sample.shape == (64, 64, 3) and sample.dtype == np.float32
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(sample))))
    assert np.array_equal(decoded, sample.astype(np.uint8))
    with pytest.raises(TransferLabError, match="dragon"):
        sample_image("dragon")
