"""The model zoo for people: accuracy against measured latency with the Pareto front, and the table
with the headers the page shows."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from lib.plots.text import plot_texts
from lib.zoo.table import pareto_front

WEIGHT_COLORS = {
    "offline": "#10b981",
    "cached": "#2563eb",
    "download needed": "#9ca3af",
    "random": "#f59e0b",
}
FRONT_COLOR = "#ef4444"
MARGIN = {"l": 10, "r": 10, "t": 50, "b": 40}
AXIS_LABELS = {
    "latency_ms_b1": "Latency, batch 1 (ms per image, measured here)",
    "latency_ms_b32": "Latency, batch 32 (ms per image, measured here)",
    "top1": "Published ImageNet top-1 (%)",
    "top5": "Published ImageNet top-5 (%)",
}
# Flat-row column -> header shown to people, in display order.
DISPLAY_COLUMNS = {
    "name": "Backbone",
    "family": "Family",
    "input_size": "Input px",
    "params_m": "Params (M)",
    "depth": "Depth",
    "size_mb": "Size (MB)",
    "top1": "Top-1 % (published)",
    "top5": "Top-5 % (published)",
    "latency_ms_b1": "ms/img b1 (TF)",
    "latency_ms_b32": "ms/img b32 (TF)",
    "throughput_b32": "img/s b32 (TF)",
    "latency_ms_b1_litert": "ms/img b1 (LiteRT)",
    "latency_ms_b32_litert": "ms/img b32 (LiteRT)",
    "throughput_b32_litert": "img/s b32 (LiteRT)",
    "peak_mem_mb": "Peak mem (MB)",
    "device": "Timed on",
    "weights": "Weights",
    "feature_dim": "Feature dim",
}


def _bubble_sizes(values: Sequence[float], smallest: float = 8, largest: float = 48) -> list[float]:
    # Area grows with model size; the square root keeps a 500 MB VGG from hiding a 10 MB MobileNet.
    roots = [max(v, 0.0) ** 0.5 for v in values]
    top = max(roots) if roots else 1.0
    return [smallest + (largest - smallest) * (r / top if top else 0) for r in roots]


def make_zoo_scatter_figure(rows: Sequence[dict], x: str = "latency_ms_b1", y: str = "top1",
                            size: str = "size_mb", selected: str | None = None) -> go.Figure:
    """Accuracy against latency, one bubble per measured backbone, sized by model size.

    Args:
        rows: flat zoo rows (`lib.zoo.zoo_table(...)["rows"]`); rows without `x` or `y` are left out.
        x: latency column (lower is better). Defaults to batch-1 latency.
        y: accuracy column (higher is better). Defaults to published top-1.
        size: bubble-size column. Defaults to `size_mb`.
        selected: a backbone name to outline.

    Returns:
        A figure with one trace per weights status and a line through the Pareto front.
    """
    for column in (x, y, size):
        if rows and column not in rows[0]:
            raise ValueError(f"Received column `{column}`; rows have: {', '.join(rows[0])}.")
    points = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    fig = go.Figure()
    sizes = dict(zip([r["name"] for r in points], _bubble_sizes([r.get(size) or 0 for r in points]),
                     strict=True))
    for status, color in WEIGHT_COLORS.items():
        group = [r for r in points if (r.get("weights") or "random") == status]
        if not group:
            continue
        fig.add_trace(go.Scatter(
            x=[r[x] for r in group], y=[r[y] for r in group], mode="markers+text",
            text=plot_texts(r["name"] for r in group), textposition="top center", textfont={"size": 10},
            name=f"weights {status}",
            marker={"size": [sizes[r["name"]] for r in group], "color": color, "opacity": 0.7,
                    "line": {"width": [3 if r["name"] == selected else 0.5 for r in group],
                             "color": "#111827"}},
            customdata=[[r.get(size), r.get("params"), r.get("top5")] for r in group],
            hovertemplate=("<b>%{text}</b><br>" + AXIS_LABELS.get(x, x) + ": %{x:.2f}<br>"
                           + AXIS_LABELS.get(y, y) + ": %{y:.1f}<br>size: %{customdata[0]:.1f} MB"
                           "<br>params: %{customdata[1]:,}<extra></extra>"),
        ))
    front = {name: i for i, name in enumerate(pareto_front(points, x=x, y=y))}
    front_rows = sorted((r for r in points if r["name"] in front), key=lambda r: front[r["name"]])
    if front_rows:
        fig.add_trace(go.Scatter(
            x=[r[x] for r in front_rows], y=[r[y] for r in front_rows], mode="lines",
            line={"color": FRONT_COLOR, "dash": "dash", "shape": "hv"}, name="Pareto front",
            hoverinfo="skip",
        ))
    fig.update_layout(
        title="Published accuracy vs latency on this machine (bubble area = size on disk)",
        xaxis_title=AXIS_LABELS.get(x, x), yaxis_title=AXIS_LABELS.get(y, y),
        margin=MARGIN, legend={"orientation": "h", "y": -0.2}, height=520,
    )
    if not points:
        fig.add_annotation(text="Nothing measured yet: press Re-measure.", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def display_table(table: dict, other_tables: Sequence[dict] = ()) -> pd.DataFrame:
    """The zoo as a pandas DataFrame for display, one row per backbone, headers for people.

    Args:
        table: `lib.zoo.zoo_table(...)`.
        other_tables: zoo caches from other devices (`lib.zoo.list_zoo_caches()`); each adds a
            "ms/img b32 (<device>)" column, so CPU and GPU timings sit side by side.

    Returns:
        A DataFrame with the `DISPLAY_COLUMNS` headers (plus one column per other device).
        `Weights` says "random (timed)" where latency was measured without pretrained weights.
    """
    records = []
    for row in table["rows"]:
        record = {**row, "params_m": None if row.get("params") is None else round(row["params"] / 1e6, 2)}
        if row.get("measured_pretrained") is False and row.get("latency_ms_b1") is not None:
            record["weights"] = f"{row['weights']} (timed with random weights)"
        records.append(record)
    frame = pd.DataFrame(records, columns=list(DISPLAY_COLUMNS)).rename(columns=DISPLAY_COLUMNS)
    current = table["fingerprint"].get("key")
    for other in other_tables:
        if other["fingerprint"].get("key") == current:
            continue
        label = f"ms/img b32 ({other['fingerprint'].get('device', 'other device')})"
        timings = {n: (r.get("timings") or {}).get("32", {}).get("median_ms_per_image")
                   for n, r in other["rows"].items()}
        frame[label] = [timings.get(n) for n in frame["Backbone"]]
    return frame
