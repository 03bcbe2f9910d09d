"""Figures for the Look inside page: top-k before/after, robust accuracy, ideal-image curves, transfer."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lib.plots.text import plot_text, plot_texts

BEFORE_COLOR = "#2563eb"
AFTER_COLOR = "#dc2626"
TARGET_COLOR = "#16a34a"
PROB_COLOR = "#2563eb"
OBJECTIVE_COLOR = "#9333ea"
SETTING_COLORS = ("#94a3b8", "#2563eb", "#f59e0b", "#16a34a")


def _bar_trace(top: Sequence[dict], color: str, highlight: int | None) -> go.Bar:
    labels = plot_texts(t["label"] for t in reversed(top))
    probs = [100.0 * float(t["prob"]) for t in reversed(top)]
    colors = [TARGET_COLOR if highlight is not None and t["index"] == highlight else color
              for t in reversed(top)]
    return go.Bar(x=probs, y=labels, orientation="h", marker_color=colors,
                  text=[f"{p:.1f}%" for p in probs], textposition="auto",
                  hovertemplate="%{y}: %{x:.2f}%<extra></extra>", showlegend=False)


def make_topk_comparison_figure(before: Sequence[dict], after: Sequence[dict],
                                target: int | None = None) -> go.Figure:
    """Top-k bars of the original and the adversarial image, side by side.

    Args:
        before: `[{"index", "label", "prob"}, ...]` of the original, most likely first.
        after: the same for the adversarial image.
        target: a class index to colour green where it appears (the attack's target).

    Returns:
        A figure with two horizontal bar charts, probabilities in percent.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Original", "Adversarial"),
                        horizontal_spacing=0.25)
    fig.add_trace(_bar_trace(before, BEFORE_COLOR, target), row=1, col=1)
    fig.add_trace(_bar_trace(after, AFTER_COLOR, target), row=1, col=2)
    fig.update_xaxes(range=[0, 100], title_text="probability (%)")
    fig.update_layout(height=80 + 34 * max(len(before), len(after)),
                      margin={"l": 10, "r": 10, "t": 40, "b": 30})
    return fig


def make_robustness_figure(eps: Sequence[float], robust_accuracy: Sequence[float],
                           success_rate: Sequence[float] | None = None, title: str = "") -> go.Figure:
    """Robust accuracy (and attack success rate) against the budget eps.

    Args:
        eps: budgets in pixel units, ascending.
        robust_accuracy: per eps, the fraction of images still predicted as their class.
        success_rate: per eps, the fraction of successful attacks (optional second line).
        title: optional title.

    Returns:
        A line chart with percentages on the y axis.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(eps), y=[100 * a for a in robust_accuracy], mode="lines+markers",
                             name="robust accuracy", line={"color": BEFORE_COLOR}))
    if success_rate is not None:
        fig.add_trace(go.Scatter(x=list(eps), y=[100 * s for s in success_rate],
                                 mode="lines+markers", name="attack success",
                                 line={"color": AFTER_COLOR, "dash": "dot"}))
    fig.update_layout(title=plot_text(title) if title else None, height=320,
                      margin={"l": 10, "r": 10, "t": 40, "b": 40},
                      xaxis={"title": "eps (pixel units, 0-255)"},
                      yaxis={"title": "% of images", "range": [0, 102]},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def make_min_eps_figure(min_eps: Sequence[float | None], eps_grid: Sequence[float]) -> go.Figure:
    """How many images flip first at each eps of the grid ("never" for those that did not flip)."""
    names = [f"{e:g}" for e in eps_grid] + ["never"]
    counts = [sum(1 for m in min_eps if m == e) for e in eps_grid] + [
        sum(1 for m in min_eps if m is None)]
    fig = go.Figure(go.Bar(x=names, y=counts, marker_color=AFTER_COLOR,
                           hovertemplate="eps %{x}: %{y} images<extra></extra>"))
    fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 40, "b": 40},
                      title="Minimal eps that flips each image",
                      xaxis={"title": "eps (pixel units)", "type": "category"},
                      yaxis={"title": "images"})
    return fig


def make_ideal_curve_figure(probs: Sequence[float], objective: Sequence[float] | None = None,
                            title: str = "") -> go.Figure:
    """The class probability (and the objective) per optimisation step of an ideal image.

    Args:
        probs: per step, the class probability on that step's random views, in [0, 1].
        objective: per step, the logit or channel mean being maximised (secondary axis).
        title: optional title.

    Returns:
        A line chart.
    """
    steps = list(range(1, len(probs) + 1))
    fig = make_subplots(specs=[[{"secondary_y": objective is not None}]])
    fig.add_trace(go.Scatter(x=steps, y=[100 * p for p in probs], mode="lines", name="probability",
                             line={"color": PROB_COLOR}), secondary_y=False)
    if objective is not None:
        fig.add_trace(go.Scatter(x=steps, y=list(objective), mode="lines", name="objective",
                                 line={"color": OBJECTIVE_COLOR, "dash": "dot"}), secondary_y=True)
        fig.update_yaxes(title_text="objective", secondary_y=True)
    fig.update_yaxes(title_text="probability (%)", range=[0, 102], secondary_y=False)
    fig.update_layout(title=plot_text(title) if title else None, height=320,
                      margin={"l": 10, "r": 10, "t": 40, "b": 40}, xaxis={"title": "step"}, legend={"orientation": "h", "y": -0.25})
    return fig


def make_transfer_figure(rows: Sequence[dict], title: str = "") -> go.Figure:
    """Probability each model gives the class of an ideal image, per setting (grouped bars).

    Args:
        rows: `[{"setting": str, "model": str, "prob": float}, ...]`; settings become colours,
            models become groups on the x axis.
        title: optional title.

    Returns:
        A grouped bar chart, probabilities in percent.
    """
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = go.Figure()
    for i, setting in enumerate(settings):
        probs = {r["model"]: r["prob"] for r in rows if r["setting"] == setting}
        fig.add_trace(go.Bar(x=plot_texts(models), y=[100 * probs.get(m, 0.0) for m in models],
                             name=plot_text(setting),
                             marker_color=SETTING_COLORS[i % len(SETTING_COLORS)],
                             text=[f"{100 * probs.get(m, 0.0):.0f}%" for m in models],
                             textposition="auto"))
    fig.update_layout(barmode="group", title=plot_text(title) if title else None, height=320,
                      margin={"l": 10, "r": 10, "t": 40, "b": 40},
                      yaxis={"title": "probability of the class (%)", "range": [0, 102]},
                      legend={"orientation": "h", "y": -0.2})
    return fig
