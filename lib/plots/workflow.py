"""The transfer-learning workflow as a diagram (Home page)."""

from __future__ import annotations

import plotly.graph_objects as go

# (key, title, subtitle): the steps in order, left to right.
WORKFLOW_STEPS = (
    ("data", "Your images", "class folders"),
    ("backbone", "Backbone", "pretrained, frozen"),
    ("head", "New head", "pool → softmax"),
    ("train", "Train head", "only the head learns"),
    ("fine_tune", "Fine-tune", "top layers, lr ÷ 10"),
    ("predict", "Predict", "your classes"),
)
DONE_COLOR = "#16a34a"
TODO_COLOR = "#94a3b8"
NEXT_COLOR = "#2563eb"
BOX_W, BOX_H, GAP = 1.0, 0.62, 0.38


def make_workflow_figure(done: set[str] | frozenset[str] = frozenset()) -> go.Figure:
    """Draws the steps as boxes joined by arrows, colouring the ones this session has done.

    Args:
        done: keys of `WORKFLOW_STEPS` already done; the first step not done is drawn as "next".
            Defaults to none.

    Returns:
        A Plotly figure with fixed axes and no interaction.
    """
    fig = go.Figure()
    next_key = next((k for k, _, _ in WORKFLOW_STEPS if k not in done), None)
    for i, (key, title, subtitle) in enumerate(WORKFLOW_STEPS):
        x0 = i * (BOX_W + GAP)
        color = DONE_COLOR if key in done else NEXT_COLOR if key == next_key else TODO_COLOR
        fig.add_shape(type="rect", x0=x0, x1=x0 + BOX_W, y0=0, y1=BOX_H, line={"color": color,
                      "width": 2}, fillcolor=color, opacity=0.15 if key not in done else 0.25,
                      layer="below")
        fig.add_annotation(x=x0 + BOX_W / 2, y=BOX_H * 0.62, text=f"<b>{title}</b>",
                           showarrow=False, font={"size": 13, "color": "#111827"})
        fig.add_annotation(x=x0 + BOX_W / 2, y=BOX_H * 0.3, text=subtitle, showarrow=False,
                           font={"size": 10, "color": "#374151"})
        if i:
            fig.add_annotation(x=x0 - 0.03, y=BOX_H / 2, ax=x0 - GAP + 0.03, ay=BOX_H / 2,
                               xref="x", yref="y", axref="x", ayref="y", text="",
                               showarrow=True, arrowhead=3, arrowsize=1.2, arrowwidth=2,
                               arrowcolor="#475569")
    width = len(WORKFLOW_STEPS) * (BOX_W + GAP) - GAP
    fig.update_xaxes(visible=False, range=[-0.05, width + 0.05], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-0.08, BOX_H + 0.08], fixedrange=True)
    fig.update_layout(height=170, margin={"l": 0, "r": 0, "t": 0, "b": 0}, showlegend=False,
                      plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)")
    return fig
