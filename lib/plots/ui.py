"""Small figures the dashboard needs that no other plot module draws."""

from __future__ import annotations

import plotly.graph_objects as go

from lib.plots.text import plot_text, plot_texts

BAR_COLOR = "#2563eb"


def make_topk_figure(top: list[dict], title: str = "") -> go.Figure:
    """Horizontal bars of a top-k prediction, most likely class on top.

    Args:
        top: `[{"index", "label", "prob"}, ...]`, most likely first (as `lib.backbones.imagenet.top_k`).
        title: optional figure title. Defaults to none.

    Returns:
        A Plotly figure with probabilities in percent.
    """
    labels = plot_texts(t["label"] for t in reversed(top))
    probs = [100.0 * float(t["prob"]) for t in reversed(top)]
    fig = go.Figure(go.Bar(x=probs, y=labels, orientation="h", marker_color=BAR_COLOR,
                           text=[f"{p:.1f}%" for p in probs], textposition="auto",
                           hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_layout(title=plot_text(title) if title else None, height=60 + 34 * len(top),
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 30},
                      xaxis={"title": "probability (%)", "range": [0, 100]})
    return fig
