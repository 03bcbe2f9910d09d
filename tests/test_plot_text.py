"""Names people chose reach every figure as text, never as Plotly markup or hover templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.plots.data import make_class_count_figure, make_sample_grid_figure, make_split_count_figure
from lib.plots.inside import (
    make_ideal_curve_figure,
    make_robustness_figure,
    make_topk_comparison_figure,
    make_transfer_figure,
)
from lib.plots.text import plot_text, plot_texts
from lib.plots.training import make_confusion_figure, make_history_figure, make_runs_overlay_figure
from lib.plots.ui import make_topk_figure
from lib.plots.zoo import make_zoo_scatter_figure

# Bold markup, a link, an entity and a hover-template field, as a folder, file or run name could hold.
NASTY = '<b>cat</b> <a href="https://x.example">x</a> &amp; %{nasty}'
SAFE = plot_text(NASTY)
HISTORY = pd.DataFrame({"phase": ["frozen", "frozen"], "epoch": [1, 2], "loss": [1.0, 0.5],
                        "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.6], "val_accuracy": [0.4, 0.7]})
TOP = [{"index": 0, "label": NASTY, "prob": 0.6}, {"index": 1, "label": "dog", "prob": 0.4}]


def _strings(value) -> list[str]:
    """Every string inside a figure's dict (data and layout)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple | np.ndarray):
        return [s for v in value for s in _strings(v)]
    return []


def test_plot_text_escapes_markup_entities_and_templates():
    assert plot_text("<b>a</b> & b") == "&lt;b&gt;a&lt;/b&gt; &amp; b"
    assert plot_text("&lt;") == "&amp;lt;"  # an entity in a name stays as typed
    assert plot_text("%{y}") == "%&#123;y}"
    assert plot_text(3) == "3" and plot_text("plain name") == "plain name"
    assert plot_texts(["<i>", "ok"]) == ["&lt;i&gt;", "ok"]


FIGURES = {
    "class counts": lambda: make_class_count_figure({NASTY: 3, "dog": 2}),
    "sample grid": lambda: make_sample_grid_figure({NASTY: [np.zeros((4, 4, 3))]}),
    "split counts": lambda: make_split_count_figure({"train": {NASTY: 3}, NASTY: {NASTY: 1}}),
    "top-k": lambda: make_topk_figure(TOP, title=f"{NASTY} (60%)"),
    "top-k comparison": lambda: make_topk_comparison_figure(TOP, TOP[::-1]),
    "robustness": lambda: make_robustness_figure([1, 2], [0.9, 0.5], title=NASTY),
    "ideal curve": lambda: make_ideal_curve_figure([0.1, 0.5], title=NASTY),
    "transfer": lambda: make_transfer_figure([{"setting": NASTY, "model": NASTY, "prob": 0.5}],
                                             title=NASTY),
    "history overlay": lambda: make_history_figure(HISTORY, "loss", overlay=HISTORY, overlay_name=NASTY),
    "confusion": lambda: make_confusion_figure([[1, 0], [0, 1]], [NASTY, "dog"]),
    "runs overlay": lambda: make_runs_overlay_figure({NASTY: HISTORY, "b": HISTORY}, "val_loss"),
    "zoo": lambda: make_zoo_scatter_figure([{"name": NASTY, "latency_ms_b1": 1.0, "top1": 70.0,
                                             "size_mb": 5.0, "weights": "cached"}]),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_user_names_reach_figures_escaped(name):
    strings = _strings(FIGURES[name]().to_dict())
    assert any(SAFE in s for s in strings), f"{name}: the name is not in the figure at all"
    for s in strings:
        assert "<b>cat" not in s and "<a href" not in s, f"{name}: raw markup in {s!r}"
        assert "%{nasty}" not in s, f"{name}: a name became part of a hover template: {s!r}"


def test_escaping_keeps_the_figures_data():
    fig = make_confusion_figure([[1, 0], [0, 1]], ["a<b", "dog"])
    assert list(fig.data[0].x) == ["a&lt;b", "dog"]
    assert fig.data[0].customdata[0][1] == [0, 1]  # clicks map through indices, not names
    fig = make_history_figure(HISTORY, "loss", overlay=HISTORY, overlay_name="scratch")
    assert {t.name for t in fig.data} == {"train", "val", "scratch train", "scratch val"}
