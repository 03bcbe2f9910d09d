"""Figures for the fine-tuning lessons: several runs' curves on one chart, and parameter counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from lib.plots.training import MARGIN, PHASE_LINE_COLOR, RUN_COLORS, fine_tune_start

CURVE_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
CURVE_LABELS = {"val_accuracy": "Validation accuracy", "val_loss": "Validation loss",
                "accuracy": "Training accuracy", "loss": "Training loss"}
TRAINABLE_COLOR, FROZEN_COLOR = "#2563eb", "#9ca3af"


def make_branch_curves_figure(histories: Mapping[str, pd.DataFrame], metric: str = "val_accuracy",
                              title: str | None = None) -> go.Figure:
    """Runs that share a frozen phase and then fine-tune differently, on one chart.

    Each history holds the frozen phase's rows, then its own fine-tuning rows (as `fine_tune`
    returns it); the frozen part is drawn once, in grey, and each fine-tuning branch in its colour,
    starting from the frozen phase's last epoch so the lines join.

    Args:
        histories: legend name -> history with `epoch`, `phase` and `metric` columns.
        metric: one of `CURVE_METRICS`. Defaults to "val_accuracy".
        title: the chart's title. Defaults to None: the metric's name.

    Returns:
        A Plotly line chart.

    Raises:
        ValueError: an unknown metric.
    """
    if metric not in CURVE_METRICS:
        raise ValueError(f"Received `metric={metric!r}`; use one of {', '.join(CURVE_METRICS)}.")
    fig = go.Figure()
    start = None
    for n, (name, history) in enumerate(histories.items()):
        rows = history[["epoch", "phase", metric]].dropna()
        frozen, tuned = rows[rows["phase"] != "fine_tune"], rows[rows["phase"] == "fine_tune"]
        if n == 0 and not frozen.empty:
            fig.add_trace(_line(frozen["epoch"], frozen[metric], "head only (body frozen)",
                                PHASE_LINE_COLOR, metric))
        if not tuned.empty:
            joined = pd.concat([frozen.tail(1), tuned])  # the branch starts where the head ended
            fig.add_trace(_line(joined["epoch"], joined[metric], name,
                                RUN_COLORS[n % len(RUN_COLORS)], metric))
        start = start if start is not None else fine_tune_start(history)
    if start is not None:
        fig.add_vline(x=start, line={"color": PHASE_LINE_COLOR, "dash": "dot"},
                      annotation_text="fine-tuning starts", annotation_position="top left")
    accuracy = metric.endswith("accuracy")
    fig.update_layout(title=title or CURVE_LABELS[metric], height=340, margin=MARGIN,
                      xaxis={"title": "epoch"},
                      yaxis={"title": CURVE_LABELS[metric].lower(),
                             **({"range": [0, 1.02]} if accuracy else {})},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _line(x: Sequence, y: Sequence, name: str, color: str, metric: str) -> go.Scatter:
    return go.Scatter(x=list(x), y=[float(v) for v in y], mode="lines+markers", name=name,
                      line={"color": color},
                      hovertemplate=f"epoch %{{x}}<br>{name}: {metric} %{{y:.3f}}<extra></extra>")


def make_param_counts_figure(blocks: Sequence[int], trainable: Sequence[int],
                             non_trainable: Sequence[int], selected: int | None = None) -> go.Figure:
    """Trainable and frozen parameters as more top blocks are unfrozen (stacked bars).

    Args:
        blocks: blocks unfrozen, one entry per bar (0: only the head trains).
        trainable: trainable parameters for each.
        non_trainable: frozen parameters for each.
        selected: a `blocks` value to outline. Defaults to None.

    Returns:
        A Plotly stacked bar chart.
    """
    outline = [2 if b == selected else 0 for b in blocks]
    fig = go.Figure([
        go.Bar(x=list(blocks), y=list(trainable), name="trainable", marker={
            "color": TRAINABLE_COLOR, "line": {"width": outline, "color": "black"}}),
        go.Bar(x=list(blocks), y=list(non_trainable), name="frozen (non-trainable)",
               marker={"color": FROZEN_COLOR}),
    ])
    fig.update_layout(barmode="stack", title="Parameters as top blocks are unfrozen", height=320,
                      margin=MARGIN, xaxis={"title": "top blocks unfrozen", "dtick": 1},
                      yaxis={"title": "parameters"}, legend={"orientation": "h", "y": -0.25})
    return fig
