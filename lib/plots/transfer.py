"""Figures for the transfer lessons: learning curves of transfer against scratch, accuracy against
images per class, and accuracy by cut point, frozen and fine-tuned."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

TRANSFER_COLOR = "#2563eb"
SCRATCH_COLOR = "#ef4444"
FINE_TUNE_COLOR = "#10b981"
CHANCE_COLOR = "#9ca3af"
MARGIN = {"l": 10, "r": 10, "t": 50, "b": 40}


def _chance_line(figure: go.Figure, chance: float | None) -> None:
    if chance is not None:
        figure.add_hline(y=chance, line_dash="dot", line_color=CHANCE_COLOR,
                         annotation_text="chance", annotation_position="bottom right")


def _percent_axis(figure: go.Figure, title: str, x_title: str) -> go.Figure:
    figure.update_layout(title=title, margin=MARGIN, height=380, legend={"orientation": "h", "y": -0.2},
                         xaxis_title=x_title, yaxis={"title": "Test accuracy", "range": [0, 1.02],
                                                     "tickformat": ".0%"})
    return figure


def make_learning_curves_figure(transfer: Sequence[float], scratch: Sequence[float], *,
                                images_per_class: int, chance: float | None = None) -> go.Figure:
    """Test accuracy after each epoch, transfer and scratch on the same axes.

    Args:
        transfer: accuracy per epoch with the frozen pretrained body.
        scratch: accuracy per epoch of the same network from random weights.
        images_per_class: the training set's size, for the title.
        chance: 1 / number of classes, drawn as a dotted line. Defaults to None (none).
    """
    figure = go.Figure()
    for name, curve, color in (("Pretrained body, frozen", transfer, TRANSFER_COLOR),
                               ("Same network from random weights", scratch, SCRATCH_COLOR)):
        figure.add_trace(go.Scatter(x=list(range(1, len(curve) + 1)), y=list(curve), name=name,
                                    mode="lines+markers", line={"color": color}))
    _chance_line(figure, chance)
    return _percent_axis(figure, f"Learning curves, {images_per_class} images per class", "Epoch")


def make_accuracy_vs_images_figure(images_per_class: Sequence[int], transfer: Sequence[float],
                                   scratch: Sequence[float], *,
                                   chance: float | None = None) -> go.Figure:
    """Final test accuracy against training images per class (log axis), transfer and scratch."""
    figure = go.Figure()
    for name, values, color in (("Pretrained body, frozen", transfer, TRANSFER_COLOR),
                                ("Same network from random weights", scratch, SCRATCH_COLOR)):
        figure.add_trace(go.Scatter(x=list(images_per_class), y=list(values), name=name,
                                    mode="lines+markers", line={"color": color}))
    _chance_line(figure, chance)
    figure.update_xaxes(type="log", tickvals=list(images_per_class))
    return _percent_axis(figure, "Accuracy against training images per class",
                         "Training images per class")


def make_cut_comparison_figure(cuts: Sequence[str], frozen: Sequence[float],
                               fine_tuned: Sequence[float | None], *,
                               chance: float | None = None) -> go.Figure:
    """Test accuracy per cut point (bottom to top): frozen body, and fine-tuned where measured.

    Args:
        cuts: cut point labels, bottom to top.
        frozen: accuracy of a head on the frozen body cut there.
        fine_tuned: accuracy after fine-tuning the body below that cut; None where not measured.
        chance: 1 / number of classes. Defaults to None.
    """
    figure = go.Figure()
    figure.add_trace(go.Bar(x=list(cuts), y=list(frozen), name="Frozen body",
                            marker_color=TRANSFER_COLOR, text=[f"{v:.0%}" for v in frozen]))
    if any(v is not None for v in fine_tuned):
        figure.add_trace(go.Bar(x=list(cuts), y=[v if v is not None else 0 for v in fine_tuned],
                                name="Fine-tuned", marker_color=FINE_TUNE_COLOR,
                                text=[f"{v:.0%}" if v is not None else "" for v in fine_tuned]))
    _chance_line(figure, chance)
    figure.update_layout(barmode="group")
    return _percent_axis(figure, "Where to cut, frozen or fine-tuned", "Cut point (bottom → top)")
